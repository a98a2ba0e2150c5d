"""Leases: who is working on what, held in the state store, so that a run or an
event has at most one live owner and a webhook subscription is removed only when no
live receiver serves it.

A lease is a row ``(resource, owner, expires_at)``. An owner is one process (its
host, pid and a random tag, so a reused pid, e.g. PID 1 in every container, is never
mistaken for another). A heartbeat thread renews every lease the owner holds each
third of the time to live; a process that dies stops renewing and its leases expire,
after which another may take them. Exclusive leases (runs, events) have one live
holder at most; shared leases (subscriptions) have any number of holders.

The time to live is ``WILLO_LEASE_SECONDS`` (default 30): how long a killed
process's work stays claimed before another may take it over.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connector.errors import ConfigError, ConnectorError

if TYPE_CHECKING:
    from connector.state.store import StateStore

log = logging.getLogger(__name__)

DEFAULT_TTL = 30.0
_CHUNK = 500  # resources per statement (SQLite allows 32,766 parameters; stay well below)


def lease_seconds(env: Any = None) -> float:
    """``WILLO_LEASE_SECONDS``: a lease's time to live (seconds, > 0)."""
    raw = (os.environ if env is None else env).get("WILLO_LEASE_SECONDS", "")
    if not raw:
        return DEFAULT_TTL
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"WILLO_LEASE_SECONDS={raw[:20]!r} is not a positive number of seconds")
    return value


def new_owner() -> str:
    """An owner id unique to this process (host:pid:tag)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseLost(ConnectorError):
    """This process no longer holds a lease it was working under: it must stop."""


@dataclass(frozen=True)
class Holder:
    owner: str
    heartbeat_at: float
    expires_at: float

    def describe(self, now: float) -> str:
        return (
            f"{self.owner}, last heartbeat {max(0.0, now - self.heartbeat_at):.0f}s ago, "
            f"expires in {max(0.0, self.expires_at - now):.0f}s"
        )


def live_clause(resource_sql: str) -> str:
    """SQL true when ``resource_sql`` (an expression) has a live lease; takes one
    parameter, the current time."""
    return f"EXISTS (SELECT 1 FROM leases WHERE resource = {resource_sql} AND expires_at > ?)"


class Leases:
    """The leases of one owner in one state store, kept alive by a heartbeat thread."""

    def __init__(
        self,
        store: StateStore,
        owner: str | None = None,
        ttl: float | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.owner = owner or new_owner()
        self.ttl = ttl if ttl is not None else lease_seconds()
        self.clock = clock
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ taking and giving

    def acquire(self, resource: str, *, shared: bool = False, db: sqlite3.Connection | None = None) -> bool:
        """Take ``resource`` (renewing it if already ours). False when another live
        owner holds it exclusively (or, for an exclusive lease, at all)."""
        if db is None:
            with self.store.tx() as conn:
                return self.acquire(resource, shared=shared, db=conn)
        now = self.clock()
        db.execute("DELETE FROM leases WHERE resource = ? AND expires_at <= ?", (resource, now))
        others = db.execute(
            "SELECT shared FROM leases WHERE resource = ? AND owner != ?", (resource, self.owner)
        ).fetchall()
        if others and (not shared or any(not row["shared"] for row in others)):
            return False
        db.execute(
            "INSERT INTO leases (resource, owner, shared, acquired_at, heartbeat_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (resource, owner) DO UPDATE SET"
            " heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
            (resource, self.owner, int(shared), now, now, now + self.ttl),
        )
        with self._lock:
            self._held.add(resource)
        self._start()
        return True

    def acquire_many(self, resources: list[str], *, db: sqlite3.Connection) -> set[str]:
        """:meth:`acquire` (exclusive) of each of ``resources`` inside ``db``'s write
        transaction, in a few statements: the ones taken (the others have a live holder)."""
        now = self.clock()
        taken: set[str] = set()
        for start in range(0, len(resources), _CHUNK):
            chunk = resources[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            db.execute(f"DELETE FROM leases WHERE resource IN ({marks}) AND expires_at <= ?", (*chunk, now))
            taken |= {
                row["resource"]
                for row in db.execute(
                    f"SELECT resource FROM leases WHERE resource IN ({marks}) AND owner != ?",
                    (*chunk, self.owner),
                )
            }
        free = [r for r in resources if r not in taken]
        db.executemany(
            "INSERT INTO leases (resource, owner, shared, acquired_at, heartbeat_at, expires_at)"
            " VALUES (?, ?, 0, ?, ?, ?) ON CONFLICT (resource, owner) DO UPDATE SET"
            " heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
            [(r, self.owner, now, now, now + self.ttl) for r in free],
        )
        if free:
            with self._lock:
                self._held.update(free)
            self._start()
        return set(free)

    def acquire_new(self, resources: list[str], *, db: sqlite3.Connection) -> None:
        """Take ``resources`` that came to exist in ``db``'s write transaction (nobody
        can hold them yet): :meth:`acquire_many` without looking for other holders."""
        now = self.clock()
        db.executemany(
            "INSERT INTO leases (resource, owner, shared, acquired_at, heartbeat_at, expires_at)"
            " VALUES (?, ?, 0, ?, ?, ?) ON CONFLICT (resource, owner) DO UPDATE SET"
            " heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
            [(r, self.owner, now, now, now + self.ttl) for r in resources],
        )
        if resources:
            with self._lock:
                self._held.update(resources)
            self._start()

    def release_many(self, resources: list[str], *, db: sqlite3.Connection) -> None:
        """:meth:`release` of each of ``resources`` inside ``db``'s write transaction."""
        with self._lock:
            self._held.difference_update(resources)
        for start in range(0, len(resources), _CHUNK):  # a statement per chunk, not per row
            chunk = resources[start : start + _CHUNK]
            db.execute(
                f"DELETE FROM leases WHERE owner = ? AND resource IN ({','.join('?' * len(chunk))})",
                (self.owner, *chunk),
            )

    def release(self, resource: str, *, db: sqlite3.Connection | None = None) -> None:
        with self._lock:
            self._held.discard(resource)
        if db is None:
            with self.store.tx() as conn:
                self.release(resource, db=conn)
            return
        db.execute("DELETE FROM leases WHERE resource = ? AND owner = ?", (resource, self.owner))

    def release_all(self, keep: Iterable[str] = ()) -> None:
        """Give back every lease of this owner (at a clean exit), but those in ``keep``
        (left to expire)."""
        keep = set(keep)
        with self._lock:
            self._held &= keep
        with self.store.tx() as db:
            for resource in {
                r["resource"]
                for r in db.execute("SELECT resource FROM leases WHERE owner = ?", (self.owner,))
            } - keep:
                db.execute("DELETE FROM leases WHERE resource = ? AND owner = ?", (resource, self.owner))

    # ------------------------------------------------------------------ looking

    def holders(self, resource: str, db: sqlite3.Connection | None = None) -> list[Holder]:
        """The live holders of ``resource`` (this owner included)."""
        sql = (
            "SELECT owner, heartbeat_at, expires_at FROM leases WHERE resource = ? AND expires_at > ?"
            " ORDER BY acquired_at"
        )
        args = (resource, self.clock())
        rows = db.execute(sql, args).fetchall() if db is not None else self.store.query(sql, args)
        return [Holder(r["owner"], r["heartbeat_at"], r["expires_at"]) for r in rows]

    def holds(self, resource: str, db: sqlite3.Connection | None = None) -> bool:
        return any(h.owner == self.owner for h in self.holders(resource, db))

    def check(self, resource: str, db: sqlite3.Connection) -> None:
        """Inside a write transaction: raise :class:`LeaseLost` unless this owner holds
        ``resource`` (a fence before work that must have one owner); renews it."""
        # Our row, even past its expiry, means nobody took over (taking deletes it).
        now = self.clock()
        cur = db.execute(
            "UPDATE leases SET heartbeat_at = ?, expires_at = ? WHERE resource = ? AND owner = ?",
            (now, now + self.ttl, resource, self.owner),
        )
        if not cur.rowcount:
            raise LeaseLost(f"{resource}: this process's lease has expired or was taken over; stopped")

    # ------------------------------------------------------------------ heartbeat

    def renew(self) -> set[str]:
        """Extend every lease of this owner; the held resources found lost."""
        with self._lock:
            held = set(self._held)
        if not held:
            return set()
        now = self.clock()
        with self.store.tx() as db:
            db.execute(
                "UPDATE leases SET heartbeat_at = ?, expires_at = ? WHERE owner = ?",
                (now, now + self.ttl, self.owner),
            )
            mine = {
                r["resource"]
                for r in db.execute("SELECT resource FROM leases WHERE owner = ?", (self.owner,))
            }
        lost = held - mine
        if lost:
            with self._lock:
                self._held -= lost
            log.warning("lost leases (taken over after a stall?): %s", ", ".join(sorted(lost)))
        return lost

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._beat, name="willo-lease-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except sqlite3.Error as exc:  # a busy or vanished store: try again next beat
                log.warning("lease heartbeat failed: %s", exc)

    def close(self) -> None:
        """Stop the heartbeat (leases are kept until they expire or are released)."""
        self._stop.set()


__all__ = ["DEFAULT_TTL", "Holder", "LeaseLost", "Leases", "lease_seconds", "live_clause", "new_owner"]
