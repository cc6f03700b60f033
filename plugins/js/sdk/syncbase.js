// syncbase.js: helpers every JavaScript plugin is built with (import them
// from "./syncbase.js").
//
// Record data crosses the plugin boundary as JSON text. `parse` reads it into
// plain values, and `dump` writes Syncbase's canonical form, the one the Rust
// SDK (serde_json) writes, so a JavaScript plugin answers byte for byte what
// the Rust plugin of the same policy answers (see plugins/conformance/README.md):
// no whitespace, keys sorted by code point, integers as written when they fit
// in i64/u64 (JSON.parse would round big ones and forget that `1.0` was not
// `1`, so such numbers are kept as `Num`), other numbers as the shortest
// round-trip decimal (`1.5`, `100.0`, `1e+20`), strings escaping only `"`, `\`
// and control characters.

const own = Object.prototype.hasOwnProperty;

/** A JSON number kept as its canonical text. */
export class Num {
  constructor(text) {
    this.text = text;
  }
  get value() {
    return Number(this.text);
  }
}

const U64_MAX = 18446744073709551615n;
const I64_MIN = -9223372036854775808n;

/** The canonical text of a float: serde_json's layout of the shortest digits. */
export function formatFloat(f) {
  let r = String(f);
  const neg = r[0] === "-" || Object.is(f, -0);
  if (r[0] === "-") r = r.slice(1);
  const [mant, expText] = r.split("e");
  const exp = expText ? Number(expText) : 0;
  const [whole, frac = ""] = mant.split(".");
  const all = whole + frac;
  const stripped = all.replace(/^0+/, "");
  let kk = whole.length + exp - (all.length - stripped.length);
  let digits = stripped.replace(/0+$/, "");
  if (!digits) {
    digits = "0";
    kk = 1;
  }
  const n = digits.length;
  const k = kk - n;
  let out;
  if (k >= 0 && kk <= 16) out = digits + "0".repeat(k) + ".0";
  else if (kk > 0 && kk <= 16) out = digits.slice(0, kk) + "." + digits.slice(kk);
  else if (kk > -5 && kk <= 0) out = "0." + "0".repeat(-kk) + digits;
  else {
    const e = kk - 1;
    out = digits[0] + (n > 1 ? "." + digits.slice(1) : "") + "e" + (e < 0 ? "-" : "+") + Math.abs(e);
  }
  return (neg ? "-" : "") + out;
}

function numberFromLexeme(lex) {
  if (!/[.eE]/.test(lex) && lex !== "-0") {
    const big = BigInt(lex);
    if (big >= I64_MIN && big <= U64_MAX) return new Num(lex);
  }
  const f = Number(lex);
  if (!Number.isFinite(f)) throw new SyntaxError("number out of range");
  return new Num(formatFloat(f));
}

const WS = /[ \t\n\r]*/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\.)*"/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
// Every string and every number-like token, in order: a string token is
// skipped whole, so digits inside strings are never taken for numbers.
const TOKENS = /"(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*/g;

// True when JSON.parse would not keep some number of `text` exactly: a number
// written with '.', 'e' or 'E' (`1.0` must stay a float), or with 16 digits
// or more (it may not fit in a double).
function needsExact(text) {
  TOKENS.lastIndex = 0;
  for (let m = TOKENS.exec(text); m; m = TOKENS.exec(text)) {
    const t = m[0];
    if (t.charCodeAt(0) !== 34 && (/[.eE]/.test(t) || t.length - (t[0] === "-") >= 16)) return true;
  }
  return false;
}

// The careful parser, for text whose numbers JSON.parse would not keep exactly.
function parseExact(text) {
  let i = 0;
  const ws = () => {
    WS.lastIndex = i;
    WS.test(text);
    i = WS.lastIndex;
  };
  const fail = () => {
    throw new SyntaxError("invalid JSON at " + i);
  };
  // Strings and numbers are matched by (compiled) regular expressions, not
  // character by character: QuickJS interprets a loop per character slowly.
  const string = () => {
    STRING.lastIndex = i;
    const m = STRING.exec(text);
    if (!m) fail();
    i = STRING.lastIndex;
    return JSON.parse(m[0]);
  };
  const value = (depth) => {
    if (depth > 128) fail();
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = Object.create(null);
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail();
        const key = string();
        ws();
        if (text[i++] !== ":") fail();
        obj[key] = value(depth + 1);
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "}") {
          i++;
          return obj;
        } else fail();
      }
    }
    if (c === "[") {
      i++;
      const arr = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "]") {
          i++;
          return arr;
        } else fail();
      }
    }
    if (c === '"') return string();
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (m) {
      i = NUMBER.lastIndex;
      return numberFromLexeme(m[0]);
    }
    for (const [word, v] of [["null", null], ["true", true], ["false", false]]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    fail();
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail();
  return v;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkSurrogates(v) {
  if (typeof v === "string") {
    if (LONE_SURROGATE.test(v)) throw new SyntaxError("lone surrogate");
  } else if (Array.isArray(v)) v.forEach(checkSurrogates);
  else if (v && typeof v === "object" && !(v instanceof Num)) {
    for (const k of Object.keys(v)) {
      checkSurrogates(k);
      checkSurrogates(v[k]);
    }
  }
}

/** Parses JSON text; throws SyntaxError when it is not valid JSON. */
export function parse(text) {
  // JSON.parse (native code) unless a number needs the careful parser.
  const v = needsExact(text) ? parseExact(text) : JSON.parse(text);
  if (text.includes("\\u")) checkSurrogates(v);
  return v;
}

/** Parses JSON object text; null when absent, invalid or not an object. */
export function parseObject(text) {
  if (text === undefined || text === null) return null;
  try {
    const v = parse(text);
    return v && typeof v === "object" && !Array.isArray(v) && !(v instanceof Num) ? v : null;
  } catch (e) {
    return null;
  }
}

function codePointCompare(a, b) {
  const x = Array.from(a);
  const y = Array.from(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

function sortedKeys(obj) {
  const keys = Object.keys(obj);
  return /[\uD800-\uFFFF]/.test(keys.join("")) ? keys.sort(codePointCompare) : keys.sort();
}

/** Canonical JSON text of a value. */
export function dump(v) {
  if (v === null || v === undefined) return "null";
  if (v === true) return "true";
  if (v === false) return "false";
  if (v instanceof Num) return v.text;
  if (typeof v === "number") {
    if (Object.is(v, -0)) return "-0.0";
    return Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER ? String(v) : formatFloat(v);
  }
  if (typeof v === "bigint") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(dump).join(",") + "]";
  return "{" + sortedKeys(v).map((k) => JSON.stringify(k) + ":" + dump(v[k])).join(",") + "}";
}

function compareUtf8(a, b) {
  return a === b ? 0 : codePointCompare(a, b) < 0 ? -1 : 1;
}

/** Last-writer-wins: the incoming write is later (HLC, then origin). */
export function incomingWins(current, incoming) {
  if (incoming.hlc !== current.hlc) return incoming.hlc > current.hlc;
  return compareUtf8(incoming.origin, current.origin) > 0;
}

/** Three-way per-field merge (the Rust SDK's `merge_fields`). */
export function mergeFields(current, incoming, before, wins) {
  const merged = Object.create(null);
  for (const k of Object.keys(current)) merged[k] = current[k];
  for (const field of Object.keys(before)) {
    const now = own.call(current, field) ? current[field] : null;
    if (wins || dump(now) === dump(before[field])) {
      if (own.call(incoming, field)) merged[field] = incoming[field];
      else delete merged[field];
    }
  }
  return merged;
}

/** True when `obj` has `key` as its own member. */
export function has(obj, key) {
  return own.call(obj, key);
}
