"""Client-side pacing: the rate budget every request draws on before it is sent.

Willo publishes 10 requests per second, 100 per minute and 50,000 a day per
organisation. Every request reserves a slot before it is sent, so bulk work runs at
the allowed rate instead of into 429s. The interface is two calls,
:meth:`acquire` before each attempt and :meth:`throttled` after a 429, and there
are two implementations of one algorithm (:mod:`connector.state.budget`: windows,
slack for the server's arrival jitter, tightening after a 429, the day's quota):

- :class:`SharedPacer`, an account's budget in the state store, shared by every
  process on the machine that uses that account (what the CLI uses for live
  requests);
- :class:`Pacer`, the same reservations in this process's memory, for a process
  without a state store (library users, the kit's fixtures, the embedded sandbox).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from connector.errors import ConfigError, QuotaExhausted
from connector.state.budget import (
    KEEP,
    LATE,
    MAX_CUT,
    MAX_HOLD,
    MAX_RESLOTS,
    MAX_SLACK,
    RECOVERY,
    SLACK,
    Budget,
    Jitter,
    Limits,
    Reservation,
    Tuning,
    earliest,
    fits,
    iso,
    time_for,
    utc_day,
)

if TYPE_CHECKING:
    from connector.state.store import StateStore

log = logging.getLogger(__name__)

__all__ = [
    "MAX_CUT",
    "MAX_HOLD",
    "MAX_SLACK",
    "ON_QUOTA",
    "RECOVERY",
    "SLACK",
    "Pacer",
    "Pacing",
    "SharedPacer",
    "parse_rate",
    "shared_pacer",
]

#: What a request does when its account's daily quota is spent (``WILLO_ON_QUOTA``).
ON_QUOTA = ("wait", "fail")
#: The longest single sleep while waiting for a quota to renew (it is re-checked after).
_QUOTA_NAP = 60.0
#: The most requests a process counts against the daily quota in one write (a block).
BLOCK = 32


class Pacing(Protocol):
    """What the client asks of a rate budget (a pacer may also have ``observe(seconds)``,
    told each request's round trip, and ``release()``, told a request ended without
    an answer: both end the request's flight)."""

    def acquire(self) -> None:
        """Wait for a slot (or fail: the day's quota is spent) before one attempt."""

    def throttled(self, retry_after: float | None = None) -> None:
        """The server answered 429 (asking to wait ``retry_after`` seconds)."""


def _nth_of(times: list[float]) -> Callable[[int], float | None]:
    def nth(n: int) -> float | None:
        return times[-n] if len(times) >= n else None

    return nth


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
    """The rate budget in this process's memory: a per-second and a per-minute window
    (0 = none), adaptive as :mod:`connector.state.budget` describes."""

    def __init__(
        self,
        per_second: int,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        slack: float = SLACK,
    ):
        self.windows = Limits(per_second, per_minute).windows
        #: reserved slots, in the order reserved; each ``[at, flying]`` (a list, so that
        #: :meth:`acquire` and :meth:`observe` can move its request's slot, and say
        #: whether it is in flight: sent, not answered yet, so counted as now)
        self._log: deque[list[float]] = deque()
        self._mine = threading.local()  # the slot of this thread's request in flight
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self.tuning = Tuning(slack=slack, base_slack=slack)
        self.waited = 0.0
        self.missed = 0  # slots given back: they no longer kept the windows when due
        self.late = 0  # slots a request woke too late for (it went later, checked)
        self.jitter = Jitter()

    # the tuning's fields, as they were before the budget moved to connector.state
    @property
    def slack(self) -> float:
        return self.tuning.slack

    @slack.setter
    def slack(self, value: float) -> None:
        self.tuning.slack = value

    @property
    def base_slack(self) -> float:
        return self.tuning.base_slack

    @base_slack.setter
    def base_slack(self, value: float) -> None:
        self.tuning.base_slack = value

    @property
    def cut(self) -> int:
        return self.tuning.cut

    @property
    def throttles(self) -> int:
        return self.tuning.throttles

    @throttles.setter
    def throttles(self, value: int) -> None:
        self.tuning.throttles = value

    def _times(self, now: float) -> list[float]:
        """When the server may count each slot: in flight, as now (see :meth:`_confirm`)."""
        return sorted(max(cell[0], now) if cell[1] else cell[0] for cell in self._log)

    def reserve(self) -> float:
        """Reserve the earliest allowed send time; return how long to wait for it."""
        cell, now = self._slot()
        return cell[0] - now

    def _slot(self, present: float | None = None) -> tuple[list[float], float]:
        with self._lock:
            now = self._clock()
            self.tuning.relax(now)
            while self._log and self._log[0][0] <= now - KEEP:
                self._log.popleft()
            times = self._times(now if present is None else min(present, now))
            at = earliest(now, self.tuning, self.windows, _nth_of(times), self.jitter.spread())
            cell = [at, 0]
            self._log.append(cell)
            return cell, now

    def _confirm(self, cell: list[float], force: bool = False, now: float | None = None) -> bool:
        """Just before sending: :func:`~connector.state.budget.fits` now (or ``force``),
        and the slot moves to now, in flight; else it is given back."""
        with self._lock:
            now = self._clock() if now is None else now
            times = [max(c[0], now) if c[1] else c[0] for c in self._log if c is not cell]

            def before(lo: float, hi: float) -> int:
                return sum(1 for t in times if lo < t <= hi)

            if force or fits(now, self.tuning, self.windows, before, self.jitter.spread()):
                cell[0], cell[1] = max(cell[0], now), 1
                return True
            self._log = deque(c for c in self._log if c is not cell)
            return False

    def time_for(self, n: int) -> float:
        """Seconds from now until ``n`` more requests could all have been sent, as
        :meth:`reserve` would space them (nothing is reserved): for an ETA."""
        if not self.windows or n <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            return time_for(now, self.tuning, self.windows, self._times(now), n)

    def acquire(self) -> None:
        """Wait for a slot, then check, as the request goes, that it keeps the windows
        counting the requests in flight as now and the answered ones at their answers
        (:meth:`observe`); a slot that no longer does is given back for a later one (at
        most ``MAX_RESLOTS`` times). Until :meth:`observe` or :meth:`release`, the
        request is in flight."""
        if not self.windows:
            return
        self.release()  # a thread sends one request at a time: its last one is over
        for tries in range(1, MAX_RESLOTS + 1):
            cell, now = self._slot()
            if cell[0] > now:
                self.waited += cell[0] - now
                self._sleep(cell[0] - now)
            if self._clock() - cell[0] > LATE:
                self.late += 1
            if not self._confirm(cell, force=tries >= MAX_RESLOTS):
                self.missed += 1  # given back: take a later one
                continue
            self._mine.cell = cell
            return

    def observe(self, seconds: float) -> None:
        """This thread's request was answered after ``seconds``: the server counted it no
        later than now (its slot moves here), and how much round trips vary widens
        the slack."""
        self.jitter.observe(seconds)
        self.release()

    def release(self) -> None:
        """This thread's request is over (answered, failed, or never sent): no longer in
        flight; the server counted it, if at all, no later than now."""
        cell = getattr(self._mine, "cell", None)
        if cell is not None:
            self._mine.cell = None
            with self._lock:
                cell[0], cell[1] = max(cell[0], self._clock()), 0

    # the same steps for an engine that keeps the slots of many processes itself (the
    # Temporal engine's budget workflow): it holds each slot (a cell) between the steps

    def plan(self, present: float | None = None) -> list[float]:
        """Reserve the earliest allowed slot, planned (not in flight): ``[at, flying]``,
        for :meth:`go` and :meth:`settle`. ``present``: the time the requests in flight
        count as, when the clock is ahead of it (slots planned ahead: they are checked
        again as they go)."""
        return self._slot(present)[0]

    def go(self, cell: list[float], now: float, force: bool = False) -> bool:
        """The request of ``cell`` is to go at ``now`` (no earlier): does it keep the
        windows, counting the requests in flight as at ``now``? If so (or ``force``) it
        is in flight from ``now``; if not, its slot is given back (plan another)."""
        return self._confirm(cell, force, now)

    def settle(self, cell: list[float], when: float) -> None:
        """The request of ``cell`` was answered, or ended unanswered, at ``when``: the
        server counted it, if at all, no later; no longer in flight."""
        with self._lock:
            cell[0], cell[1] = max(cell[0], when), 0

    def cells(self) -> list[list[float]]:
        """The slots kept, oldest first (the cells :meth:`plan` gave)."""
        with self._lock:
            return list(self._log)

    def throttled(self, retry_after: float | None = None) -> None:
        """The server answered 429: hold every request until ``retry_after`` and tighten."""
        if not self.windows:
            return
        with self._lock:
            self.tuning.tighten(self._clock(), retry_after)

    def describe(self) -> str:
        """The limits, e.g. ``10/s, 100/min``."""
        limits = dict((span, n) for n, span in self.windows)
        return Limits(limits.get(1.0, 0), limits.get(60.0, 0)).describe()

    def usage(self) -> list[dict[str, float]]:
        """Each window as it stands: ``window`` (seconds), ``used`` (requests sent or
        reserved in the last window), ``limit`` (what it admits now, after any 429s)
        and ``configured`` (the limit set)."""
        with self._lock:
            now = self._clock()
            times = [cell[0] for cell in self._log]
            return [
                {
                    "window": span,
                    "used": sum(1 for at in times if now - span < at),
                    "limit": self.tuning.limit(limit),
                    "configured": limit,
                }
                for limit, span in self.windows
            ]

    def state(self) -> dict[str, Any]:
        """What it has reserved and how far 429s tightened it, as plain data (an engine
        that keeps the pacer in a workflow's history carries it over)."""
        with self._lock:
            t = self.tuning
            return {
                "log": [cell[0] for cell in self._log],
                "flying": [i for i, cell in enumerate(self._log) if cell[1]],
                "hold": t.hold_until,
                "slack": t.slack,
                "cut": t.cut,
                "relaxed_at": t.relaxed_at,
                "throttles": t.throttles,
            }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state` gave (missing fields keep their defaults)."""
        with self._lock:
            flying = {int(i) for i in state.get("flying") or []}
            log = state.get("log") or []
            self._log = deque([float(t), 1 if i in flying else 0] for i, t in enumerate(log))
            t = self.tuning
            t.hold_until = float(state.get("hold") or 0.0)
            t.slack = float(state.get("slack") or t.slack)
            t.cut = int(state.get("cut") or 0)
            t.relaxed_at = float(state.get("relaxed_at") or 0.0)
            t.throttles = int(state.get("throttles") or 0)


class SharedPacer:
    """One account's budget in the state store, shared by every process using it.

    ``account`` names the budget (:attr:`connector.connections.Account.budget`);
    ``label`` is how messages name it (the connection). When the day's quota is
    spent, :meth:`acquire` waits for it to renew (``on_quota="wait"``, saying until
    when) or raises :class:`~connector.errors.QuotaExhausted` (``"fail"``)."""

    def __init__(
        self,
        store: StateStore,
        account: str,
        limits: Limits,
        *,
        label: str = "",
        on_quota: str = "wait",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        name: str = "default",
    ):
        if on_quota not in ON_QUOTA:
            raise ConfigError(f"WILLO_ON_QUOTA={on_quota[:20]!r}: use wait or fail")
        self.budget = Budget(store, clock)
        self.account = account
        self.limits = limits
        self.windows = limits.windows
        self.label = label or account
        self.name = name  # the connection's (metrics label the budget with it)
        self.on_quota = on_quota
        self._sleep = sleep
        self._clock = clock
        self.waited = 0.0
        self.throttles = 0
        self.missed = 0  # slots given back: they no longer kept the windows when due
        self.late = 0  # slots a request woke too late for (it went later, checked)
        self.jitter = Jitter()  # this process's round trips
        self._mine = threading.local()  # the slot of this thread's request in flight
        self._told: float | None = None  # the renewal this process already announced
        # A budget with only a daily quota times nothing: requests are counted in
        # blocks (one write for many), and what a block has left is given back at exit.
        self._blocks = threading.Lock()
        self._prepaid = 0  # requests counted and not yet sent
        self._prepaid_day = ""  # the UTC day they were counted on
        self._block = 1  # the next block's size: doubling up to BLOCK
        with _PACERS_LOCK:
            _SHARED.add(self)

    def acquire(self) -> None:
        if not self.limits.active:
            return
        self.release()  # a thread sends one request at a time: its last one is over
        if not self.windows:
            self._count()
            return
        tries = 0
        while True:
            slot = self.budget.reserve(
                self.account, self.limits, self.label, again=tries > 0, jitter=self.jitter.spread()
            )
            if slot.renews_at is None:
                if slot.delay > 0:
                    self.waited += slot.delay
                    self._sleep(slot.delay)
                tries += 1
                if slot.slot is not None:
                    if self._clock() - slot.at > LATE:
                        self.late += 1
                    if not self.budget.confirm(
                        self.account,
                        self.limits,
                        slot.slot,
                        self.jitter.spread(),
                        force=tries >= MAX_RESLOTS,
                    ):
                        self.missed += 1  # given back: take a later one
                        continue
                self._mine.slot = slot.slot
                return
            self._spent(slot)

    def _count(self) -> None:
        """Count one request against the daily quota: from this process's block, or a
        new block (one write in the store for up to :data:`BLOCK` requests)."""
        with self._blocks:
            while True:
                if self._prepaid and self._prepaid_day == utc_day(self._clock()):
                    self._prepaid -= 1
                    return
                # (a block of a day gone by is dropped: that day is over)
                got = self.budget.reserve_block(self.account, self.limits, self._block, self.label)
                if got.renews_at is None:
                    self._prepaid, self._prepaid_day = got.granted - 1, got.day
                    self._block = min(BLOCK, self._block * 2)
                    return
                self._prepaid, self._block = 0, 1
                self._spent(got)

    def _spent(self, slot: Reservation) -> None:
        """The day's quota is spent: raise (``on_quota="fail"``) or wait a while."""
        assert slot.renews_at is not None
        spent = (
            f"{self.label}: the daily quota of {self.limits.per_day:,} requests is spent "
            f"({slot.used_today:,} sent today, UTC); it renews at {iso(slot.renews_at)}"
        )
        if self.on_quota == "fail":
            raise QuotaExhausted(
                f"{spent} (WILLO_ON_QUOTA=wait waits for it instead)",
                retry_after=max(0.0, slot.renews_at - self._clock()),
            )
        if self._told != slot.renews_at:
            self._told = slot.renews_at
            log.warning("%s; waiting until then (WILLO_ON_QUOTA=fail fails instead)", spent)
        nap = min(_QUOTA_NAP, max(0.05, slot.renews_at - self._clock()))
        self.waited += nap
        self._sleep(nap)

    def refund(self) -> None:
        """Give back what this process counted against the day's quota and did not
        send (at exit: a block's rest)."""
        with self._blocks:
            n, self._prepaid = self._prepaid, 0
            if n:
                self.budget.refund(self.account, n, self._prepaid_day)

    def observe(self, seconds: float) -> None:
        """This thread's request was answered after ``seconds``: the server counted it no
        later than now (its slot moves here, for every process's confirmations), and how
        much round trips vary widens the slack."""
        self.jitter.observe(seconds)
        self.release()

    def release(self) -> None:
        """This thread's request is over (answered, failed, or never sent): it is no
        longer in flight; the server counted it, if at all, no later than now."""
        slot = getattr(self._mine, "slot", None)
        if slot is not None:
            self._mine.slot = None
            self.budget.settle(slot, self._clock())

    def throttled(self, retry_after: float | None = None) -> None:
        """The server answered 429: every process using this account holds and tightens."""
        self.throttles += 1
        self.budget.throttled(self.account, retry_after)

    def describe(self) -> str:
        return self.limits.describe()

    def usage(self) -> list[dict[str, float]]:
        """Each window as every process has used it (:meth:`Pacer.usage`'s shape)."""
        used = self.budget.usage(self.account)
        cut = int(used["cut"])
        tuning = Tuning(cut=cut)
        counts = {1.0: used["last_second"], 60.0: used["last_minute"]}
        windows = [
            {"window": span, "used": counts.get(span, 0), "limit": tuning.limit(limit), "configured": limit}
            for limit, span in self.windows
        ]
        if self.limits.per_day:  # the daily quota (a UTC day), which 429s do not tighten
            day = self.limits.per_day
            windows.append({"window": 86400.0, "used": used["used_today"], "limit": day, "configured": day})
        return windows

    def time_for(self, n: int) -> float:
        """Seconds from now until ``n`` more requests could all have been sent, given
        what every process has reserved (nothing is reserved): for an ETA."""
        if not self.windows or n <= 0:
            return 0.0
        return self.budget.time_for(self.account, self.limits, n)


_PACERS: dict[tuple[str, int, int], Pacer] = {}
_SHARED: weakref.WeakSet[SharedPacer] = weakref.WeakSet()
_PACERS_LOCK = threading.Lock()


def refund_all() -> None:
    """Give back the unsent rest of every shared budget's block in this process."""
    with _PACERS_LOCK:
        pacers = list(_SHARED)
    for pacer in pacers:
        try:
            pacer.refund()
        except Exception as exc:  # at exit, a store gone away: the day only counts high
            log.debug("could not give back a quota block: %s", exc)


def _forget_blocks_in_child() -> None:
    """In a forked child: the blocks are the parent's to spend and give back (and a
    lock some other thread of the parent held would never be released here)."""
    for pacer in list(_SHARED):
        pacer._blocks = threading.Lock()
        pacer._prepaid = 0


atexit.register(refund_all)  # a block's rest given back at any exit (nothing, without one)
os.register_at_fork(after_in_child=_forget_blocks_in_child)


def shared_pacer(per_second: int, per_minute: int, account: str = "") -> Pacer:
    """The process-wide in-memory pacer of ``account`` with these limits."""
    with _PACERS_LOCK:
        key = (account, per_second, per_minute)
        if key not in _PACERS:
            _PACERS[key] = Pacer(per_second, per_minute)
        return _PACERS[key]


def pacers() -> list[Pacer | SharedPacer]:
    """Every pacer this process uses: the in-memory ones (one per account and rate
    setting) and the shared budgets its connections draw on."""
    with _PACERS_LOCK:
        return [*_PACERS.values(), *_SHARED]
