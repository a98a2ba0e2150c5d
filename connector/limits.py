"""Bounds on untrusted data: how deep it may nest, how far YAML aliases may expand.

Every path that reads a document (workflow and manifest YAML, input files, ``--event``,
``--input-json``, cassettes, webhook bodies) goes through these, so that hostile or
broken input gets a one-line error instead of a hang, a RecursionError or a memory
blow-up. The numbers are far above anything a real document needs.
"""

from __future__ import annotations

import json
from typing import Any

#: containers inside containers; real documents stay under 20
MAX_DEPTH = 100
#: nodes that YAML aliases may add when expanded, summed over every alias use
MAX_ALIAS_NODES = 100_000


class LimitError(ValueError):
    """Input over one of the limits above; ``str()`` says which."""


def depth_error(depth: int = MAX_DEPTH) -> LimitError:
    return LimitError(f"nested deeper than {depth} levels")


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`LimitError` if containers nest deeper than ``limit`` (iteratively:
    the check itself never recurses)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= limit:
            raise depth_error(limit)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))


def loads_json(text: str | bytes, limit: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``limit`` with a
    :class:`LimitError` (a ``ValueError``, as invalid JSON is) and never recurses
    out of the interpreter's stack. NaN and Infinity are refused as well: they are
    not JSON, and nothing downstream can send them."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise depth_error(limit) from None
    check_depth(value, limit)
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
