// redact (JavaScript): removes configured fields from changes, the same policy
// as the Rust plugins/redact, answer for answer (plugins/conformance proves it).
//
// Configuration (required): {"fields": ["email", "phone"]}, optionally with
// "direction": "outbound" | "inbound" | "both" (default "both").
import { dump, has, parse, parseObject } from "./syncbase.js";

const USAGE = 'invalid plugin configuration: use {"fields": ["..."], "direction": "outbound" | "inbound" | "both"}';
let fields = [];
let acts = "both";

export function configure(config) {
  let c;
  try {
    c = config.trim() ? parse(config) : {};
  } catch (e) {
    throw "invalid plugin configuration: " + e.message;
  }
  if (!c || typeof c !== "object" || Array.isArray(c)) throw USAGE;
  for (const key of Object.keys(c)) if (key !== "fields" && key !== "direction") throw USAGE;
  const f = has(c, "fields") ? c.fields : [];
  const d = has(c, "direction") ? c.direction : "both";
  if (!Array.isArray(f) || !f.every((x) => typeof x === "string")) throw USAGE;
  if (d !== "both" && d !== "outbound" && d !== "inbound") throw USAGE;
  if (f.length === 0) throw 'redact needs the fields to remove, e.g. {"fields": ["email"]}';
  fields = f;
  acts = d;
}

// The redacted JSON text, or null when nothing was removed.
function strip(text) {
  const obj = parseObject(text);
  if (!obj) return null;
  let removed = false;
  for (const f of fields) {
    if (has(obj, f)) {
      delete obj[f];
      removed = true;
    }
  }
  return removed ? dump(obj) : null;
}

export function filter(direction, change) {
  if (acts !== "both" && acts !== direction) return { tag: "keep" };
  const data = strip(change.data);
  const before = strip(change.before);
  if (data === null && before === null) return { tag: "keep" };
  return {
    tag: "replace",
    val: { ...change, data: data ?? change.data, before: before ?? change.before },
  };
}
