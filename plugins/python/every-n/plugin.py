"""every-n (Python): take a snapshot every N events or M bytes of events, keep
the newest K; the same policy as the Rust plugins/every-n.

Configuration: {"events": 10000, "bytes": 67108864, "keep": 3}; every key is
optional and those are the defaults. 0 disables a trigger; keep >= 1.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

import syncbase

DEFAULTS = {"events": 10000, "bytes": 64 << 20, "keep": 3}
USAGE = 'invalid plugin configuration: use {"events": N, "bytes": M, "keep": K} (whole numbers)'


class WitWorld(wit_world.WitWorld):
    config = dict(DEFAULTS)

    def configure(self, config: str) -> None:
        try:
            c = syncbase.parse(config) if config.strip() else {}
        except ValueError:
            raise Err(USAGE)
        if not isinstance(c, dict) or set(c) - set(DEFAULTS):
            raise Err(USAGE)
        out = dict(DEFAULTS)
        for key, value in c.items():
            n = value.as_uint(32 if key == "keep" else 64) if isinstance(value, syncbase.Num) else None
            if n is None:
                raise Err(USAGE)
            out[key] = n
        if out["keep"] == 0:
            raise Err("every-n: keep must be at least 1")
        WitWorld.config = out

    def decide(self, stats: types.Stats) -> types.Decision:
        c = WitWorld.config
        by_events = c["events"] > 0 and stats.events_since >= c["events"]
        by_bytes = c["bytes"] > 0 and stats.bytes_since >= c["bytes"]
        return types.Decision(take=by_events or by_bytes, keep=c["keep"])
