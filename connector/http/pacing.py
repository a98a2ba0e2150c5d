"""Client-side pacing: one sliding-window limiter per process.

Willo publishes 10 requests per second and 100 per minute per organisation
(raisable). Every request of the process reserves a slot here before it is sent, so
bulk work runs at the allowed rate instead of into 429s. Threads queue fairly: each
reserves the earliest slot that keeps both windows within their limits.

Willo's throttles are Django REST framework's: the server stamps each request when it
checks it (after authentication), so network and queueing jitter bring requests
closer together there than they left here, and a refused request still counts against
every window that let it through. So each window is kept ``SLACK`` seconds longer than
the server's, which absorbs the jitter; and a 429 tightens the pacer (every request
waits out the server's ``Retry-After``, the slack doubles and each window admits a
tenth fewer requests), which then relaxes one step per quiet ``RECOVERY`` seconds.

The interface is two calls, :meth:`Pacer.acquire` before each attempt and
:meth:`Pacer.throttled` after a 429, so that the budget can move elsewhere (a store
shared by processes) without touching the client.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from connector.errors import ConfigError

#: Seconds added to every window: more than the arrival jitter of a request (0-40 ms
#: measured on loopback under load; see benchmarks/bench_pacing.py).
SLACK = 0.05
#: The most a run of 429s can stretch the slack to.
MAX_SLACK = 1.6
#: Each window admits at most this many tenths fewer requests after 429s.
MAX_CUT = 5
#: Quiet seconds (no 429) after which the pacer relaxes one step.
RECOVERY = 60.0
#: The longest a ``Retry-After`` holds every request (a longer one is the retrying
#: request's own business: one bad header must not stall the process for a day).
MAX_HOLD = 60.0


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
        slack: float = SLACK,
    ):
        self.windows = [(n, w) for n, w in ((per_second, 1.0), (per_minute, 60.0)) if n]
        self._logs: list[deque[float]] = [deque() for _ in self.windows]
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self.base_slack = slack
        self.slack = slack
        self.cut = 0  # tenths of each limit withheld after 429s
        self._hold_until = 0.0
        self._relaxed_at = 0.0
        self.waited = 0.0
        self.throttles = 0

    def _limit(self, limit: int) -> int:
        return max(1, limit - math.ceil(limit * self.cut / 10))

    def _relax(self, now: float) -> None:
        while (self.cut or self.slack > self.base_slack) and now - self._relaxed_at >= RECOVERY:
            self._relaxed_at += RECOVERY
            self.cut = max(0, self.cut - 1)
            self.slack = max(self.base_slack, self.slack / 2)

    def reserve(self) -> float:
        """Reserve the earliest allowed send time; return how long to wait for it."""
        with self._lock:
            now = self._clock()
            self._relax(now)
            at = max(now, self._hold_until)
            for (limit, span), log in zip(self.windows, self._logs, strict=True):
                span += self.slack
                while log and log[0] <= now - span - MAX_SLACK:
                    log.popleft()
                if log:
                    at = max(at, log[-1])  # first come, first served; keeps logs sorted
                n = self._limit(limit)
                if len(log) >= n:
                    at = max(at, log[-n] + span)
            for log in self._logs:
                log.append(at)
            return at - now

    def time_for(self, n: int) -> float:
        """Seconds from now until ``n`` more requests could all have been sent, as
        :meth:`reserve` would space them (nothing is reserved): for an ETA."""
        if not self.windows or n <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            spans = [span + self.slack for _, span in self.windows]
            limits = [self._limit(limit) for limit, _ in self.windows]
            logs = [[t for t in log if t > now - span] for span, log in zip(spans, self._logs, strict=True)]
            at = max(now, self._hold_until)
        for _ in range(min(n, 100_000)):
            for limit, span, log in zip(limits, spans, logs, strict=True):
                if len(log) >= limit:
                    at = max(at, log[-limit] + span)
            for log in logs:
                log.append(at)
        return at - now

    def describe(self) -> str:
        """The limits, e.g. ``10/s, 100/min``."""
        names = {1.0: "s", 60.0: "min"}
        return ", ".join(f"{n}/{names.get(w, f'{w:g}s')}" for n, w in self.windows)

    def acquire(self) -> None:
        if not self.windows:
            return
        delay = self.reserve()
        if delay > 0:
            self.waited += delay
            self._sleep(delay)

    def throttled(self, retry_after: float | None = None) -> None:
        """The server answered 429: hold every request until ``retry_after`` and tighten."""
        if not self.windows:
            return
        with self._lock:
            now = self._clock()
            self.throttles += 1
            if retry_after:
                self._hold_until = max(self._hold_until, now + min(retry_after, MAX_HOLD))
            self.slack = min(MAX_SLACK, self.slack * 2)
            self.cut = min(MAX_CUT, self.cut + 1)
            self._relaxed_at = now

    def usage(self) -> list[dict[str, float]]:
        """Each window as it stands: ``window`` (seconds), ``used`` (requests sent or
        reserved in the last window), ``limit`` (what it admits now, after any 429s)
        and ``configured`` (the limit set)."""
        with self._lock:
            now = self._clock()
            found = []
            for (limit, span), log in zip(self.windows, self._logs, strict=True):
                used = sum(1 for at in log if now - span < at)
                found.append({"window": span, "used": used, "limit": self._limit(limit), "configured": limit})
            return found


_PACERS: dict[tuple[int, int], Pacer] = {}
_PACERS_LOCK = threading.Lock()


def shared_pacer(per_second: int, per_minute: int) -> Pacer:
    """The process-wide pacer for these limits."""
    with _PACERS_LOCK:
        key = (per_second, per_minute)
        if key not in _PACERS:
            _PACERS[key] = Pacer(per_second, per_minute)
        return _PACERS[key]


def pacers() -> list[Pacer]:
    """Every pacer this process has made (one per rate setting in use)."""
    with _PACERS_LOCK:
        return list(_PACERS.values())
