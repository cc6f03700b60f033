// every-n (JavaScript): take a snapshot every N events or M bytes of events,
// keep the newest K; the same policy as the Rust plugins/every-n.
//
// Configuration: {"events": 10000, "bytes": 67108864, "keep": 3}; every key is
// optional and those are the defaults. 0 disables a trigger; keep >= 1.
import { Num, parse } from "./syncbase.js";

const USAGE = 'invalid plugin configuration: use {"events": N, "bytes": M, "keep": K} (whole numbers)';
let config = { events: 10000n, bytes: 64n << 20n, keep: 3n };

// A whole number in [0, 2^bits), as a BigInt; null otherwise.
function whole(v, bits) {
  const text = v instanceof Num ? v.text : typeof v === "number" ? String(v) : "";
  if (!/^[0-9]+$/.test(text)) return null;
  const n = BigInt(text);
  return n < 1n << BigInt(bits) ? n : null;
}

export function configure(text) {
  let c;
  try {
    c = text.trim() ? parse(text) : {};
  } catch (e) {
    throw USAGE;
  }
  if (!c || typeof c !== "object" || Array.isArray(c)) throw USAGE;
  const next = { events: 10000n, bytes: 64n << 20n, keep: 3n };
  for (const key of Object.keys(c)) {
    if (!(key in next)) throw USAGE;
    const n = whole(c[key], key === "keep" ? 32 : 64);
    if (n === null) throw USAGE;
    next[key] = n;
  }
  if (next.keep === 0n) throw "every-n: keep must be at least 1";
  config = next;
}

// A u64 as a BigInt, whatever form the bindings hand it in.
const u64 = (x) => BigInt.asUintN(64, BigInt(x));

export function decide(stats) {
  const byEvents = config.events > 0n && u64(stats.eventsSince) >= config.events;
  const byBytes = config.bytes > 0n && u64(stats.bytesSince) >= config.bytes;
  return { take: byEvents || byBytes, keep: Number(config.keep) };
}
