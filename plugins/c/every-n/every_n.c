/*
 * every-n (C): take a snapshot every N events or M bytes of events, keep the
 * newest K; the same policy as the Rust plugins/every-n.
 *
 * Configuration: {"events": 10000, "bytes": 67108864, "keep": 3}; every key
 * is optional and those are the defaults. 0 disables a trigger; keep >= 1.
 */
#include <stdlib.h>
#include <string.h>

#include "snapshot_policy.h"
#include "syncbase.h"

static uint64_t events = 10000, bytes = 64ull << 20;
static uint32_t keep = 3;

/* A JSON number that is a whole number in [0, max]. */
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
  if (n > max) return false;
  *out = n;
  return true;
}

bool exports_snapshot_policy_configure(snapshot_policy_string_t *config,
                                       snapshot_policy_string_t *err) {
  bool blank = sb_blank(config->ptr, config->len);
  sb_value *c = blank ? NULL : sb_parse((const char *)config->ptr, config->len);
  snapshot_policy_string_free(config);
  events = 10000, bytes = 64ull << 20, keep = 3;
  bool ok = blank || (c && c->kind == SB_OBJECT);
  for (size_t i = 0; ok && c && i < c->count; i++) {
    const char *key = c->keys[i];
    size_t len = c->key_lens[i];
    uint64_t n;
    if (len == 6 && memcmp(key, "events", 6) == 0) ok = whole(c->items[i], UINT64_MAX, &events);
    else if (len == 5 && memcmp(key, "bytes", 5) == 0) ok = whole(c->items[i], UINT64_MAX, &bytes);
    else if (len == 4 && memcmp(key, "keep", 4) == 0) {
      ok = whole(c->items[i], UINT32_MAX, &n);
      keep = (uint32_t)n;
    } else ok = false;
  }
  sb_free(c);
  if (!ok) {
    snapshot_policy_string_dup(err, "invalid plugin configuration: use {\"events\": N, "
                                    "\"bytes\": M, \"keep\": K} (whole numbers)");
    return false;
  }
  if (keep == 0) {
    snapshot_policy_string_dup(err, "every-n: keep must be at least 1");
    return false;
  }
  return true;
}

bool exports_snapshot_policy_decide(snapshot_policy_stats_t *stats,
                                    snapshot_policy_decision_t *ret, snapshot_policy_string_t *err) {
  bool by_events = events > 0 && stats->events_since >= events;
  bool by_bytes = bytes > 0 && stats->bytes_since >= bytes;
  ret->take = by_events || by_bytes;
  ret->keep = keep;
  return true;
}
