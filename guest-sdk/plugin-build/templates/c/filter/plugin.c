/*
 * {{name}}: a Syncbase filter in C, scaffolded by `syncbase plugin new`.
 *
 * Called for every local change before it leaves this node (bound as
 * outbound-filter) and for every change from another node before it is
 * applied here (inbound-filter). Answer keep, drop, or replace with the change
 * rewritten (only `data` and `before` may differ; write JSON with sb_to_json).
 * No clock, randomness or I/O, and no state beyond what configure sets up.
 *
 * What it does now: removes private fields from changes -- `secret` by
 * default, or those named by {"fields": ["ssn", "token"]} -- from the record
 * (`data`) and from the old values (`before`). A change without any of them is
 * kept as it is.
 */
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "syncbase.h"

/* The names of the fields to remove (a JSON array of strings), set by configure. */
static sb_value *removed_fields;

static bool refuse(filter_string_t *err, sb_value *c) {
  sb_free(c);
  filter_string_dup(err, "invalid plugin configuration: use {\"fields\": [\"name\", ...]}");
  return false;
}

bool exports_filter_configure(filter_string_t *config, filter_string_t *err) {
  bool blank = sb_blank(config->ptr, config->len);
  sb_value *c = blank ? NULL : sb_parse((const char *)config->ptr, config->len);
  filter_string_free(config);
  if (!blank && (!c || c->kind != SB_OBJECT)) return refuse(err, c);
  sb_value *fields = c ? sb_get(c, "fields", 6) : NULL;
  if (c && c->count != (fields ? 1u : 0u)) return refuse(err, c);
  if (fields) {
    if (fields->kind != SB_ARRAY) return refuse(err, c);
    for (size_t i = 0; i < fields->count; i++)
      if (fields->items[i]->kind != SB_STRING) return refuse(err, c);
  }
  sb_free(removed_fields);
  if (fields) {
    removed_fields = sb_clone(fields);
  } else {
    removed_fields = sb_parse("[\"secret\"]", 10);
  }
  sb_free(c);
  return true;
}

/* Removes the fields from optional JSON object text in place; true when it changed. */
static bool strip(filter_option_string_t *text) {
  if (!text->is_some) return false;
  sb_value *object = sb_parse_object((const char *)text->val.ptr, text->val.len);
  if (!object) return false;
  bool removed = false;
  for (size_t i = 0; i < removed_fields->count; i++)
    removed |= sb_remove(object, removed_fields->items[i]->text, removed_fields->items[i]->len);
  if (removed) {
    size_t len;
    char *json = sb_to_json(object, &len);
    filter_string_free(&text->val);
    text->val = (filter_string_t){(uint8_t *)json, len};
  }
  sb_free(object);
  return removed;
}

/* To refuse to decide, set the message and return false
 * (filter_string_dup(err, "why");): the built-in default applies on every
 * node, and the message shows in `syncbase plugin test`, the dry run and the
 * node's log. */
bool exports_filter_filter(filter_direction_t direction, filter_change_t *change,
                           filter_verdict_t *ret, filter_string_t *err) {
  bool data_changed = strip(&change->data);
  bool before_changed = strip(&change->before);
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
