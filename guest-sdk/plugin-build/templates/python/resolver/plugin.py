"""{{name}}: a Syncbase resolver in Python, scaffolded by `syncbase plugin new`.

Called when two nodes wrote the same record concurrently: `current` is the
record as this node has it, `incoming` the other write. Answer keep-current,
take-incoming, or a merged record (JSON written with `syncbase.dump`, so every
node gets the same bytes). No clock, randomness or I/O, and no state beyond
what `configure` sets up.

What it does now: merges concurrent edits field by field. Edits to different
fields both survive; when both writes changed a field, the later write (HLC,
then node id) wins it. A delete, or a change without `before`, falls back to
last-writer-wins for the whole record. It takes no configuration.
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


class WitWorld(wit_world.WitWorld):
    def configure(self, config: str) -> None:
        if config.strip() not in ("", "{}", "null"):
            raise Err("this plugin takes no configuration")

    def resolve(self, current: types.Version, incoming: types.Change) -> types.Resolution:
        wins = syncbase.incoming_wins(current, incoming)
        cur = syncbase.parse_object(current.data)
        inc = syncbase.parse_object(incoming.data)
        before = syncbase.parse_object(incoming.before)
        if cur is not None and inc is not None and before is not None:
            merged = syncbase.merge_fields(cur, inc, before, wins)
            return types.Resolution_Merged(syncbase.dump(merged))
        return types.Resolution_TakeIncoming() if wins else types.Resolution_KeepCurrent()
