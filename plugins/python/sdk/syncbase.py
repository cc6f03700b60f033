"""syncbase: helpers every Python plugin is built with (importable as `syncbase`).

Record data crosses the plugin boundary as JSON text. `parse` reads it into
plain Python values (dict, list, str, bool, None) with numbers kept as `Num`,
and `dump` writes Syncbase's canonical form, the one the Rust SDK (serde_json)
writes, so a Python plugin answers byte for byte what the Rust plugin of the
same policy answers (see plugins/conformance/README.md): no whitespace, keys
sorted, integers as written when they fit in i64/u64, other numbers as the
shortest round-trip decimal (`1.5`, `100.0`, `1e+20`), strings escaping only
`"`, `\\` and control characters.
"""

import json

_U64 = (1 << 64) - 1
_I64_MIN = -(1 << 63)


class Num:
    """A JSON number, as its canonical text. Compare with ==; `value` gives
    an int or a float."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def __eq__(self, other):
        return isinstance(other, Num) and other.text == self.text

    def __hash__(self):
        return hash(self.text)

    def __repr__(self):
        return "Num(%s)" % self.text

    @property
    def value(self):
        t = self.text
        return float(t) if ("." in t or "e" in t) else int(t)

    def as_uint(self, bits=64):
        """The number as an unsigned integer of `bits` bits, or None."""
        t = self.text
        if "." in t or "e" in t or t.startswith("-"):
            return None
        n = int(t)
        return n if n < (1 << bits) else None


def format_float(f):
    """The canonical text of a float (serde_json's layout of the shortest
    round-trip digits)."""
    r = repr(f)
    neg = r.startswith("-")
    if neg:
        r = r[1:]
    mant, _, exp = r.partition("e")
    exp = int(exp) if exp else 0
    whole, _, frac = mant.partition(".")
    digits = (whole + frac).lstrip("0")
    # value = 0.digits * 10^kk
    kk = len(whole) + exp - (len(whole + frac) - len((whole + frac).lstrip("0")))
    digits = digits.rstrip("0")
    if not digits:
        digits, kk = "0", 1
    n = len(digits)
    k = kk - n
    if k >= 0 and kk <= 16:
        out = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        out = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        out = "0." + "0" * (-kk) + digits
    else:
        e = kk - 1
        out = digits[0] + ("." + digits[1:] if n > 1 else "") + "e" + ("-" if e < 0 else "+") + str(abs(e))
    return ("-" if neg else "") + out


def _float(text):
    f = float(text)
    if f in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return Num(format_float(f))


def _int(text):
    n = int(text)
    if text == "-0":
        return Num("-0.0")
    if _I64_MIN <= n <= _U64:
        return Num(text)
    return _float(text)


def _constant(name):
    raise ValueError("not JSON: " + name)


def _no_lone_surrogates(v):
    if isinstance(v, str):
        v.encode("utf-8")
    elif isinstance(v, dict):
        for k, x in v.items():
            k.encode("utf-8")
            _no_lone_surrogates(x)
    elif isinstance(v, list):
        for x in v:
            _no_lone_surrogates(x)


def parse(text):
    """Parses JSON text; raises ValueError when it is not valid JSON."""
    try:
        v = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except (ValueError, RecursionError) as e:
        raise ValueError(str(e)) from None
    if "\\u" in text:
        try:
            _no_lone_surrogates(v)
        except UnicodeEncodeError:
            raise ValueError("lone surrogate") from None
    return v


def parse_object(text):
    """Parses JSON object text into a dict; None when absent, invalid or not an object."""
    if text is None:
        return None
    try:
        v = parse(text)
    except ValueError:
        return None
    return v if isinstance(v, dict) else None


_string = json.JSONEncoder(ensure_ascii=False).encode


def _write(v, out):
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, Num):
        out.append(v.text)
    elif isinstance(v, str):
        out.append(_string(v))
    elif isinstance(v, dict):
        out.append("{")
        first = True
        for k in sorted(v):
            if not first:
                out.append(",")
            first = False
            out.append(_string(k))
            out.append(":")
            _write(v[k], out)
        out.append("}")
    elif isinstance(v, list):
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _write(x, out)
        out.append("]")
    elif isinstance(v, bool):
        out.append("true" if v else "false")
    elif isinstance(v, int):
        out.append(_int(str(v)).text)
    elif isinstance(v, float):
        out.append(format_float(v))
    else:
        raise TypeError("cannot write %r as JSON" % (v,))


def dump(v):
    """Canonical JSON text of a value."""
    out = []
    _write(v, out)
    return "".join(out)


def _utf8_key(s):
    return s.encode("utf-8", "surrogatepass")


def incoming_wins(current, incoming):
    """Last-writer-wins: the incoming write is later (HLC, then origin bytes)."""
    if incoming.hlc != current.hlc:
        return incoming.hlc > current.hlc
    return _utf8_key(incoming.origin) > _utf8_key(current.origin)


def merge_fields(current, incoming, before, wins):
    """Three-way per-field merge (the Rust SDK's `merge_fields`)."""
    merged = dict(current)
    for field, old in before.items():
        if current.get(field) == old or wins:
            if field in incoming:
                merged[field] = incoming[field]
            else:
                merged.pop(field, None)
    return merged
