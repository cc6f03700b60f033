/*
 * field-merge (C): per-field last-writer-wins, the same policy as the Rust
 * plugins/field-merge, answer for answer (plugins/conformance proves it).
 *
 * Concurrent edits to different fields of one record both survive; when both
 * writes changed the same field, the later write (HLC, then origin) decides
 * it. Without the incoming change's `before`, or when either side is a
 * delete, the whole record falls back to last-writer-wins.
 */
#include <stdlib.h>
#include <string.h>

#include "resolver.h"
#include "syncbase.h"

bool exports_resolver_configure(resolver_string_t *config, resolver_string_t *err) {
  const char *t = (const char *)config->ptr;
  size_t n = config->len;
  /* Like the Rust SDK's `no_config`: blank, `{}` or `null` only. */
  while (n && (t[n - 1] == ' ' || t[n - 1] == '\n' || t[n - 1] == '\t' || t[n - 1] == '\r')) n--;
  while (n && (*t == ' ' || *t == '\n' || *t == '\t' || *t == '\r')) t++, n--;
  bool ok = n == 0 || (n == 2 && memcmp(t, "{}", 2) == 0) || (n == 4 && memcmp(t, "null", 4) == 0);
  resolver_string_free(config);
  if (!ok) resolver_string_dup(err, "this plugin takes no configuration");
  return ok;
}

static sb_value *fields(const resolver_option_string_t *text) {
  return text->is_some ? sb_parse_object((const char *)text->val.ptr, text->val.len) : NULL;
}

bool exports_resolver_resolve(resolver_version_t *current, resolver_change_t *incoming,
                              resolver_resolution_t *ret, resolver_string_t *err) {
  bool wins = sb_incoming_wins(current->hlc, current->origin.ptr, current->origin.len,
                               incoming->hlc, incoming->origin.ptr, incoming->origin.len);
  ret->tag = wins ? SYNCBASE_PLUGIN_TYPES_RESOLUTION_TAKE_INCOMING
                  : SYNCBASE_PLUGIN_TYPES_RESOLUTION_KEEP_CURRENT;
  if (incoming->op != SYNCBASE_PLUGIN_TYPES_OP_DELETE && current->data.is_some) {
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
  }
  /* The arguments belong to the callee. */
  resolver_version_free(current);
  resolver_change_free(incoming);
  return true;
}
