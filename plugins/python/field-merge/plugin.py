"""field-merge (Python): per-field last-writer-wins, the same policy as the
Rust plugins/field-merge, answer for answer (plugins/conformance proves it).

Concurrent edits to different fields of one record both survive; when both
writes changed the same field, the later write (HLC, then origin) decides it.
Without the incoming change's `before`, or when either side is a delete, the
whole record falls back to last-writer-wins.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

import syncbase


class WitWorld(wit_world.WitWorld):
    def configure(self, config: str) -> None:
        if config.strip() not in ("", "{}", "null"):
            raise Err("this plugin takes no configuration, got " + config.strip())

    def resolve(self, current: types.Version, incoming: types.Change) -> types.Resolution:
        wins = syncbase.incoming_wins(current, incoming)
        if incoming.op != types.Op.DELETE and current.data is not None:
            cur = syncbase.parse_object(current.data)
            inc = syncbase.parse_object(incoming.data)
            before = syncbase.parse_object(incoming.before)
            if cur is not None and inc is not None and before is not None:
                merged = syncbase.merge_fields(cur, inc, before, wins)
                return types.Resolution_Merged(syncbase.dump(merged))
        return types.Resolution_TakeIncoming() if wins else types.Resolution_KeepCurrent()
