/*
 * redact (C): removes configured fields from changes, the same policy as the
 * Rust plugins/redact, answer for answer (plugins/conformance proves it).
 *
 * Configuration (required): {"fields": ["email", "phone"]}, optionally with
 * "direction": "outbound" | "inbound" | "both" (default "both").
 */
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "syncbase.h"

/* What `configure` set up: kept for the instance's life. */
static sb_value *redacted; /* the array of field names */
static int acts;           /* 0 both, 1 outbound only, 2 inbound only */

static bool refuse(filter_string_t *err, const char *message) {
  filter_string_dup(err, message);
  return false;
}

bool exports_filter_configure(filter_string_t *config, filter_string_t *err) {
  sb_value *c = sb_blank(config->ptr, config->len)
                    ? NULL
                    : sb_parse((const char *)config->ptr, config->len);
  bool blank = sb_blank(config->ptr, config->len);
  filter_string_free(config);
  if (!blank && (!c || c->kind != SB_OBJECT)) {
    sb_free(c);
    return refuse(err, "invalid plugin configuration: expected a JSON object");
  }
  sb_free(redacted);
  redacted = NULL;
  acts = 0;
  for (size_t i = 0; c && i < c->count; i++) {
    const char *key = c->keys[i];
    size_t len = c->key_lens[i];
    sb_value *v = c->items[i];
    if (len == 6 && memcmp(key, "fields", 6) == 0) {
      if (v->kind != SB_ARRAY) goto bad;
      for (size_t j = 0; j < v->count; j++)
        if (v->items[j]->kind != SB_STRING) goto bad;
      redacted = sb_clone(v);
    } else if (len == 9 && memcmp(key, "direction", 9) == 0) {
      if (sb_is_string(v, "both")) acts = 0;
      else if (sb_is_string(v, "outbound")) acts = 1;
      else if (sb_is_string(v, "inbound")) acts = 2;
      else goto bad;
    } else {
      goto bad;
    }
  }
  sb_free(c);
  if (!redacted || redacted->count == 0)
    return refuse(err, "redact needs the fields to remove, e.g. {\"fields\": [\"email\"]}");
  return true;
bad:
  sb_free(c);
  return refuse(err, "invalid plugin configuration: use {\"fields\": [\"...\"], "
                     "\"direction\": \"outbound\" | \"inbound\" | \"both\"}");
}

/* Removes the configured fields from JSON object text; true when it changed. */
static bool strip(filter_option_string_t *text) {
  if (!text->is_some) return false;
  sb_value *fields = sb_parse_object((const char *)text->val.ptr, text->val.len);
  if (!fields) return false;
  bool removed = false;
  for (size_t i = 0; i < redacted->count; i++)
    removed |= sb_remove(fields, redacted->items[i]->text, redacted->items[i]->len);
  if (removed) {
    size_t len;
    char *json = sb_to_json(fields, &len);
    filter_string_free(&text->val);
    text->val = (filter_string_t){(uint8_t *)json, len};
  }
  sb_free(fields);
  return removed;
}

bool exports_filter_filter(filter_direction_t direction, filter_change_t *change,
                           filter_verdict_t *ret, filter_string_t *err) {
  bool applies = acts == 0 || (acts == 1 && direction == SYNCBASE_PLUGIN_TYPES_DIRECTION_OUTBOUND) ||
                 (acts == 2 && direction == SYNCBASE_PLUGIN_TYPES_DIRECTION_INBOUND);
  bool data_changed = applies && strip(&change->data);
  bool before_changed = applies && strip(&change->before);
  if (data_changed || before_changed) {
    /* The reply takes over the change's strings; the bindings free them. */
    ret->tag = SYNCBASE_PLUGIN_TYPES_VERDICT_REPLACE;
    ret->val.replace = *change;
  } else {
    ret->tag = SYNCBASE_PLUGIN_TYPES_VERDICT_KEEP;
    filter_change_free(change);
  }
  return true;
}
