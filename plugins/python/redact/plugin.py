"""redact (Python): removes configured fields from changes, the same policy as
the Rust plugins/redact, answer for answer (plugins/conformance proves it).

Configuration (required): {"fields": ["email", "phone"]}, optionally with
"direction": "outbound" | "inbound" | "both" (default "both").
"""

import dataclasses

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

import syncbase

USAGE = 'use {"fields": ["..."], "direction": "outbound" | "inbound" | "both"}'


class WitWorld(wit_world.WitWorld):
    fields: list = []
    acts = "both"

    def configure(self, config: str) -> None:
        try:
            c = syncbase.parse(config) if config.strip() else {}
        except ValueError as e:
            raise Err("invalid plugin configuration: %s" % e)
        if not isinstance(c, dict) or set(c) - {"fields", "direction"}:
            raise Err("invalid plugin configuration: " + USAGE)
        fields = c.get("fields", [])
        acts = c.get("direction", "both")
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise Err("invalid plugin configuration: " + USAGE)
        if acts not in ("both", "outbound", "inbound"):
            raise Err("invalid plugin configuration: " + USAGE)
        if not fields:
            raise Err('redact needs the fields to remove, e.g. {"fields": ["email"]}')
        WitWorld.fields, WitWorld.acts = fields, acts

    def _strip(self, text):
        """The redacted JSON text, or None when nothing was removed."""
        obj = syncbase.parse_object(text)
        if obj is None:
            return None
        removed = False
        for f in WitWorld.fields:
            if f in obj:
                del obj[f]
                removed = True
        return syncbase.dump(obj) if removed else None

    def filter(self, direction: types.Direction, change: types.Change) -> types.Verdict:
        acts = WitWorld.acts
        if acts == "outbound" and direction != types.Direction.OUTBOUND:
            return types.Verdict_Keep()
        if acts == "inbound" and direction != types.Direction.INBOUND:
            return types.Verdict_Keep()
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
