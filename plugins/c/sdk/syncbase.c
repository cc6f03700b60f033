/* syncbase.c: canonical JSON and the merge helpers (see syncbase.h). */
#include "syncbase.h"

#include <stdlib.h>
#include <string.h>

/* ----- values ------------------------------------------------------------ */

static sb_value *sb_new(sb_kind kind) {
  sb_value *v = calloc(1, sizeof(sb_value));
  if (v) v->kind = kind;
  return v;
}

sb_value *sb_null(void) { return sb_new(SB_NULL); }

void sb_free(sb_value *v) {
  if (!v) return;
  for (size_t i = 0; i < v->count; i++) {
    sb_free(v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->key_lens);
  free(v->text);
  free(v);
}

static char *dup_bytes(const char *s, size_t len) {
  char *out = malloc(len + 1);
  if (!out) return NULL;
  memcpy(out, s, len);
  out[len] = 0;
  return out;
}

sb_value *sb_clone(const sb_value *v) {
  sb_value *c = sb_new(v->kind);
  c->boolean = v->boolean;
  if (v->text) {
    c->text = dup_bytes(v->text, v->len);
    c->len = v->len;
  }
  if (v->kind == SB_ARRAY || v->kind == SB_OBJECT) {
    c->count = c->cap = v->count;
    c->items = calloc(v->count + 1, sizeof(sb_value *));
    if (v->kind == SB_OBJECT) {
      c->keys = calloc(v->count + 1, sizeof(char *));
      c->key_lens = calloc(v->count + 1, sizeof(size_t));
    }
    for (size_t i = 0; i < v->count; i++) {
      c->items[i] = sb_clone(v->items[i]);
      if (v->kind == SB_OBJECT) {
        c->keys[i] = dup_bytes(v->keys[i], v->key_lens[i]);
        c->key_lens[i] = v->key_lens[i];
      }
    }
  }
  return c;
}

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen) {
  int c = memcmp(a, b, alen < blen ? alen : blen);
  if (c) return c;
  return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Index of `key`, or of where it would go (with *found false). */
static size_t find(const sb_value *o, const char *key, size_t len, bool *found) {
  size_t lo = 0, hi = o->count;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = key_cmp(o->keys[mid], o->key_lens[mid], key, len);
    if (c == 0) {
      *found = true;
      return mid;
    }
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  *found = false;
  return lo;
}

sb_value *sb_get(const sb_value *o, const char *key, size_t len) {
  if (!o || o->kind != SB_OBJECT) return NULL;
  bool found;
  size_t i = find(o, key, len, &found);
  return found ? o->items[i] : NULL;
}

static void grow(sb_value *v) {
  if (v->count < v->cap) return;
  v->cap = v->cap ? v->cap * 2 : 8;
  v->items = realloc(v->items, v->cap * sizeof(sb_value *));
  if (v->kind == SB_OBJECT) {
    v->keys = realloc(v->keys, v->cap * sizeof(char *));
    v->key_lens = realloc(v->key_lens, v->cap * sizeof(size_t));
  }
}

void sb_set(sb_value *o, const char *key, size_t len, sb_value *value) {
  bool found;
  size_t i = find(o, key, len, &found);
  if (found) {
    sb_free(o->items[i]);
    o->items[i] = value;
    return;
  }
  grow(o);
  memmove(o->items + i + 1, o->items + i, (o->count - i) * sizeof(sb_value *));
  memmove(o->keys + i + 1, o->keys + i, (o->count - i) * sizeof(char *));
  memmove(o->key_lens + i + 1, o->key_lens + i, (o->count - i) * sizeof(size_t));
  o->items[i] = value;
  o->keys[i] = dup_bytes(key, len);
  o->key_lens[i] = len;
  o->count++;
}

bool sb_remove(sb_value *o, const char *key, size_t len) {
  if (!o || o->kind != SB_OBJECT) return false;
  bool found;
  size_t i = find(o, key, len, &found);
  if (!found) return false;
  sb_free(o->items[i]);
  free(o->keys[i]);
  size_t rest = o->count - i - 1;
  memmove(o->items + i, o->items + i + 1, rest * sizeof(sb_value *));
  memmove(o->keys + i, o->keys + i + 1, rest * sizeof(char *));
  memmove(o->key_lens + i, o->key_lens + i + 1, rest * sizeof(size_t));
  o->count--;
  return true;
}

bool sb_is_string(const sb_value *v, const char *s) {
  return v && v->kind == SB_STRING && v->len == strlen(s) && memcmp(v->text, s, v->len) == 0;
}

/* ----- numbers ------------------------------------------------------------ */

/* Writes a non-negative int in decimal; returns the number of characters. */
static size_t put_int(char *out, int v) {
  char tmp[12];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

/* The exact decimal expansion of |d| (a double is m * 2^e, so it is finite):
 * its significant digits in `digits` (no leading zeros), and `kk`, the
 * position of the decimal point (value = 0.DIGITS * 10^kk). No printf: wasi-
 * libc's stdio would drag in WASI imports. */
static size_t exact_digits(double d, char *digits, int *kk) {
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  uint64_t m = bits & ((1ull << 52) - 1);
  int biased = (int)((bits >> 52) & 0x7FF);
  int e = biased ? biased - 1075 : -1074;
  if (biased) m |= 1ull << 52;
  if (m == 0) {
    digits[0] = '0';
    *kk = 1;
    return 1;
  }
  /* Little-endian base-10^9 limbs of m * 2^e, scaled by 10^frac when e < 0
   * (m * 2^e = m * 5^-e / 10^-e); multiplied by 2^29 or 5^13 at a time. */
  static uint32_t limb[140];
  size_t limbs = 0;
  while (m) {
    limb[limbs++] = (uint32_t)(m % 1000000000u);
    m /= 1000000000u;
  }
  int times = e > 0 ? e : -e;
  int frac = e > 0 ? 0 : -e;
  while (times > 0) {
    int step = e > 0 ? (times < 29 ? times : 29) : (times < 13 ? times : 13);
    uint64_t factor = 1;
    for (int i = 0; i < step; i++) factor *= e > 0 ? 2 : 5;
    times -= step;
    uint64_t carry = 0;
    for (size_t i = 0; i < limbs; i++) {
      uint64_t v = limb[i] * factor + carry;
      limb[i] = (uint32_t)(v % 1000000000u);
      carry = v / 1000000000u;
    }
    while (carry) {
      limb[limbs++] = (uint32_t)(carry % 1000000000u);
      carry /= 1000000000u;
    }
  }
  size_t n = 0;
  for (size_t i = limbs; i-- > 0;) {
    char nine[9];
    uint32_t v = limb[i];
    for (int j = 8; j >= 0; j--) {
      nine[j] = (char)('0' + v % 10);
      v /= 10;
    }
    size_t skip = 0;
    if (i == limbs - 1)
      while (skip < 8 && nine[skip] == '0') skip++;
    memcpy(digits + n, nine + skip, 9 - skip);
    n += 9 - skip;
  }
  *kk = (int)n - frac;
  return n;
}

/* Rounds exact digits to `p` significant digits (half to even), as printf
 * would; returns the digit count (p) and adjusts *kk on a carry. */
static size_t round_digits(const char *exact, size_t n, size_t p, char *out, int *kk) {
  if (p >= n) {
    memcpy(out, exact, n);
    return n;
  }
  memcpy(out, exact, p);
  bool up = false;
  if (exact[p] > '5') up = true;
  else if (exact[p] == '5') {
    bool rest = false;
    for (size_t i = p + 1; i < n; i++)
      if (exact[i] != '0') rest = true;
    up = rest || ((out[p - 1] - '0') & 1);
  }
  if (up) {
    size_t i = p;
    while (i > 0 && out[i - 1] == '9') out[--i] = '0';
    if (i == 0) {
      memmove(out + 1, out, p - 1);
      out[0] = '1';
      (*kk)++;
    } else {
      out[i - 1]++;
    }
  }
  return p;
}

/* The canonical text of a float: the shortest decimal that reads back as the
 * same double, laid out as serde_json does. */
static char *format_double(double d, size_t *out_len) {
  static char exact[1200];
  char digits[40], probe[64];
  int exact_kk;
  size_t en = exact_digits(d, exact, &exact_kk);
  bool neg = (d < 0) || (d == 0 && 1 / d < 0);
  size_t n = en;
  int kk = exact_kk;
  for (size_t p = 1; p <= 17; p++) {
    kk = exact_kk;
    n = round_digits(exact, en, p, digits, &kk);
    /* probe = "0.DIGITSe<kk>" */
    size_t o = 0;
    probe[o++] = '0';
    probe[o++] = '.';
    memcpy(probe + o, digits, n);
    o += n;
    probe[o++] = 'e';
    if (kk < 0) probe[o++] = '-';
    o += put_int(probe + o, kk < 0 ? -kk : kk);
    probe[o] = 0;
    if (strtod(probe, NULL) == (d < 0 ? -d : d)) break;
  }
  while (n > 1 && digits[n - 1] == '0') n--;
  if (n == 1 && digits[0] == '0') kk = 1;
  int k = kk - (int)n;
  char out[64];
  size_t o = 0;
  if (neg) out[o++] = '-';
  if (k >= 0 && kk <= 16) {
    memcpy(out + o, digits, n);
    o += n;
    for (int i = 0; i < k; i++) out[o++] = '0';
    out[o++] = '.';
    out[o++] = '0';
  } else if (kk > 0 && kk <= 16) {
    memcpy(out + o, digits, (size_t)kk);
    o += (size_t)kk;
    out[o++] = '.';
    memcpy(out + o, digits + kk, n - (size_t)kk);
    o += n - (size_t)kk;
  } else if (kk > -5 && kk <= 0) {
    out[o++] = '0';
    out[o++] = '.';
    for (int i = 0; i < -kk; i++) out[o++] = '0';
    memcpy(out + o, digits, n);
    o += n;
  } else {
    out[o++] = digits[0];
    if (n > 1) {
      out[o++] = '.';
      memcpy(out + o, digits + 1, n - 1);
      o += n - 1;
    }
    out[o++] = 'e';
    out[o++] = kk - 1 < 0 ? '-' : '+';
    o += put_int(out + o, kk - 1 < 0 ? 1 - kk : kk - 1);
  }
  *out_len = o;
  return dup_bytes(out, o);
}

/* Canonical text of a JSON number lexeme; NULL when it overflows a double. */
static char *canonical_number(const char *lex, size_t len, size_t *out_len) {
  bool integer = true;
  for (size_t i = 0; i < len; i++)
    if (lex[i] == '.' || lex[i] == 'e' || lex[i] == 'E') integer = false;
  if (integer) {
    bool neg = lex[0] == '-';
    const char *d = lex + neg;
    size_t dl = len - neg;
    const char *limit = neg ? "9223372036854775808" : "18446744073709551615";
    size_t ll = strlen(limit);
    bool fits = dl < ll || (dl == ll && memcmp(d, limit, ll) <= 0);
    bool negative_zero = neg && dl == 1 && d[0] == '0';
    if (fits && !negative_zero) {
      *out_len = len;
      return dup_bytes(lex, len);
    }
  }
  char *z = dup_bytes(lex, len);
  double v = strtod(z, NULL);
  free(z);
  if (v == __builtin_inf() || v == -__builtin_inf()) return NULL;
  return format_double(v, out_len);
}

/* ----- parsing -------------------------------------------------------------- */

typedef struct {
  const char *s;
  size_t len, pos;
  int depth;
} parser;

static void skip_ws(parser *p) {
  while (p->pos < p->len) {
    char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static int hex4(parser *p) {
  if (p->pos + 4 > p->len) return -1;
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p->s[p->pos++];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return -1;
  }
  return v;
}

static void put_utf8(char *out, size_t *o, unsigned cp) {
  if (cp < 0x80) out[(*o)++] = (char)cp;
  else if (cp < 0x800) {
    out[(*o)++] = (char)(0xC0 | (cp >> 6));
    out[(*o)++] = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out[(*o)++] = (char)(0xE0 | (cp >> 12));
    out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[(*o)++] = (char)(0x80 | (cp & 0x3F));
  } else {
    out[(*o)++] = (char)(0xF0 | (cp >> 18));
    out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[(*o)++] = (char)(0x80 | (cp & 0x3F));
  }
}

/* Parses a string at the opening quote into malloc'd UTF-8. */
static char *parse_string(parser *p, size_t *out_len) {
  p->pos++;
  char *out = malloc(p->len - p->pos + 1);
  size_t o = 0;
  while (p->pos < p->len) {
    unsigned char c = (unsigned char)p->s[p->pos++];
    if (c == '"') {
      *out_len = o;
      out[o] = 0;
      return out;
    }
    if (c < 0x20) break;
    if (c != '\\') {
      out[o++] = (char)c;
      continue;
    }
    if (p->pos >= p->len) break;
    char e = p->s[p->pos++];
    switch (e) {
      case '"': out[o++] = '"'; continue;
      case '\\': out[o++] = '\\'; continue;
      case '/': out[o++] = '/'; continue;
      case 'b': out[o++] = '\b'; continue;
      case 'f': out[o++] = '\f'; continue;
      case 'n': out[o++] = '\n'; continue;
      case 'r': out[o++] = '\r'; continue;
      case 't': out[o++] = '\t'; continue;
      case 'u': {
        int cp = hex4(p);
        if (cp < 0) goto fail;
        if (cp >= 0xD800 && cp < 0xDC00) {
          if (p->pos + 2 > p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') goto fail;
          p->pos += 2;
          int lo = hex4(p);
          if (lo < 0xDC00 || lo >= 0xE000) goto fail;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp < 0xE000) {
          goto fail;
        }
        put_utf8(out, &o, (unsigned)cp);
        continue;
      }
      default: goto fail;
    }
  }
fail:
  free(out);
  return NULL;
}

static sb_value *parse_value(parser *p);

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static sb_value *parse_number(parser *p) {
  size_t start = p->pos;
  if (p->s[p->pos] == '-') p->pos++;
  if (p->pos >= p->len || !is_digit(p->s[p->pos])) return NULL;
  if (p->s[p->pos] == '0') p->pos++;
  else
    while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
  if (p->pos < p->len && p->s[p->pos] == '.') {
    p->pos++;
    if (p->pos >= p->len || !is_digit(p->s[p->pos])) return NULL;
    while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
  }
  if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
    p->pos++;
    if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
    if (p->pos >= p->len || !is_digit(p->s[p->pos])) return NULL;
    while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
  }
  size_t len;
  char *text = canonical_number(p->s + start, p->pos - start, &len);
  if (!text) return NULL;
  sb_value *v = sb_new(SB_NUMBER);
  v->text = text;
  v->len = len;
  return v;
}

static bool literal(parser *p, const char *word) {
  size_t n = strlen(word);
  if (p->pos + n > p->len || memcmp(p->s + p->pos, word, n) != 0) return false;
  p->pos += n;
  return true;
}

static sb_value *parse_container(parser *p, bool object) {
  if (++p->depth > 128) return NULL;
  p->pos++;
  sb_value *v = sb_new(object ? SB_OBJECT : SB_ARRAY);
  skip_ws(p);
  char close = object ? '}' : ']';
  if (p->pos < p->len && p->s[p->pos] == close) {
    p->pos++;
    p->depth--;
    return v;
  }
  for (;;) {
    skip_ws(p);
    char *key = NULL;
    size_t key_len = 0;
    if (object) {
      if (p->pos >= p->len || p->s[p->pos] != '"') goto fail;
      key = parse_string(p, &key_len);
      if (!key) goto fail;
      skip_ws(p);
      if (p->pos >= p->len || p->s[p->pos] != ':') {
        free(key);
        goto fail;
      }
      p->pos++;
    }
    sb_value *item = parse_value(p);
    if (!item) {
      free(key);
      goto fail;
    }
    if (object) {
      sb_set(v, key, key_len, item);
      free(key);
    } else {
      grow(v);
      v->items[v->count++] = item;
    }
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->s[p->pos] == close) {
      p->pos++;
      p->depth--;
      return v;
    }
    goto fail;
  }
fail:
  sb_free(v);
  return NULL;
}

static sb_value *parse_value(parser *p) {
  skip_ws(p);
  if (p->pos >= p->len) return NULL;
  char c = p->s[p->pos];
  if (c == '{' || c == '[') return parse_container(p, c == '{');
  if (c == '"') {
    size_t len;
    char *text = parse_string(p, &len);
    if (!text) return NULL;
    sb_value *v = sb_new(SB_STRING);
    v->text = text;
    v->len = len;
    return v;
  }
  if (c == '-' || is_digit(c)) return parse_number(p);
  if (literal(p, "null")) return sb_new(SB_NULL);
  if (literal(p, "true") || literal(p, "false")) {
    sb_value *v = sb_new(SB_BOOL);
    v->boolean = p->s[p->pos - 1] == 'e' && p->s[p->pos - 2] == 'u';
    return v;
  }
  return NULL;
}

sb_value *sb_parse(const char *text, size_t len) {
  parser p = {text, len, 0, 0};
  sb_value *v = parse_value(&p);
  if (!v) return NULL;
  skip_ws(&p);
  if (p.pos != p.len) {
    sb_free(v);
    return NULL;
  }
  return v;
}

sb_value *sb_parse_object(const char *text, size_t len) {
  sb_value *v = sb_parse(text, len);
  if (v && v->kind != SB_OBJECT) {
    sb_free(v);
    return NULL;
  }
  return v;
}

/* ----- writing ---------------------------------------------------------------- */

typedef struct {
  char *buf;
  size_t len, cap;
} out_buf;

static void put(out_buf *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    while (b->len + n > b->cap) b->cap = b->cap ? b->cap * 2 : 256;
    b->buf = realloc(b->buf, b->cap);
  }
  memcpy(b->buf + b->len, s, n);
  b->len += n;
}

static void put_string(out_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  put(b, "\"", 1);
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    char u[6];
    if (c == '"') esc = "\\\"";
    else if (c == '\\') esc = "\\\\";
    else if (c == '\b') esc = "\\b";
    else if (c == '\f') esc = "\\f";
    else if (c == '\n') esc = "\\n";
    else if (c == '\r') esc = "\\r";
    else if (c == '\t') esc = "\\t";
    else if (c < 0x20) {
      memcpy(u, "\\u00", 4);
      u[4] = hex[c >> 4];
      u[5] = hex[c & 15];
    } else
      continue;
    put(b, s + run, i - run);
    if (esc) put(b, esc, strlen(esc));
    else put(b, u, 6);
    run = i + 1;
  }
  put(b, s + run, n - run);
  put(b, "\"", 1);
}

static void write_value(out_buf *b, const sb_value *v) {
  switch (v->kind) {
    case SB_NULL: put(b, "null", 4); break;
    case SB_BOOL: v->boolean ? put(b, "true", 4) : put(b, "false", 5); break;
    case SB_NUMBER: put(b, v->text, v->len); break;
    case SB_STRING: put_string(b, v->text, v->len); break;
    case SB_ARRAY:
      put(b, "[", 1);
      for (size_t i = 0; i < v->count; i++) {
        if (i) put(b, ",", 1);
        write_value(b, v->items[i]);
      }
      put(b, "]", 1);
      break;
    case SB_OBJECT:
      put(b, "{", 1);
      for (size_t i = 0; i < v->count; i++) {
        if (i) put(b, ",", 1);
        put_string(b, v->keys[i], v->key_lens[i]);
        put(b, ":", 1);
        write_value(b, v->items[i]);
      }
      put(b, "}", 1);
      break;
  }
}

char *sb_to_json(const sb_value *v, size_t *len) {
  out_buf b = {NULL, 0, 0};
  write_value(&b, v);
  *len = b.len;
  return b.buf;
}

bool sb_equal(const sb_value *a, const sb_value *b) {
  if (a->kind != b->kind) return false;
  switch (a->kind) {
    case SB_NULL: return true;
    case SB_BOOL: return a->boolean == b->boolean;
    case SB_NUMBER:
    case SB_STRING: return a->len == b->len && memcmp(a->text, b->text, a->len) == 0;
    case SB_ARRAY:
    case SB_OBJECT:
      if (a->count != b->count) return false;
      for (size_t i = 0; i < a->count; i++) {
        if (a->kind == SB_OBJECT &&
            key_cmp(a->keys[i], a->key_lens[i], b->keys[i], b->key_lens[i]) != 0)
          return false;
        if (!sb_equal(a->items[i], b->items[i])) return false;
      }
      return true;
  }
  return false;
}

/* ----- policy helpers ------------------------------------------------------------ */

bool sb_incoming_wins(uint64_t current_hlc, const uint8_t *current_origin, size_t current_len,
                      uint64_t incoming_hlc, const uint8_t *incoming_origin, size_t incoming_len) {
  if (incoming_hlc != current_hlc) return incoming_hlc > current_hlc;
  return key_cmp((const char *)incoming_origin, incoming_len, (const char *)current_origin,
                 current_len) > 0;
}

sb_value *sb_merge_fields(const sb_value *current, const sb_value *incoming,
                          const sb_value *before, bool incoming_wins) {
  sb_value *merged = sb_clone(current);
  sb_value null_value = {.kind = SB_NULL};
  for (size_t i = 0; i < before->count; i++) {
    const char *field = before->keys[i];
    size_t len = before->key_lens[i];
    const sb_value *now = sb_get(current, field, len);
    bool untouched_here = sb_equal(now ? now : &null_value, before->items[i]);
    if (!untouched_here && !incoming_wins) continue;
    const sb_value *value = sb_get(incoming, field, len);
    if (value) sb_set(merged, field, len, sb_clone(value));
    else sb_remove(merged, field, len);
  }
  return merged;
}

bool sb_blank(const uint8_t *text, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '\r') return false;
  return true;
}
