// field-merge (JavaScript): per-field last-writer-wins, the same policy as the
// Rust plugins/field-merge, answer for answer (plugins/conformance proves it).
//
// Concurrent edits to different fields of one record both survive; when both
// writes changed the same field, the later write (HLC, then origin) decides
// it. Without the incoming change's `before`, or when either side is a
// delete, the whole record falls back to last-writer-wins.
import { dump, incomingWins, mergeFields, parseObject } from "./syncbase.js";

export function configure(config) {
  const c = config.trim();
  if (c !== "" && c !== "{}" && c !== "null") {
    throw "this plugin takes no configuration, got " + c;
  }
}

export function resolve(current, incoming) {
  const wins = incomingWins(current, incoming);
  if (incoming.op !== "delete" && current.data != null) {
    const cur = parseObject(current.data);
    const inc = parseObject(incoming.data);
    const before = parseObject(incoming.before);
    if (cur && inc && before) {
      return { tag: "merged", val: dump(mergeFields(cur, inc, before, wins)) };
    }
  }
  return { tag: wins ? "take-incoming" : "keep-current" };
}
