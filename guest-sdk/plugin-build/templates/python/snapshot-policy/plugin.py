"""{{name}}: a Syncbase snapshot policy in Python, scaffolded by `syncbase plugin new`.

Called after the node applied events: say whether to take a snapshot now and
how many to keep. No clock, randomness or I/O (time since the last snapshot
comes in the stats), and no state beyond what `configure` sets up.

What it does now: takes a snapshot once 1000 events were applied since the
last one and keeps the newest 2; {"events": N, "keep": K} changes either (both
at least 1).
"""

# Records are JSON text. `syncbase.parse` / `syncbase.parse_object` read it into
# plain Python values, except numbers: each is a `syncbase.Num` holding its
# canonical text, so `1` and `1.0` stay different and 18446744073709551615
# stays exact (a Python float would round it). Compare Nums with `==`, read
# `.value` for an int or a float; new numbers may be plain ints and floats.
# `syncbase.dump` writes canonical JSON (keys sorted, no spaces, numbers as
# Syncbase writes them), so every node, and a plugin in any language, produces
# the same bytes for the same answer: build answers with it, not `json.dumps`.


import wit_world
from componentize_py_types import Err
from wit_world.imports import types

import syncbase

USAGE = 'invalid plugin configuration: use {"events": N, "keep": K} (whole numbers, at least 1)'


class WitWorld(wit_world.WitWorld):
    events = 1000
    keep = 2

    def configure(self, config: str) -> None:
        try:
            c = syncbase.parse(config) if config.strip() else {}
        except ValueError:
            raise Err(USAGE)
        if not isinstance(c, dict) or set(c) - {"events", "keep"}:
            raise Err(USAGE)
        out = {"events": 1000, "keep": 2}
        for key, value in c.items():
            n = value.as_uint(32 if key == "keep" else 64) if isinstance(value, syncbase.Num) else None
            if not n:
                raise Err(USAGE)
            out[key] = n
        WitWorld.events, WitWorld.keep = out["events"], out["keep"]

    def decide(self, stats: types.Stats) -> types.Decision:
        return types.Decision(take=stats.events_since >= WitWorld.events, keep=WitWorld.keep)
