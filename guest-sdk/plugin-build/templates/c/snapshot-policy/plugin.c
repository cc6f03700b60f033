/*
 * {{name}}: a Syncbase snapshot policy in C, scaffolded by `syncbase plugin new`.
 *
 * Called after the node applied events: say whether to take a snapshot now and
 * how many to keep. No clock, randomness or I/O (time since the last snapshot
 * comes in the stats), and no state beyond what configure sets up.
 *
 * What it does now: takes a snapshot once 1000 events were applied since the
 * last one and keeps the newest 2; {"events": N, "keep": K} changes either
 * (both at least 1).
 */
#include <stdlib.h>
#include <string.h>

#include "snapshot_policy.h"
#include "syncbase.h"

static uint64_t events = 1000;
static uint32_t keep = 2;

/* A JSON number written as a whole number in [1, max]. */
static bool whole(const sb_value *v, uint64_t max, uint64_t *out) {
  if (v->kind != SB_NUMBER || v->len == 0 || v->len > 20) return false;
  uint64_t n = 0;
  for (size_t i = 0; i < v->len; i++) {
    char c = v->text[i];
    if (c < '0' || c > '9') return false;
    uint64_t d = (uint64_t)(c - '0');
    if (n > (UINT64_MAX - d) / 10) return false;
    n = n * 10 + d;
  }
  if (n == 0 || n > max) return false;
  *out = n;
  return true;
}

bool exports_snapshot_policy_configure(snapshot_policy_string_t *config,
                                       snapshot_policy_string_t *err) {
  bool blank = sb_blank(config->ptr, config->len);
  sb_value *c = blank ? NULL : sb_parse((const char *)config->ptr, config->len);
  snapshot_policy_string_free(config);
  uint64_t next_events = 1000, next_keep = 2;
  bool ok = blank || (c && c->kind == SB_OBJECT);
  for (size_t i = 0; ok && c && i < c->count; i++) {
    const char *key = c->keys[i];
    size_t len = c->key_lens[i];
    if (len == 6 && memcmp(key, "events", 6) == 0) ok = whole(c->items[i], UINT64_MAX, &next_events);
    else if (len == 4 && memcmp(key, "keep", 4) == 0) ok = whole(c->items[i], UINT32_MAX, &next_keep);
    else ok = false;
  }
  sb_free(c);
  if (!ok) {
    snapshot_policy_string_dup(err, "invalid plugin configuration: use {\"events\": N, \"keep\": K} "
                                    "(whole numbers, at least 1)");
    return false;
  }
  events = next_events;
  keep = (uint32_t)next_keep;
  return true;
}

/* To refuse to decide, set the message and return false
 * (snapshot_policy_string_dup(err, "why");): the built-in default applies on every
 * node, and the message shows in `syncbase plugin test`, the dry run and the
 * node's log. */
bool exports_snapshot_policy_decide(snapshot_policy_stats_t *stats,
                                    snapshot_policy_decision_t *ret, snapshot_policy_string_t *err) {
  ret->take = stats->events_since >= events;
  ret->keep = keep;
  return true;
}
