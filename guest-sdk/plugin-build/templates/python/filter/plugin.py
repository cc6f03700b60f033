"""{{name}}: a Syncbase filter in Python, scaffolded by `syncbase plugin new`.

Called for every local change before it leaves this node (bound as
outbound-filter) and for every change from another node before it is applied
here (inbound-filter). Answer keep, drop, or replace with the change rewritten
(only `data` and `before` may differ; write JSON with `syncbase.dump`). No
clock, randomness or I/O, and no state beyond what `configure` sets up.

What it does now: removes private fields from changes -- `secret` by default,
or those named by {"fields": ["ssn", "token"]} -- from the record (`data`) and
from the old values (`before`). A change without any of them is kept as it is.
"""

# Records are JSON text. `syncbase.parse` / `syncbase.parse_object` read it into
# plain Python values, except numbers: each is a `syncbase.Num` holding its
# canonical text, so `1` and `1.0` stay different and 18446744073709551615
# stays exact (a Python float would round it). Compare Nums with `==`, read
# `.value` for an int or a float; new numbers may be plain ints and floats.
# `syncbase.dump` writes canonical JSON (keys sorted, no spaces, numbers as
# Syncbase writes them), so every node, and a plugin in any language, produces
# the same bytes for the same answer: build answers with it, not `json.dumps`.


import dataclasses

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

import syncbase

USAGE = 'invalid plugin configuration: use {"fields": ["name", ...]}'


class WitWorld(wit_world.WitWorld):
    fields = ["secret"]

    def configure(self, config: str) -> None:
        try:
            c = syncbase.parse(config) if config.strip() else {}
        except ValueError:
            raise Err(USAGE)
        if not isinstance(c, dict) or set(c) - {"fields"}:
            raise Err(USAGE)
        fields = c.get("fields", ["secret"])
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise Err(USAGE)
        WitWorld.fields = fields

    def _strip(self, text):
        """The JSON text without the fields, or None when it had none of them."""
        obj = syncbase.parse_object(text)
        if obj is None or not any(f in obj for f in WitWorld.fields):
            return None
        for f in WitWorld.fields:
            obj.pop(f, None)
        return syncbase.dump(obj)

    def filter(self, direction: types.Direction, change: types.Change) -> types.Verdict:
        data = self._strip(change.data)
        before = self._strip(change.before)
        if data is None and before is None:
            return types.Verdict_Keep()
        return types.Verdict_Replace(
            dataclasses.replace(
                change,
                data=change.data if data is None else data,
                before=change.before if before is None else before,
            )
        )
