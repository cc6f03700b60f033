/*
 * {{name}}: a Syncbase resolver in C, scaffolded by `syncbase plugin new`.
 *
 * Called when two nodes wrote the same record concurrently: `current` is the
 * record as this node has it, `incoming` the other write. Answer keep-current,
 * take-incoming, or a merged record (JSON written with sb_to_json, so every
 * node gets the same bytes). No clock, randomness or I/O, and no state beyond
 * what configure sets up. The arguments belong to the callee: free them.
 *
 * What it does now: merges concurrent edits field by field. Edits to
 * different fields both survive; when both writes changed a field, the later
 * write (HLC, then node id) wins it. A delete, or a change without `before`,
 * falls back to last-writer-wins for the whole record. It takes no
 * configuration.
 */
#include <stdlib.h>
#include <string.h>

#include "resolver.h"
#include "syncbase.h"

bool exports_resolver_configure(resolver_string_t *config, resolver_string_t *err) {
  /* No configuration: blank, `{}` or `null` only (as the Rust SDK's no_config). */
  const char *t = (const char *)config->ptr;
  size_t n = config->len;
  while (n && (t[n - 1] == ' ' || t[n - 1] == '\n' || t[n - 1] == '\t' || t[n - 1] == '\r')) n--;
  while (n && (*t == ' ' || *t == '\n' || *t == '\t' || *t == '\r')) t++, n--;
  bool ok = n == 0 || (n == 2 && memcmp(t, "{}", 2) == 0) || (n == 4 && memcmp(t, "null", 4) == 0);
  resolver_string_free(config);
  if (!ok) resolver_string_dup(err, "this plugin takes no configuration");
  return ok;
}

/* The fields of optional JSON object text; NULL when absent or not an object. */
static sb_value *fields(const resolver_option_string_t *text) {
  return text->is_some ? sb_parse_object((const char *)text->val.ptr, text->val.len) : NULL;
}

/* To refuse to decide, set the message and return false
 * (resolver_string_dup(err, "why");): the built-in default applies on every
 * node, and the message shows in `syncbase plugin test`, the dry run and the
 * node's log. */
bool exports_resolver_resolve(resolver_version_t *current, resolver_change_t *incoming,
                              resolver_resolution_t *ret, resolver_string_t *err) {
  bool wins = sb_incoming_wins(current->hlc, current->origin.ptr, current->origin.len,
                               incoming->hlc, incoming->origin.ptr, incoming->origin.len);
  ret->tag = wins ? SYNCBASE_PLUGIN_TYPES_RESOLUTION_TAKE_INCOMING
                  : SYNCBASE_PLUGIN_TYPES_RESOLUTION_KEEP_CURRENT;
  sb_value *cur = fields(&current->data);
  sb_value *inc = fields(&incoming->data);
  sb_value *before = fields(&incoming->before);
  if (cur && inc && before) {
    sb_value *merged = sb_merge_fields(cur, inc, before, wins);
    size_t len;
    char *json = sb_to_json(merged, &len);
    sb_free(merged);
    ret->tag = SYNCBASE_PLUGIN_TYPES_RESOLUTION_MERGED;
    ret->val.merged = (resolver_string_t){(uint8_t *)json, len};
  }
  sb_free(cur);
  sb_free(inc);
  sb_free(before);
  resolver_version_free(current);
  resolver_change_free(incoming);
  return true;
}
