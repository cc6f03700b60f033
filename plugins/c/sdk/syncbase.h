/*
 * syncbase.h: the helper library every C plugin is built with.
 *
 * Record data crosses the plugin boundary as JSON text. This library parses
 * it into a tree and writes it back in Syncbase's canonical form, the one the
 * Rust SDK (serde_json) writes, so a C plugin answers byte for byte what the
 * Rust plugin of the same policy answers (see plugins/conformance/README.md):
 * no whitespace, object keys sorted by their UTF-8 bytes, integers as written
 * (when they fit in i64/u64), other numbers as the shortest round-trip
 * decimal (`1.5`, `100.0`, `1e+20`, `1.5e-7`), strings escaping only `"`,
 * `\` and control characters.
 *
 * Everything is pure: no clock, no randomness, no I/O. Memory comes from
 * wasi-libc's malloc (no WASI import).
 */
#ifndef SYNCBASE_H
#define SYNCBASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { SB_NULL, SB_BOOL, SB_NUMBER, SB_STRING, SB_ARRAY, SB_OBJECT } sb_kind;

typedef struct sb_value sb_value;

/* A JSON value. Strings are decoded UTF-8 (not NUL-terminated: use len);
 * numbers keep their canonical text; objects keep their members sorted by
 * key bytes, each key once. */
struct sb_value {
  sb_kind kind;
  bool boolean;
  char *text;  /* SB_STRING: the string; SB_NUMBER: canonical number text */
  size_t len;
  size_t count; /* SB_ARRAY / SB_OBJECT: number of items or members */
  size_t cap;
  char **keys; /* SB_OBJECT: member names */
  size_t *key_lens;
  sb_value **items; /* SB_ARRAY items, or SB_OBJECT member values */
};

/* Parses JSON text; NULL when it is not valid JSON (or a number overflows). */
sb_value *sb_parse(const char *text, size_t len);
/* Parses JSON text that must be an object; NULL otherwise. */
sb_value *sb_parse_object(const char *text, size_t len);
/* Canonical JSON text of a value, malloc'd, not NUL-terminated (`*len` bytes). */
char *sb_to_json(const sb_value *value, size_t *len);
void sb_free(sb_value *value);
sb_value *sb_clone(const sb_value *value);
sb_value *sb_null(void);
/* True when both values are the same JSON (same canonical text). */
bool sb_equal(const sb_value *a, const sb_value *b);

/* Object members. `sb_get` returns NULL when absent; `sb_set` takes ownership
 * of `value` and replaces any member of that name; `sb_remove` frees the
 * member and returns true when it was present. */
sb_value *sb_get(const sb_value *object, const char *key, size_t key_len);
void sb_set(sb_value *object, const char *key, size_t key_len, sb_value *value);
bool sb_remove(sb_value *object, const char *key, size_t key_len);
/* True when `value` is the string `s` (NUL-terminated). */
bool sb_is_string(const sb_value *value, const char *s);

/* The last-writer-wins rule: true when the incoming write (HLC, then origin
 * node id compared bytewise) is later than the current version. */
bool sb_incoming_wins(uint64_t current_hlc, const uint8_t *current_origin, size_t current_len,
                      uint64_t incoming_hlc, const uint8_t *incoming_origin, size_t incoming_len);

/* Three-way per-field merge (the Rust SDK's `merge_fields`): a new object. */
sb_value *sb_merge_fields(const sb_value *current, const sb_value *incoming,
                          const sb_value *before, bool incoming_wins);

/* True when a configuration string is blank (the defaults apply). */
bool sb_blank(const uint8_t *text, size_t len);

#endif
