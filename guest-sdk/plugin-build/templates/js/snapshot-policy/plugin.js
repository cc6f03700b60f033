// {{name}}: a Syncbase snapshot policy in JavaScript, scaffolded by `syncbase plugin new`.
//
// Called after the node applied events: say whether to take a snapshot now and
// how many to keep. No clock, randomness or I/O (time since the last snapshot
// comes in the stats), and no state beyond what `configure` sets up.
//
// What it does now: takes a snapshot once 1000 events were applied since the
// last one and keeps the newest 2; {"events": N, "keep": K} changes either
// (both at least 1).
import { Num, parse } from "./syncbase.js";

const USAGE = 'invalid plugin configuration: use {"events": N, "keep": K} (whole numbers, at least 1)';
let events = 1000n;
let keep = 2n;

// A whole number in [1, 2^bits), as a BigInt; null otherwise.
function whole(v, bits) {
  const text = v instanceof Num ? v.text : typeof v === "number" ? String(v) : "";
  if (!/^[0-9]+$/.test(text)) return null;
  const n = BigInt(text);
  return n >= 1n && n < 1n << BigInt(bits) ? n : null;
}

export function configure(config) {
  let c;
  try {
    c = config.trim() ? parse(config) : {};
  } catch (e) {
    throw USAGE;
  }
  if (!c || typeof c !== "object" || Array.isArray(c) || c instanceof Num) throw USAGE;
  const next = { events: 1000n, keep: 2n };
  for (const key of Object.keys(c)) {
    if (key !== "events" && key !== "keep") throw USAGE;
    const n = whole(c[key], key === "keep" ? 32 : 64);
    if (n === null) throw USAGE;
    next[key] = n;
  }
  events = next.events;
  keep = next.keep;
}

export function decide(stats) {
  // u64 values may arrive as BigInt or Number, depending on the bindings.
  const since = BigInt.asUintN(64, BigInt(stats.eventsSince));
  return { take: since >= events, keep: Number(keep) };
}
