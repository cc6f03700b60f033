// {{name}}: a Syncbase resolver in JavaScript, scaffolded by `syncbase plugin new`.
//
// Called when two nodes wrote the same record concurrently: `current` is the
// record as this node has it, `incoming` the other write. Answer keep-current,
// take-incoming, or a merged record (JSON written with `dump`, so every node
// gets the same bytes). No clock, randomness or I/O, and no state beyond what
// `configure` sets up.
//
// What it does now: merges concurrent edits field by field. Edits to different
// fields both survive; when both writes changed a field, the later write (HLC,
// then node id) wins it. A delete, or a change without `before`, falls back to
// last-writer-wins for the whole record. It takes no configuration.
import { dump, incomingWins, mergeFields, parseObject } from "./syncbase.js";

export function configure(config) {
  const c = config.trim();
  if (c !== "" && c !== "{}" && c !== "null") throw "this plugin takes no configuration";
}

export function resolve(current, incoming) {
  const wins = incomingWins(current, incoming);
  const cur = parseObject(current.data);
  const inc = parseObject(incoming.data);
  const before = parseObject(incoming.before);
  if (cur && inc && before) {
    return { tag: "merged", val: dump(mergeFields(cur, inc, before, wins)) };
  }
  return { tag: wins ? "take-incoming" : "keep-current" };
}
