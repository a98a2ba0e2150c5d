"""Output drift: how a live response differs from an action's output schema.

Reports fields that appeared (not in the schema), went missing (required but
absent) or changed type, with array indexes folded to ``*`` so that one field is one
line. In ``warn`` mode each (action, line) is logged once per process.

A report depends only on the value's *shape* (its field names and the JSON types of
their values, all the way down), so :class:`Drift` remembers the report of each shape
it has seen: a record shaped like one already compared is not compared again (a page of
participants is a handful of shapes, whatever its length).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("connector.drift")

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}

_seen: set[tuple[str, str]] = set()
_lock = threading.Lock()


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    for name, types in _TYPES.items():
        if isinstance(value, types):
            return name
    return type(value).__name__


def _matches(value: Any, type_spec: Any) -> bool:
    names = type_spec if isinstance(type_spec, list) else [type_spec]
    actual = type_name(value)
    return actual in names or (actual == "integer" and "number" in names)


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return [b for b in schema[key] if isinstance(b, dict)]
    return []


_SCALARS = frozenset({str, int, float, bool, type(None)})


def shape(value: Any) -> Any:
    """What a drift report of ``value`` depends on: its field names and the types of
    their values (a list: the distinct shapes of its items, in order), hashable."""
    t = type(value)
    if t in _SCALARS:
        return t
    if isinstance(value, dict):
        return (
            tuple(value),
            tuple([v.__class__ if v.__class__ in _SCALARS else shape(v) for v in value.values()]),
        )
    if isinstance(value, list):
        return (
            list,
            tuple(dict.fromkeys(v.__class__ if v.__class__ in _SCALARS else shape(v) for v in value)),
        )
    return t


#: Shapes a :class:`Drift` remembers; past it, reports are computed (and correct) anyway.
MEMO_LIMIT = 4096


class Drift:
    """Drift reports against one schema, remembered per shape (thread-safe: a report is
    the same whoever computes it)."""

    def __init__(self, schema: Any):
        self.schema = schema  # held, so that the ids in the memo stay its own
        self.memo: dict[Any, list[str]] = {}

    def report(self, value: Any, at: str = "", schema: Any = None) -> list[str]:
        """``compare(schema, value, at)`` (``schema``: this one, or a part of it)."""
        schema = self.schema if schema is None else schema
        key = (id(schema), at, shape(value))
        found = self.memo.get(key)
        if found is None:
            found = compare(schema, value, at, self.memo)
            if len(self.memo) < MEMO_LIMIT:
                self.memo[key] = found
        return found


def compare(schema: Any, value: Any, at: str = "", memo: dict[Any, list[str]] | None = None) -> list[str]:
    """Drift lines for ``value`` against ``schema`` (empty when it conforms). With
    ``memo`` (a :class:`Drift`'s), list items of a shape already seen are not compared."""
    if not isinstance(schema, dict):
        return []
    branches = _branches(schema)
    if branches:
        reports = [compare(b, value, at, memo) for b in branches]
        return min(reports, key=len)
    if "type" in schema and not _matches(value, schema["type"]):
        expected = schema["type"] if isinstance(schema["type"], str) else "/".join(schema["type"])
        return [f"{at or '/'}: changed type: expected {expected}, got {type_name(value)}"]
    found: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties")
        if isinstance(props, dict):
            for name in sorted(value):
                if name not in props:
                    found.append(f"{at}/{name}: appeared ({type_name(value[name])})")
                else:
                    found.extend(compare(props[name], value[name], f"{at}/{name}", memo))
        for name in schema.get("required", []):
            if name not in value:
                found.append(f"{at}/{name}: went missing")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        items, where = schema["items"], f"{at}/*"
        seen: set[str] = set()
        shapes: set[Any] = set()
        for item in value:
            if memo is None:
                lines = compare(items, item, where)
            else:
                s = shape(item)
                if s in shapes:
                    continue  # its lines are in already
                shapes.add(s)
                key = (id(items), where, s)
                lines = memo.get(key)  # type: ignore[assignment]
                if lines is None:
                    lines = compare(items, item, where, memo)
                    if len(memo) < MEMO_LIMIT:
                        memo[key] = lines
            for line in lines:
                if line not in seen:
                    seen.add(line)
                    found.append(line)
    return found


def warn_once(action: str, report: list[str]) -> list[str]:
    """Log each line not yet logged for ``action``; return the ones logged now."""
    fresh = []
    with _lock:
        for line in report:
            if (action, line) not in _seen:
                _seen.add((action, line))
                fresh.append(line)
    for line in fresh:
        log.warning("schema drift in %s: %s", action, line)
    return fresh


def reset() -> None:
    with _lock:
        _seen.clear()
