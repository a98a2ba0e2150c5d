"""Rate budgets: how many requests an account may send, and when, shared by every
process on the machine.

Willo allows an organisation 10 requests a second, 100 a minute (raisable) and
50,000 a day. Every request reserves a slot before it is sent: the earliest time at
which it keeps every window within its limit, given the slots already reserved. The
reservation is one write transaction in the state store (:meth:`Budget.reserve`), so
any number of processes (a ``listen``, two ``poll``\\ s, bulk ``run``\\ s) using one
account stay inside its limits together; :class:`connector.http.pacing.Pacer` makes
the same reservation in memory for a process that has no store (a dry run, a
cassette, a library user). One algorithm, two places to keep its log:

- **windows**: a slot is at least each window's span (plus the slack) after the
  slot ``limit`` places before it, and never before the last slot (first come, first
  served);
- **slack**: Willo's throttles are Django REST framework's, which stamp a request
  when the server checks it, so network and queueing jitter bring requests closer
  together there than they left here, and a refused request still counts against
  every window that let it through. Each window is kept ``SLACK`` seconds longer,
  which absorbs the jitter (``benchmarks/bench_pacing.py``);
- **tightening**: a 429 holds every slot until the server's ``Retry-After`` (at most
  ``MAX_HOLD``), doubles the slack and withholds a tenth of each limit; one step is
  relaxed per quiet ``RECOVERY`` seconds;
- **the day**: a daily quota (a UTC calendar day) counts every reservation; when it is
  spent, :meth:`Budget.reserve` says until when, and the caller waits or fails;
- **late requests**: a slot is a plan. A request may reach the server later than its
  slot (its thread woke late on a loaded machine, a cold connection, a queue in front
  of the server), which brings the ones after it closer together there. The server
  counts a request somewhere between when it was sent and when it was answered, so
  just before it is sent, a request checks its slot against what the server may
  count (:meth:`Budget.confirm`): the answered requests at their answers' times
  (:meth:`Budget.settle`: the server counted each no later), and every request in
  flight (sent, not answered yet) as if counted now, however long ago it was sent.
  If the windows still hold, the slot moves to now and the request is in flight;
  else it takes a later slot. Whatever the delays, the server then never sees more
  than a window's limit in it (when the latest-checked of them checked, it counted
  every other). And when round trips vary more than the slack (:class:`Jitter`), the
  slack widens to match.

Times are wall-clock seconds (``time.time``): they are compared across processes.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.state.store import StateStore

#: Seconds added to every window: more than the arrival jitter of a request (0-40 ms
#: measured on loopback under load; see benchmarks/bench_pacing.py).
SLACK = 0.05
#: The most a run of 429s can stretch the slack to.
MAX_SLACK = 1.6
#: Each window admits at most this many tenths fewer requests after 429s.
MAX_CUT = 5
#: Quiet seconds (no 429) after which the budget relaxes one step.
RECOVERY = 60.0
#: The longest a ``Retry-After`` holds every request (a longer one is the retrying
#: request's own business: one bad header must not stall every process for a day).
MAX_HOLD = 60.0
#: Slots older than this are never looked at again (the longest window, its slack, a margin).
KEEP = 60.0 + MAX_SLACK + 1.0
#: How late a request may wake for its slot and still be on time (it is checked
#: against the windows when it goes whatever its lateness; a late one moves its slot).
LATE = SLACK / 2
#: New slots a request whose slot no longer keeps the windows takes at most before it
#: goes anyway (each is planned knowing more answers: one or two are the rule).
MAX_RESLOTS = 20


@dataclass(frozen=True)
class Limits:
    """An account's limits; 0 is none."""

    per_second: int = 0
    per_minute: int = 0
    per_day: int = 0

    @property
    def windows(self) -> list[tuple[int, float]]:
        return [(n, span) for n, span in ((self.per_second, 1.0), (self.per_minute, 60.0)) if n]

    @property
    def active(self) -> bool:
        """Is there anything to reserve? (No limits at all: requests go at once.)"""
        return bool(self.per_second or self.per_minute or self.per_day)

    def describe(self) -> str:
        """E.g. ``10/s, 100/min, 50,000/day``."""
        parts = (
            f"{self.per_second}/s" if self.per_second else "",
            f"{self.per_minute}/min" if self.per_minute else "",
            f"{self.per_day:,}/day" if self.per_day else "",
        )
        return ", ".join(p for p in parts if p) or "no limits"


@dataclass
class Tuning:
    """How far 429s have tightened a budget, and until when every slot is held."""

    slack: float = SLACK
    cut: int = 0  # tenths of each limit withheld
    hold_until: float = 0.0
    relaxed_at: float = 0.0
    throttles: int = 0
    base_slack: float = SLACK

    def limit(self, limit: int) -> int:
        return max(1, limit - math.ceil(limit * self.cut / 10))

    def relax(self, now: float) -> bool:
        """Relax one step per quiet ``RECOVERY`` seconds since the last; changed?"""
        changed = False
        while (self.cut or self.slack > self.base_slack) and now - self.relaxed_at >= RECOVERY:
            self.relaxed_at += RECOVERY
            self.cut = max(0, self.cut - 1)
            self.slack = max(self.base_slack, self.slack / 2)
            changed = True
        return changed

    def tighten(self, now: float, retry_after: float | None) -> None:
        """The server answered 429 (waiting ``retry_after`` seconds, if it said)."""
        self.throttles += 1
        if retry_after:
            self.hold_until = max(self.hold_until, now + min(retry_after, MAX_HOLD))
        self.slack = min(MAX_SLACK, self.slack * 2)
        self.cut = min(MAX_CUT, self.cut + 1)
        self.relaxed_at = now


def earliest(
    now: float,
    tuning: Tuning,
    windows: list[tuple[int, float]],
    nth: Callable[[int], float | None],
    jitter: float = 0.0,
) -> float:
    """The earliest time a new request may be sent. ``nth(n)`` is the ``n``-th latest
    slot already reserved (1: the last), or None when fewer were; ``jitter`` (seconds,
    :class:`Jitter`) widens the slack when the round trips observed vary more than it."""
    at = max(now, tuning.hold_until)
    last = nth(1)
    if last is not None:
        at = max(at, last)  # first come, first served; keeps the log sorted
    slack = max(tuning.slack, min(MAX_SLACK, jitter))
    for limit, span in windows:
        before = nth(tuning.limit(limit))
        if before is not None:
            at = max(at, before + span + slack)
    return at


def fits(
    at: float,
    tuning: Tuning,
    windows: list[tuple[int, float]],
    before: Callable[[float, float], int],
    jitter: float = 0.0,
) -> bool:
    """May a request go at ``at`` (now), keeping every window? ``before(lo, hi)``
    counts the other slots the server may count in ``(lo, hi]``: the answered ones at
    their answers' times, those in flight as at ``at``, plans due by then."""
    slack = max(tuning.slack, min(MAX_SLACK, jitter))
    return all(before(at - span - slack, at) < tuning.limit(limit) for limit, span in windows)


class Jitter:
    """How much the time requests take varies, from the round trips of the last
    ``size`` (the spread between the 90th and the 10th percentile). The server stamps
    a request somewhere within its round trip: when round trips vary more than the
    slack (a loaded machine, a jittery network), requests may reach the server's
    windows closer together than they were sent, and the slack widens to match (up
    to ``MAX_SLACK``); on a steady link it stays at ``SLACK``."""

    def __init__(self, size: int = 50, least: int = 8):
        self._seen: deque[float] = deque(maxlen=size)
        self._least = least
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._seen.append(seconds)

    def spread(self) -> float:
        with self._lock:
            if len(self._seen) < self._least:
                return 0.0
            ordered = sorted(self._seen)
        n = len(ordered)
        return ordered[(9 * n) // 10 - 1] - ordered[n // 10]


def time_for(
    now: float, tuning: Tuning, windows: list[tuple[int, float]], slots: list[float], n: int
) -> float:
    """Seconds from ``now`` until ``n`` more requests could all have been sent after
    the ``slots`` already reserved (oldest first), as :func:`earliest` spaces them."""
    log = list(slots)

    def nth(k: int) -> float | None:
        return log[-k] if len(log) >= k else None

    at = now
    for _ in range(min(n, 100_000)):
        at = earliest(now, tuning, windows, nth)
        log.append(at)
    return max(0.0, at - now)


def _used_on(row: sqlite3.Row | None, day: str) -> int:
    """What a budget's row says was used on ``day`` (nothing: the row counts another day)."""
    return int(row["day_used"]) if row is not None and row["day"] == day else 0


def utc_day(when: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(when))


def next_day(when: float) -> float:
    """The start of the UTC day after ``when`` (when a daily quota renews)."""
    day = datetime.fromtimestamp(when, UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: When the server may count a slot's request, as SQL (one parameter: now): a request
#: in flight may be counted any time until it is answered, so it counts as now.
_COUNTED = "(CASE WHEN flying THEN MAX(at, ?) ELSE at END)"


#: A block of the daily quota is at most this share of what is left of it (so
#: blocks of 32 while 16,384 or more are left, and single requests below 512).
BLOCK_SHARE = 512


@dataclass(frozen=True)
class Reservation:
    """A reserved slot: wait ``delay`` seconds, then send; or, when the day's quota is
    spent, nothing was reserved and it renews at ``renews_at``."""

    delay: float
    used_today: int
    renews_at: float | None = None
    at: float = 0.0  # the slot (clock time)
    slot: int | None = None  # its row, to confirm or settle it
    granted: int = 1  # requests counted (a block: :meth:`Budget.reserve_block`)
    day: str = ""  # the UTC day they were counted on (a block)

    @property
    def exhausted(self) -> bool:
        return self.renews_at is not None


class Budget:
    """The shared budgets of every account in one state store.

    An account here is a string naming the server's budget: a hash of the base URL and
    the key's fingerprint (:attr:`connector.connections.Account.budget`), so two
    connection names for one key draw on one budget."""

    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    def _tuning(self, db: sqlite3.Connection, account: str, now: float) -> tuple[Tuning, sqlite3.Row | None]:
        row = db.execute("SELECT * FROM budgets WHERE account = ?", (account,)).fetchone()
        if row is None:
            return Tuning(relaxed_at=now), None
        return (
            Tuning(row["slack"], row["cut"], row["hold_until"], row["relaxed_at"], row["throttles"]),
            row,
        )

    def _save(
        self,
        db: sqlite3.Connection,
        account: str,
        tuning: Tuning,
        row: sqlite3.Row | None,
        now: float,
        *,
        limits: Limits | None = None,
        label: str = "",
        day: str | None = None,
        used: int | None = None,
    ) -> None:
        if row is None:
            limits = limits or Limits()
            db.execute(
                "INSERT INTO budgets (account, label, per_second, per_minute, per_day, slack, cut,"
                " hold_until, relaxed_at, throttles, day, day_used, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    account,
                    label,
                    limits.per_second,
                    limits.per_minute,
                    limits.per_day,
                    tuning.slack,
                    tuning.cut,
                    tuning.hold_until,
                    tuning.relaxed_at,
                    tuning.throttles,
                    day or utc_day(now),
                    used or 0,
                    now,
                ),
            )
            self._forget_idle(db, now)
            return
        db.execute(
            "UPDATE budgets SET slack = ?, cut = ?, hold_until = ?, relaxed_at = ?, throttles = ?,"
            " day = COALESCE(?, day), day_used = COALESCE(?, day_used), updated_at = ?,"
            " label = CASE WHEN ? = '' THEN label ELSE ? END,"
            " per_second = COALESCE(?, per_second), per_minute = COALESCE(?, per_minute),"
            " per_day = COALESCE(?, per_day) WHERE account = ?",
            (
                tuning.slack,
                tuning.cut,
                tuning.hold_until,
                tuning.relaxed_at,
                tuning.throttles,
                day,
                used,
                now,
                label,
                label,
                limits.per_second if limits else None,
                limits.per_minute if limits else None,
                limits.per_day if limits else None,
                account,
            ),
        )

    def _forget_idle(self, db: sqlite3.Connection, now: float) -> None:
        """Budgets unused for two days (a sandbox's random key) are dropped with their slots."""
        db.execute("DELETE FROM budgets WHERE updated_at < ?", (now - 2 * 86400,))
        db.execute("DELETE FROM budget_slots WHERE at < ?", (now - KEEP,))

    def reserve(
        self, account: str, limits: Limits, label: str = "", *, again: bool = False, jitter: float = 0.0
    ) -> Reservation:
        """Reserve the earliest slot ``limits`` allow ``account`` (atomically, among every
        process using this store), or say the day's quota is spent. ``again``: a new slot
        for a request whose slot was missed (it counts once against the day)."""

        def op(db: sqlite3.Connection) -> Reservation:
            now = self.clock()
            tuning, row = self._tuning(db, account, now)
            tuning.relax(now)
            day = utc_day(now)
            used = _used_on(row, day)
            if again:
                used -= 1  # already counted
            elif limits.per_day and used >= limits.per_day:
                self._save(db, account, tuning, row, now, limits=limits, label=label, day=day, used=used)
                return Reservation(0.0, used, next_day(now))
            at = now
            windows = limits.windows
            if windows:

                def nth(n: int) -> float | None:
                    found = db.execute(
                        f"SELECT {_COUNTED} AS t FROM budget_slots WHERE account = ?"
                        " ORDER BY t DESC LIMIT 1 OFFSET ?",
                        (now, account, n - 1),
                    ).fetchone()
                    return None if found is None else float(found[0])

                at = earliest(now, tuning, windows, nth, jitter)
                slot = db.execute(
                    "INSERT INTO budget_slots (account, at) VALUES (?, ?)", (account, at)
                ).lastrowid
                db.execute("DELETE FROM budget_slots WHERE account = ? AND at < ?", (account, now - KEEP))
            else:
                slot = None
            self._save(db, account, tuning, row, now, limits=limits, label=label, day=day, used=used + 1)
            return Reservation(at - now, used + 1, at=at, slot=slot)

        return self.store.write(op)

    def reserve_block(self, account: str, limits: Limits, want: int, label: str = "") -> Reservation:
        """Count up to ``want`` requests against ``account``'s daily quota at once (for
        a budget that has no windows: nothing is timed, only counted): ``granted`` of
        them, fewer as the quota runs out (one in :data:`BLOCK_SHARE` of what is left:
        one at a time in the last stretch, so that what other processes hold unsent
        is a sliver when it is spent); none, and when it renews, once it is spent.
        What is not used is given back with :meth:`refund`."""

        def op(db: sqlite3.Connection) -> Reservation:
            now = self.clock()
            tuning, row = self._tuning(db, account, now)
            day = utc_day(now)
            used = _used_on(row, day)
            left = limits.per_day - used
            if left <= 0:
                self._save(db, account, tuning, row, now, limits=limits, label=label, day=day, used=used)
                return Reservation(0.0, used, next_day(now), granted=0)
            n = max(1, min(want, left // BLOCK_SHARE))
            self._save(db, account, tuning, row, now, limits=limits, label=label, day=day, used=used + n)
            return Reservation(0.0, used + n, at=now, granted=n, day=day)

        return self.store.write(op)

    def refund(self, account: str, n: int, day: str) -> None:
        """Give back ``n`` requests counted on ``day`` (a UTC day) but never sent."""

        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE budgets SET day_used = MAX(0, day_used - ?) WHERE account = ? AND day = ?",
                (n, account, day),
            )

        self.store.write(op)

    def confirm(
        self, account: str, limits: Limits, slot: int, jitter: float = 0.0, *, force: bool = False
    ) -> bool:
        """Just before sending at a reserved slot (on time or late): does a request sent
        now keep every window, counting what the server may count (:func:`fits`)? If so
        (or ``force``: it goes anyway), the slot moves to now and is in flight until
        :meth:`settle`; if not, it is given back (reserve another)."""

        def op(db: sqlite3.Connection) -> bool:
            now = self.clock()
            tuning, _ = self._tuning(db, account, now)
            tuning.relax(now)

            def before(lo: float, hi: float) -> int:
                return int(
                    db.execute(
                        f"SELECT COUNT(*) FROM budget_slots WHERE account = ? AND {_COUNTED} > ?"
                        f" AND {_COUNTED} <= ? AND rowid != ?",
                        (account, now, lo, now, hi, slot),
                    ).fetchone()[0]
                )

            if force or fits(now, tuning, limits.windows, before, jitter):
                db.execute("UPDATE budget_slots SET at = MAX(at, ?), flying = 1 WHERE rowid = ?", (now, slot))
                return True
            db.execute("DELETE FROM budget_slots WHERE rowid = ?", (slot,))
            return False

        return self.store.write(op)

    def settle(self, slot: int, when: float) -> None:
        """The request of ``slot`` was answered (or given up) at ``when``: the server
        counted it no later than that, which is where it stays for the requests after
        it (a request that waited in the server's queue moves its slot later)."""

        def op(db: sqlite3.Connection) -> None:
            db.execute("UPDATE budget_slots SET at = MAX(at, ?), flying = 0 WHERE rowid = ?", (when, slot))

        self.store.write(op)

    def throttled(self, account: str, retry_after: float | None = None) -> None:
        """The server answered 429: hold every process's requests and tighten."""
        with self.store.tx() as db:
            now = self.clock()
            tuning, row = self._tuning(db, account, now)
            tuning.tighten(now, retry_after)
            self._save(db, account, tuning, row, now)

    def time_for(self, account: str, limits: Limits, n: int) -> float:
        """:func:`time_for` on ``account``'s slots and tuning (read only)."""
        now = self.clock()
        keep = max((limit for limit, _ in limits.windows), default=0) + 1
        rows = self.store.query(
            "SELECT at FROM budget_slots WHERE account = ? ORDER BY at DESC LIMIT ?", (account, keep)
        )
        tuned = self.store.query("SELECT * FROM budgets WHERE account = ?", (account,))
        tuning = (
            Tuning(tuned[0]["slack"], tuned[0]["cut"], tuned[0]["hold_until"], tuned[0]["relaxed_at"])
            if tuned
            else Tuning()
        )
        tuning.relax(now)
        return time_for(now, tuning, limits.windows, [r["at"] for r in reversed(rows)], n)

    def usage(self, account: str) -> dict[str, Any]:
        """What ``account`` has used: today (UTC) against its quota, the last second and
        minute (slots reserved ahead included), and how far 429s tightened it."""
        return usage(self.store, account, self.clock())


def usage(store: StateStore, account: str, now: float | None = None) -> dict[str, Any]:
    """An account's current use of its budget (for ``connections`` and metrics; the
    last second and minute count reserved slots, which only paced accounts keep):
    ``{"account", "label", "day", "used_today", "per_day", "renews_at", "last_second",
    "per_second", "last_minute", "per_minute", "throttles", "cut", "slack", "held_until"}``;
    zeros for an account that has sent nothing."""
    now = time.time() if now is None else now
    rows = store.query("SELECT * FROM budgets WHERE account = ?", (account,))
    row = rows[0] if rows else None
    day = utc_day(now)
    counts = store.query(
        "SELECT SUM(at > ?) AS s, SUM(at > ?) AS m FROM budget_slots WHERE account = ?",
        (now - 1.0, now - 60.0, account),
    )[0]
    tuning = Tuning(row["slack"], row["cut"], row["hold_until"], row["relaxed_at"]) if row else Tuning()
    tuning.relax(now)
    return {
        "account": account,
        "label": row["label"] if row else "",
        "day": day,
        "used_today": _used_on(row, day),
        "per_day": row["per_day"] if row else 0,
        "renews_at": iso(next_day(now)),
        "last_second": counts["s"] or 0,
        "per_second": row["per_second"] if row else 0,
        "last_minute": counts["m"] or 0,
        "per_minute": row["per_minute"] if row else 0,
        "throttles": row["throttles"] if row else 0,
        "cut": tuning.cut,
        "slack": tuning.slack,
        "held_until": iso(tuning.hold_until) if row and tuning.hold_until > now else None,
    }


def all_usage(store: StateStore, now: float | None = None) -> list[dict[str, Any]]:
    """:func:`usage` of every account that has a budget in ``store``."""
    return [
        usage(store, r["account"], now) for r in store.query("SELECT account FROM budgets ORDER BY label")
    ]


__all__ = [
    "KEEP",
    "LATE",
    "MAX_CUT",
    "MAX_HOLD",
    "MAX_RESLOTS",
    "MAX_SLACK",
    "RECOVERY",
    "SLACK",
    "Budget",
    "Jitter",
    "Limits",
    "Reservation",
    "Tuning",
    "all_usage",
    "earliest",
    "fits",
    "iso",
    "next_day",
    "time_for",
    "usage",
    "utc_day",
]
