"""Keeping the state store: retention, backups, vacuum and sizes.

**Retention** (``WILLO_RETENTION_DAYS``, ``state prune --older-than 30d``) deletes
what is finished and older than the cutoff, and nothing else:

- runs that ``succeeded`` or ``failed`` (finished before the cutoff), with their
  units, unless another process holds the run, a unit of it may have been sent
  (``sending``, ``ambiguous``, ``sent``: an operator may still settle it), or its
  trigger event is not done (a parked event's run is kept for ``events retry``);
- trigger events that are done (dispatched) or dropped, received before the cutoff,
  unless a run that is kept still points at them;
- leases that expired more than a day ago (a killed process's).

Runs ``running``, ``interrupted``, ``blocked`` or ``parked``, and events queued,
running or parked, are never touched, however old. Deletes go in small batches, so
a listener writing deliveries meanwhile waits milliseconds, not the whole prune.

**Backups** use SQLite's online backup API: a consistent copy, taken while other
processes keep writing. **Vacuum** rewrites the file without its free pages (what
prune freed) and truncates the WAL.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector.errors import ConfigError, ConnectorError

if TYPE_CHECKING:
    from connector.state.store import StateStore

#: run statuses that are finished (nothing left to resume, settle or retry)
FINISHED_RUNS = ("succeeded", "failed")
#: event statuses that are finished
FINISHED_EVENTS = ("dispatched", "dropped")
#: unit statuses an operator may still have to settle: their run is kept
OPEN_UNITS = ("sending", "ambiguous", "sent")
BATCH = 500
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(raw: str, name: str = "--older-than") -> float:
    """``30d``, ``12h``, ``90m``, ``2w`` or a bare number of days, as seconds (> 0)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", raw.lower())
    value = float(found.group(1)) * _UNITS[found.group(2) or "d"] if found else math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={raw[:20]!r}: give an age such as 30d, 12h or 2w (a bare number is days)")
    return value


def retention_seconds(env: Mapping[str, str] | None = None) -> float | None:
    """``WILLO_RETENTION_DAYS`` as seconds, or None when it is not set (keep all)."""
    raw = (os.environ if env is None else env).get("WILLO_RETENTION_DAYS", "").strip()
    if not raw:
        return None
    try:
        days = float(raw)
    except ValueError:
        days = math.nan
    if not math.isfinite(days) or days <= 0:
        raise ConfigError(f"WILLO_RETENTION_DAYS={raw[:20]!r}: give a number of days greater than 0")
    return days * 86400


@dataclass
class Pruned:
    runs: int = 0
    units: int = 0
    events: int = 0
    leases: int = 0
    cutoff: float = 0.0
    kept: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "units": self.units,
            "events": self.events,
            "leases": self.leases,
            "cutoff": self.cutoff,
            "kept": self.kept,
        }


def _marks(n: int) -> str:
    return ",".join("?" * n)


def prune(store: StateStore, older_than: float, *, now: float | None = None, batch: int = BATCH) -> Pruned:
    """Delete finished runs (with their units) and finished events older than
    ``older_than`` seconds; see the module's docstring for what is kept."""
    now = time.time() if now is None else now
    cutoff = now - older_than
    done = Pruned(cutoff=cutoff)
    runs, units, events = _marks(len(FINISHED_RUNS)), _marks(len(OPEN_UNITS)), _marks(len(FINISHED_EVENTS))
    runs_sql = (
        f"SELECT r.id FROM runs r WHERE r.status IN ({runs})"
        " AND COALESCE(r.finished_at, r.started_at) < ?"
        " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.resource = 'run:' || r.id AND l.expires_at > ?)"
        f" AND NOT EXISTS (SELECT 1 FROM units u WHERE u.run_id = r.id AND u.status IN ({units}))"
        " AND (r.event_id IS NULL OR NOT EXISTS (SELECT 1 FROM events e WHERE e.id = r.event_id"
        f" AND e.status NOT IN ({events})))"
        " LIMIT ?"
    )
    while True:
        with store.tx() as db:
            ids = [
                row["id"]
                for row in db.execute(
                    runs_sql, (*FINISHED_RUNS, cutoff, now, *OPEN_UNITS, *FINISHED_EVENTS, batch)
                )
            ]
            if not ids:
                break
            done.units += db.execute(f"DELETE FROM units WHERE run_id IN ({_marks(len(ids))})", ids).rowcount
            done.runs += db.execute(f"DELETE FROM runs WHERE id IN ({_marks(len(ids))})", ids).rowcount
    events_sql = (
        f"SELECT e.id FROM events e WHERE e.status IN ({_marks(len(FINISHED_EVENTS))}) AND e.received_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.resource = 'event:' || e.id AND l.expires_at > ?)"
        " AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id)"
        " LIMIT ?"
    )
    while True:
        with store.tx() as db:
            ids = [row["id"] for row in db.execute(events_sql, (*FINISHED_EVENTS, cutoff, now, batch))]
            if not ids:
                break
            done.events += db.execute(f"DELETE FROM events WHERE id IN ({_marks(len(ids))})", ids).rowcount
    with store.tx() as db:
        done.leases = db.execute("DELETE FROM leases WHERE expires_at < ?", (now - 86400,)).rowcount
    kept = store.query(
        "SELECT 'runs' AS what, COUNT(*) AS n FROM runs WHERE COALESCE(finished_at, started_at) < ?"
        " UNION ALL SELECT 'events', COUNT(*) FROM events WHERE received_at < ?",
        (cutoff, cutoff),
    )
    done.kept = {row["what"]: row["n"] for row in kept}
    with contextlib.suppress(sqlite3.Error):  # the freed pages' WAL frames back into the file
        store.query("PRAGMA wal_checkpoint(PASSIVE)")
    return done


# --------------------------------------------------------------------------- sizes


def sizes(store: StateStore) -> dict[str, int]:
    """Bytes of the store file, its WAL, and the free pages inside the file (what a
    vacuum would give back)."""

    def size(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0

    page = store.query("PRAGMA page_size")[0][0]
    free = store.query("PRAGMA freelist_count")[0][0]
    return {
        "file": size(store.path),
        "wal": size(store.path.with_name(store.path.name + "-wal")),
        "free": int(page) * int(free),
    }


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


# --------------------------------------------------------------------------- backup and vacuum


def backup(store: StateStore, dest: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Copy the store to ``dest`` with SQLite's online backup API (a consistent
    snapshot while other processes write), checked with ``PRAGMA integrity_check``.
    Written to a temporary file beside ``dest`` and renamed into place, so ``dest``
    is never a half-written file."""
    target = Path(dest)
    if target.resolve() == store.path.resolve():
        raise ConnectorError(f"{target}: that is the state store itself; back it up to another file")
    if target.is_dir():
        raise ConnectorError(f"{target} is a folder; give a file name")
    if target.exists() and not overwrite:
        raise ConnectorError(f"{target} exists; give another file or --force to replace it")
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    began = time.monotonic()
    try:
        src = sqlite3.connect(store.path, timeout=30)
        try:
            out = sqlite3.connect(partial)
            try:
                src.backup(out)  # one step: one read transaction, a consistent snapshot
                out.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
                check = out.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                out.close()
        finally:
            src.close()
        if check != "ok":
            raise ConnectorError(f"{target}: the copy fails SQLite's integrity check ({check}); not kept")
        os.replace(partial, target)
    except (OSError, sqlite3.Error) as exc:
        raise ConnectorError(f"cannot back up {store.path} to {target}: {exc}") from None
    finally:
        if partial.exists():
            partial.unlink()
    return {
        "source": str(store.path),
        "backup": str(target),
        "bytes": target.stat().st_size,
        "seconds": round(time.monotonic() - began, 3),
    }


def vacuum(store: StateStore) -> dict[str, Any]:
    """Rewrite the store without its free pages and truncate its WAL; sizes before
    and after. Other processes may keep the store open; their writes wait meanwhile."""
    before = sizes(store)
    try:
        store.query("VACUUM")
        store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise ConnectorError(f"cannot vacuum {store.path}: {exc}") from None
    return {"before": before, "after": sizes(store)}


__all__ = [
    "FINISHED_EVENTS",
    "FINISHED_RUNS",
    "Pruned",
    "backup",
    "human",
    "parse_age",
    "prune",
    "retention_seconds",
    "sizes",
    "vacuum",
]
