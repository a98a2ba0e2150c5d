"""The bounds of one evaluation of an expression, and their checks: plain Python, shared
by :mod:`.expressions` and the Jinja2 environment that enforces them
(:mod:`.sandboxing`), which is imported only when an expression needs Jinja2."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping, Sized
from contextlib import contextmanager
from typing import Any

from connector.errors import ConnectorError, short

#: characters (or items) one operation may build, and a template may output
MAX_SIZE = 1_000_000
#: characters or items all the operations of one evaluation may build together
MAX_BUILT = 10 * MAX_SIZE
#: bits of an integer an operation may build (about 4,900 decimal digits)
MAX_INT_BITS = 16_384
#: steps of one evaluation: calls, lookups, operators, loop turns
MAX_STEPS = 1_000_000
#: wall-clock seconds of one evaluation
MAX_SECONDS = 5.0
_clock = time.monotonic


class ExpressionError(ConnectorError):
    """An expression that failed to parse or evaluate; the message names it."""


class ExpressionLimit(Exception):
    """Internal: an evaluation went over one of the bounds above."""


# --------------------------------------------------------------------------- the budget


class _Budget:
    __slots__ = ("built", "deadline", "steps")

    def __init__(self, steps: int, seconds: float):
        self.steps = steps
        self.deadline = _clock() + seconds
        self.built = 0


_local = threading.local()


@contextmanager
def _budget(steps: int = MAX_STEPS, seconds: float = MAX_SECONDS) -> Iterator[None]:
    """One evaluation's budget (an evaluation inside another shares the outer one)."""
    if getattr(_local, "budget", None) is not None:
        yield
        return
    _local.budget = _Budget(steps, seconds)
    try:
        yield
    finally:
        _local.budget = None


def _tick(n: int = 1) -> None:
    budget: _Budget | None = getattr(_local, "budget", None)
    if budget is None:  # compile-time constant folding: bounded by the checks alone
        return
    budget.steps -= n
    if budget.steps < 0:
        raise ExpressionLimit(f"more than {MAX_STEPS:,} steps (the step limit)")
    if _clock() > budget.deadline:
        raise ExpressionLimit(f"took longer than {MAX_SECONDS:g} s (the time limit)")


def _built(result: Any) -> Any:
    """Count what an operation built against :data:`MAX_BUILT`; return it."""
    n = _size(result)
    budget: _Budget | None = getattr(_local, "budget", None)
    if n and budget is not None:
        budget.built += n
        if budget.built > MAX_BUILT:
            raise ExpressionLimit(
                f"built more than {MAX_BUILT:,} characters or items in all (the size limit)"
            )
    return result


def _over(what: str, amount: int, limit: int = MAX_SIZE, unit: str = "characters or items") -> None:
    if amount > limit:
        raise ExpressionLimit(f"{what} would build {amount:,} {unit} (the limit is {limit:,})")


def _is_int(v: Any) -> bool:
    return isinstance(v, int)


def _size(v: Any) -> int:
    return len(v) if isinstance(v, Sized) else 0


# --------------------------------------------------------------------------- checks


def _check_binop(op: str, left: Any, right: Any) -> None:
    if op == "**":
        if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            bits = (abs(left).bit_length() - 1) * right
            _over(f"{short(left, 20)} ** {short(right, 20)}", bits, MAX_INT_BITS, "bits")
    elif op == "*":
        if _is_int(left) and _is_int(right):
            _over("this product", left.bit_length() + right.bit_length(), MAX_INT_BITS, "bits")
        elif _is_int(right) and isinstance(left, (str, bytes, list, tuple)):
            _over("repeating a sequence", len(left) * max(right, 0))
        elif _is_int(left) and isinstance(right, (str, bytes, list, tuple)):
            _over("repeating a sequence", len(right) * max(left, 0))
    elif op == "+":
        if isinstance(left, (str, bytes, list, tuple)) and isinstance(right, (str, bytes, list, tuple)):
            _over("joining two sequences", len(left) + len(right))
    elif op == "%" and isinstance(left, str):
        _check_printf(left, right)


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.S)


def _check_printf(fmt: str, args: Any) -> None:
    """``fmt % args``: the widths and precisions it asks for, summed, are bounded."""
    total = len(fmt)
    for m in _PRINTF.finditer(fmt):
        width, precision, _conversion = m.groups()
        if "*" in (width, precision):
            raise ExpressionLimit("a '*' width or precision in a format is over the expression limits")
        total += int(width or 0) + int(precision or 0)
    _over("this format", total)


_DIGITS = re.compile(r"\d+")


def _check_format_spec(spec: str) -> None:
    """A str.format spec: every number in it (width, precision) is bounded."""
    _over("this format", sum(int(n) for n in _DIGITS.findall(spec or "")))


_PADDING = ("center", "ljust", "rjust", "zfill")


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _check_call(fn: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """The methods data types have that build something of a size their arguments say."""
    name = getattr(fn, "__name__", None)
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, (str, bytes)):
        if name in _PADDING:
            width = _arg(args, kwargs, 0, "width", 0)
            if _is_int(width):
                _over(f"{name}()", width)
        elif name == "expandtabs":
            tab = _arg(args, kwargs, 0, "tabsize", 8)
            if _is_int(tab):
                tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
                _over("expandtabs()", len(owner) + tabs * tab)
        elif name == "join":
            items = _arg(args, kwargs, 0, "iterable")
            if isinstance(items, (list, tuple)):
                _over("join()", sum(_size(x) for x in items) + len(owner) * max(len(items) - 1, 0))
        elif name == "replace":
            _check_replace(
                owner,
                _arg(args, kwargs, 0, "old"),
                _arg(args, kwargs, 1, "new"),
                _arg(args, kwargs, 2, "count", -1),
            )
        elif name == "translate":
            table = _arg(args, kwargs, 0, "table")
            if isinstance(table, Mapping):
                longest = max((_size(v) for v in table.values()), default=1)
                _over("translate()", len(owner) * max(longest, 1))
    elif _is_int(owner) and name == "to_bytes":
        length = _arg(args, kwargs, 0, "length", 1)
        if _is_int(length):
            _over("to_bytes()", length)


def _check_replace(s: Any, old: Any, new: Any, count: Any) -> None:
    if not (isinstance(s, str) and isinstance(old, str) and isinstance(new, str)):
        return
    if len(new) <= len(old):
        return
    found = s.count(old) if old else len(s) + 1
    if _is_int(count) and count >= 0:
        found = min(found, count)
    _over("replace()", len(s) + found * (len(new) - len(old)))


def _check_text(value: Any, text: str) -> Any:
    """Refuse a result holding a lone surrogate: it is not valid Unicode and nothing
    downstream (JSON, SQLite, a terminal) can encode it."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            m = _SURROGATE.search(v)
            if m:
                raise ExpressionError(
                    f"{short(text)}: the result holds a lone surrogate (U+{ord(m.group()):04X}), "
                    "which is not valid Unicode"
                )
        elif isinstance(v, Mapping):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")
