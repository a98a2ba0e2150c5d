"""Output drift: how a live response differs from an action's output schema.

Reports fields that appeared (not in the schema), went missing (required but
absent) or changed type, with array indexes folded to ``*`` so that one field is one
line. In ``warn`` mode each (action, line) is logged once per process.
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


def compare(schema: Any, value: Any, at: str = "") -> list[str]:
    """Drift lines for ``value`` against ``schema`` (empty when it conforms)."""
    if not isinstance(schema, dict):
        return []
    branches = _branches(schema)
    if branches:
        reports = [compare(b, value, at) for b in branches]
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
                    found.extend(compare(props[name], value[name], f"{at}/{name}"))
        for name in schema.get("required", []):
            if name not in value:
                found.append(f"{at}/{name}: went missing")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        seen: set[str] = set()
        for item in value:
            for line in compare(schema["items"], item, f"{at}/*"):
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
