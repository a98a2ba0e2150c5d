"""A step's ``timeout``: a deadline for the work of this thread (one try of a unit).

The runner opens :func:`within` around one try of a unit of work; the client then
sizes every request's timeouts, its pacing wait and its retry waits to what is left,
and raises :class:`~connector.errors.TimedOut` rather than start what cannot finish.
A context variable, so it follows the unit's thread and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from connector.errors import TimedOut

_DEADLINE: ContextVar[float | None] = ContextVar("willo_deadline", default=None)


@contextmanager
def within(seconds: float | None) -> Iterator[None]:
    """Run the block with a deadline ``seconds`` from now (None: no deadline; an
    outer, earlier deadline still holds)."""
    if seconds is None:
        yield
        return
    at = time.monotonic() + seconds
    outer = _DEADLINE.get()
    token = _DEADLINE.set(at if outer is None else min(at, outer))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining() -> float | None:
    """Seconds left before the deadline (0 or less once passed), or None."""
    at = _DEADLINE.get()
    return None if at is None else at - time.monotonic()


def check(what: str, need: float = 0.0) -> None:
    """Raise :class:`TimedOut` if less than ``need`` seconds are left."""
    left = remaining()
    if left is not None and left <= need:
        raise TimedOut(f"step timeout reached before {what}")


def cap(seconds: float) -> float:
    """``seconds``, or what is left of the deadline if that is less."""
    left = remaining()
    return seconds if left is None else max(0.001, min(seconds, left))
