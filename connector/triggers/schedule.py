"""The schedule trigger (``schedule.cron``, ``use: schedule`` in a workflow): cron in
a time zone, run by ``willo-connector serve``.

Each schedule keeps its last scheduled time (its *slot*) in the state store. When a
slot comes due, one event is queued for it (deduplicated by slot, so two serve
processes never run one slot twice) and dispatched like any trigger event. At
start, a schedule seen for the first time records the latest slot and waits for the
next; a known one whose latest slot passed while serve was down queues that slot
once (``catch_up``, default true), never one run per missed slot. The clock is
injected: tests move time instead of sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connector.catalog.formats import cron_times, latest_time
from connector.state.store import StateStore, dumps

log = logging.getLogger(__name__)

TRIGGER = "schedule.cron"
SOURCE = "schedule"
#: on Temporal, a run started this long after its scheduled time is a missed one (the
#: cluster could not start it at its time, and its catch-up did)
LATE_AFTER = 60.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Schedule:
    """One workflow's schedule."""

    workflow: str
    cron: str
    timezone: str = "UTC"
    catch_up: bool = True

    @classmethod
    def of(cls, workflow_name: str, options: dict[str, Any]) -> Schedule:
        return cls(
            workflow_name,
            str(options["cron"]),
            str(options.get("timezone") or "UTC"),
            bool(options.get("catch_up", True)),
        )

    @property
    def name(self) -> str:
        """The event queue's trigger name for this schedule (routes to its workflow)."""
        return f"{TRIGGER}#{self.workflow}"

    def latest(self, now: datetime) -> datetime:
        """The latest slot at or before ``now`` (in the schedule's zone)."""
        return latest_time(self.cron, self.timezone, now)

    def next_after(self, moment: datetime) -> datetime:
        return next(cron_times(self.cron, self.timezone, moment))


def slot_event(timezone: str, slot: datetime, fired: datetime, missed: bool) -> dict[str, Any]:
    """The event of one scheduled time, as a run sees it (``trigger``): ``scheduled_at``
    in the schedule's zone, ``fired_at`` in UTC, the zone, and whether the time was
    missed (run late, by a catch-up). The local scheduler and Temporal's schedules
    give their runs the same event."""
    from connector.catalog.formats import zone

    return {
        "scheduled_at": slot.astimezone(zone(timezone)).isoformat(),
        "fired_at": fired.astimezone(UTC).isoformat(),
        "timezone": timezone,
        "missed": missed,
    }


class Scheduler:
    """Queues an event for each slot of each schedule as it comes due."""

    def __init__(self, store: StateStore, schedules: list[Schedule], clock: Callable[[], datetime] = utc_now):
        self.store = store
        self.schedules = schedules
        self.clock = clock

    def _row(self, s: Schedule) -> Any:
        rows = self.store.query("SELECT * FROM schedules WHERE name = ?", (s.name,))
        return rows[0] if rows else None

    def start(self) -> list[dict[str, Any]]:
        """Begin: baseline new schedules, catch up known ones; the events queued."""
        return self._check(at_start=True)

    def tick(self) -> list[dict[str, Any]]:
        """Queue the slots that came due since the last look; the events queued."""
        return self._check(at_start=False)

    def _check(self, at_start: bool) -> list[dict[str, Any]]:
        now = self.clock()
        queued = []
        for s in self.schedules:
            latest = s.latest(now)
            row = self._row(s)
            known = row is not None and (row["cron"], row["timezone"]) == (s.cron, s.timezone)
            last = datetime.fromisoformat(row["last_slot"]) if known and row["last_slot"] else None
            if not known:
                self._record(s, latest, now)  # first sight (or a changed schedule): wait for the next
                if at_start:
                    log.info(
                        "schedule %s: first start; next run %s", s.workflow, s.next_after(now).isoformat()
                    )
                continue
            if last is not None and latest <= last:
                continue
            missed = at_start
            if missed and not s.catch_up:
                log.info(
                    "schedule %s: skipped %s, missed while not running (catch_up: false)", s.workflow, latest
                )
                self._record(s, latest, now)
                continue
            event = self._queue(s, latest, now, missed)
            if event is not None:
                queued.append(event)
        return queued

    def _record(self, s: Schedule, slot: datetime, now: datetime, db: Any = None) -> None:
        sql = (
            "INSERT INTO schedules (name, workflow, cron, timezone, last_slot, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET cron = excluded.cron,"
            " timezone = excluded.timezone, last_slot = excluded.last_slot, updated_at = excluded.updated_at"
        )
        args = (s.name, s.workflow, s.cron, s.timezone, slot.astimezone(UTC).isoformat(), time.time())
        if db is not None:
            db.execute(sql, args)
            return
        with self.store.tx() as tx:
            tx.execute(sql, args)

    def _queue(self, s: Schedule, slot: datetime, now: datetime, missed: bool) -> dict[str, Any] | None:
        """Queue one slot's event and record the slot, in one transaction."""
        event = slot_event(s.timezone, slot, now, missed)
        with self.store.tx() as db:
            cur = db.execute(
                "INSERT INTO events (source, trigger, dedupe, payload, status, received_at)"
                " VALUES (?, ?, ?, ?, 'queued', ?) ON CONFLICT DO NOTHING",
                (SOURCE, s.name, slot.astimezone(UTC).isoformat(), dumps(event), time.time()),
            )
            self._record(s, slot, now, db)
        if not cur.rowcount:
            return None  # another process queued this slot
        log.info("schedule %s: run for %s%s", s.workflow, slot.isoformat(), " (missed)" if missed else "")
        return event

    def next_due(self) -> datetime | None:
        """When the next slot of any schedule comes, or None without schedules."""
        now = self.clock()
        return min((s.next_after(now) for s in self.schedules), default=None)
