// {{name}}: a Syncbase filter in JavaScript, scaffolded by `syncbase plugin new`.
//
// Called for every local change before it leaves this node (bound as
// outbound-filter) and for every change from another node before it is
// applied here (inbound-filter). Answer keep, drop, or replace with the change
// rewritten (only `data` and `before` may differ; write JSON with `dump`). No
// clock, randomness or I/O, and no state beyond what `configure` sets up.
//
// What it does now: removes private fields from changes -- `secret` by
// default, or those named by {"fields": ["ssn", "token"]} -- from the record
// (`data`) and from the old values (`before`). A change without any of them is
// kept as it is.
import { dump, has, parse, parseObject } from "./syncbase.js";

const USAGE = 'invalid plugin configuration: use {"fields": ["name", ...]}';
let fields = ["secret"];

export function configure(config) {
  let c;
  try {
    c = config.trim() ? parse(config) : {};
  } catch (e) {
    throw USAGE;
  }
  if (!c || typeof c !== "object" || Array.isArray(c)) throw USAGE;
  if (Object.keys(c).some((key) => key !== "fields")) throw USAGE;
  const f = has(c, "fields") ? c.fields : ["secret"];
  if (!Array.isArray(f) || !f.every((x) => typeof x === "string")) throw USAGE;
  fields = f;
}

// The JSON text without the fields, or null when it had none of them.
function strip(text) {
  const obj = parseObject(text);
  if (!obj || !fields.some((f) => has(obj, f))) return null;
  for (const f of fields) delete obj[f];
  return dump(obj);
}

export function filter(direction, change) {
  const data = strip(change.data);
  const before = strip(change.before);
  if (data === null && before === null) return { tag: "keep" };
  return {
    tag: "replace",
    val: { ...change, data: data ?? change.data, before: before ?? change.before },
  };
}
