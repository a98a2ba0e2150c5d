"""Client-side pacing: one sliding-window limiter per process.

Willo publishes 10 requests per second and 100 per minute per organisation
(raisable). Every request of the process reserves a slot here before it is sent, so
bulk work runs at the allowed rate instead of into 429s. Threads queue fairly: each
reserves the earliest slot that keeps both windows within their limits.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from connector.errors import ConfigError

#: A little slack so that arrival jitter at the server never crosses its window.
MARGIN = 1.02


def parse_rate(text: str) -> tuple[int, int]:
    """``"10/100"`` -> (10 per second, 100 per minute); ``"0"`` -> no pacing."""
    text = text.strip()
    if text in ("0", "off", "none"):
        return 0, 0
    try:
        per_s, _, per_m = text.partition("/")
        s, m = int(per_s), int(per_m or 0)
    except ValueError:
        raise ConfigError(f"rate {text!r}: expected PER_SECOND/PER_MINUTE, e.g. 10/100") from None
    if s < 0 or m < 0:
        raise ConfigError(f"rate {text!r}: limits cannot be negative")
    return s, m


class Pacer:
    """Sliding-window limiter over a per-second and a per-minute window (0 = none)."""

    def __init__(
        self,
        per_second: int,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.windows = [(n, w * MARGIN) for n, w in ((per_second, 1.0), (per_minute, 60.0)) if n]
        self._logs: list[deque[float]] = [deque() for _ in self.windows]
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self.waited = 0.0

    def reserve(self) -> float:
        """Reserve the earliest allowed send time; return how long to wait for it."""
        with self._lock:
            now = self._clock()
            at = now
            for (limit, span), log in zip(self.windows, self._logs, strict=True):
                while log and log[0] <= now - span:
                    log.popleft()
                if log:
                    at = max(at, log[-1])  # first come, first served; keeps logs sorted
                if len(log) >= limit:
                    at = max(at, log[-limit] + span)
            for log in self._logs:
                log.append(at)
            return at - now

    def time_for(self, n: int) -> float:
        """Seconds from now until ``n`` more requests could all have been sent within
        both windows, given what was sent lately (nothing is reserved)."""
        if not self.windows or n <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            logs = [
                [t for t in log if t > now - span]
                for (_, span), log in zip(self.windows, self._logs, strict=True)
            ]
        at = now
        for _ in range(min(n, 100_000)):
            for (limit, span), log in zip(self.windows, logs, strict=True):
                if len(log) >= limit:
                    at = max(at, log[-limit] + span)
            for log in logs:
                log.append(at)
        return at - now

    def describe(self) -> str:
        """The limits, e.g. ``10/s, 100/min``."""
        names = {1.0: "s", 60.0: "min"}
        return ", ".join(f"{n}/{names.get(round(w / MARGIN, 3), f'{w:g}s')}" for n, w in self.windows)

    def acquire(self) -> None:
        if not self.windows:
            return
        delay = self.reserve()
        if delay > 0:
            self.waited += delay
            self._sleep(delay)


_PACERS: dict[tuple[int, int], Pacer] = {}
_PACERS_LOCK = threading.Lock()


def shared_pacer(per_second: int, per_minute: int) -> Pacer:
    """The process-wide pacer for these limits."""
    with _PACERS_LOCK:
        key = (per_second, per_minute)
        if key not in _PACERS:
            _PACERS[key] = Pacer(per_second, per_minute)
        return _PACERS[key]
