"""The event queue that polling triggers and webhooks share, and its dispatcher.

Events wait in the state store's ``events`` table. A dispatcher claims due events
atomically and takes each one's lease (:mod:`connector.state.leases`), so an event
has one live owner; an event whose owner died (its lease expired) goes back to the
queue, while a live owner's events are left alone. Each event is shown to the
``event_received`` observers and handed to a handler, typically
:func:`workflow_handler`, which runs (or, on a retry, resumes) the workflows whose
trigger matches.

A failure is handled by its kind (:data:`connector.workflows.runner.KINDS`): a
transient one (429, 5xx, Willo unreachable) is retried with exponential backoff up
to ``WILLO_EVENT_RETRY_MAX_DELAY`` between attempts, for
``WILLO_EVENT_RETRY_HORIZON`` in all, then parked; what cannot succeed as it is (a
4xx other than 429, a validation error) or needs an operator (a blocked unit) is
parked at once; an interrupted run (a shutdown) goes back to the queue uncounted.
Events parked by a transient failure are queued again when a listener or poller
starts (:func:`requeue_parked`).
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from connector import redaction, telemetry
from connector.connections import DEFAULT
from connector.errors import ConfigError, ConnectorError
from connector.state.leases import live_clause
from connector.state.store import StateStore, loads
from connector.workflows.runner import failure_kind
from connector.workflows.runtime import Connector

log = logging.getLogger(__name__)

DEFAULT_HORIZON = 24 * 3600.0  # keep retrying a transient failure for a day
DEFAULT_MAX_DELAY = 600.0  # at most ten minutes between two attempts
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(name: str, raw: str) -> float:
    """``90``, ``90s``, ``15m``, ``6h`` or ``1d`` as seconds (> 0); ConfigError otherwise."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", raw.lower())
    value = float(found.group(1)) * _UNITS[found.group(2)] if found else math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={raw[:20]!r}: give a duration such as 90s, 15m, 6h or 1d")
    return value


def retry_settings(env: Mapping[str, str] | None = None) -> tuple[float, float]:
    """``(horizon, max_delay)`` from ``WILLO_EVENT_RETRY_HORIZON`` and
    ``WILLO_EVENT_RETRY_MAX_DELAY``."""
    env = os.environ if env is None else env
    horizon = env.get("WILLO_EVENT_RETRY_HORIZON", "")
    delay = env.get("WILLO_EVENT_RETRY_MAX_DELAY", "")
    return (
        parse_duration("WILLO_EVENT_RETRY_HORIZON", horizon) if horizon else DEFAULT_HORIZON,
        parse_duration("WILLO_EVENT_RETRY_MAX_DELAY", delay) if delay else DEFAULT_MAX_DELAY,
    )


def event_resource(event_id: int) -> str:
    return f"event:{event_id}"


def claim(
    store: StateStore,
    source: str,
    trigger: str | None = None,
    limit: int = 1,
    account: str | tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """Take up to ``limit`` of the oldest due queued events (of ``account``, or of any
    of several, if given), atomically, each with its lease: concurrent claimers never
    share one."""
    with store.tx() as db:
        # walked in id order on its index, stopping at `limit`: a claim is bounded by
        # what it takes, not by the length of the queue
        sql = (
            "SELECT * FROM events INDEXED BY events_queue"
            " WHERE source = ? AND status = 'queued' AND next_at <= ?"
        )
        args: tuple[Any, ...] = (source, time.time())
        if trigger is not None:
            sql += " AND trigger = ?"
            args += (trigger,)
        mine, more = _of_account(account)
        sql += mine
        args += more
        found = db.execute(sql + " ORDER BY id LIMIT ?", (*args, limit)).fetchall()
        rows = take(store, db, found)
    return claimed_events(rows)


def take(store: StateStore, db: Any, found: list[Any]) -> list[Any]:
    """Inside ``db``'s write transaction: lease the events of ``found`` (rows of
    ``events``) and mark them ``dispatching``; the rows taken (an event whose lease a
    live owner holds is left alone)."""
    taken = store.leases.acquire_many([event_resource(row["id"]) for row in found], db=db)
    rows = [row for row in found if event_resource(row["id"]) in taken]
    _each_chunk(
        db,
        "UPDATE events SET status = 'dispatching', attempts = attempts + 1 WHERE id IN ({})",
        [row["id"] for row in rows],
    )
    return rows


def claimed_events(rows: list[Any]) -> list[dict[str, Any]]:
    """Events as a dispatcher hands them on, from rows read before :func:`take` marked them."""
    events = []
    for row in rows:
        event = dict(row)
        event["attempts"] += 1
        event["payload_json"] = row["payload"]  # as stored: compact JSON (for printing as is)
        event["payload"] = loads(row["payload"])
        events.append(event)
    return events


def take_inserted(
    store: StateStore, db: Any, after: int, source: str, trigger: str, account: str, received_at: float
) -> list[dict[str, Any]]:
    """Inside the write transaction that inserted them ``dispatching`` (their first
    attempt, received at ``received_at``), every event of ``source``, ``account`` and
    ``trigger`` with an id over ``after``: leased, as :func:`claim` leases them, and
    given as :func:`claim` gives them but for ``payload`` and ``payload_json``, which the
    caller holds. Nobody can hold the lease of an event inserted in this transaction
    (ids are never reused, and only existing events are leased): none is refused."""
    ids = db.execute(
        "SELECT id, dedupe FROM events WHERE id > ? AND source = ? AND trigger = ? ORDER BY id",
        (after, source, trigger),
    ).fetchall()
    store.leases.acquire_new([event_resource(i) for i, _ in ids], db=db)
    return [
        {
            "id": i,
            "source": source,
            "account": account,
            "trigger": trigger,
            "dedupe": dedupe,
            "status": "dispatching",
            "attempts": 1,
            "next_at": 0,
            "error": None,
            "run_id": None,
            "received_at": received_at,
            "failure": None,
            "failing_since": None,
        }
        for i, dedupe in ids
    ]


def _each_chunk(db: Any, sql: str, ids: list[int], chunk: int = 500) -> None:
    """``sql`` (``... IN ({})``) run over ``ids`` a chunk at a time: one statement for
    a batch, not one per row."""
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        db.execute(sql.format(",".join("?" * len(part))), part)


def finish(
    store: StateStore,
    event_id: int,
    status: str,
    error: str | None = None,
    retry_in: float | None = None,
    run_id: str | None = None,
    *,
    failure: str | None = None,
    failing_since: float | None = None,
    uncounted: bool = False,
) -> None:
    """Settle a claimed event (dispatched, parked, or queued again in ``retry_in``
    seconds) and give back its lease."""
    error = redaction.scrub(error) if error else error
    with store.tx() as db:
        if retry_in is not None:
            db.execute(
                "UPDATE events SET status = 'queued', next_at = ?, error = ?, failure = ?,"
                " failing_since = ?, attempts = attempts - ?, run_id = COALESCE(?, run_id) WHERE id = ?",
                (time.time() + retry_in, error, failure, failing_since, int(uncounted), run_id, event_id),
            )
        else:
            db.execute(
                "UPDATE events SET status = ?, error = ?, failure = ?, failing_since = ?,"
                " run_id = COALESCE(?, run_id) WHERE id = ?",
                (status, error, failure, failing_since, run_id, event_id),
            )
        store.leases.release(event_resource(event_id), db=db)


def _of_account(account: str | tuple[str, ...] | None) -> tuple[str, tuple[Any, ...]]:
    """The SQL (and its arguments) that keeps the events of ``account`` (one, several,
    or any for None)."""
    if account is None:
        return "", ()
    accounts = (account,) if isinstance(account, str) else account
    return f" AND account IN ({','.join('?' * len(accounts))})", accounts


#: The sources whose events belong to an account (a schedule's belong to none).
ACCOUNT_SOURCES = ("poll", "webhook")


def accounts_of(conn: Connector) -> tuple[str, ...]:
    """The accounts whose events ``conn``'s dispatchers take: its own, and for the
    ``default`` connection those received without one (before accounts, or by an
    :class:`~connector.triggers.receiver.Inbox` given none)."""
    own = conn.account.id
    return (own, "") if conn.connection_name == DEFAULT else (own,)


def requeue_interrupted(store: StateStore, source: str, account: str | tuple[str, ...] | None = None) -> int:
    """Events whose dispatcher died (no live lease) go back to the queue; events a
    live process is dispatching are left to it."""
    mine, args = _of_account(account)
    with store.tx() as db:
        return db.execute(
            "UPDATE events SET status = 'queued' WHERE source = ? AND status = 'dispatching'"
            + mine
            + " AND NOT "
            + live_clause("'event:' || events.id"),
            (source, *args, store.leases.clock()),
        ).rowcount


def requeue_parked(store: StateStore, source: str, account: str | tuple[str, ...] | None = None) -> int:
    """Events parked by a transient failure (or before failures had kinds) are queued
    again, with a fresh retry horizon: run at a listener's or poller's start."""
    mine, args = _of_account(account)
    with store.tx() as db:
        return db.execute(
            "UPDATE events SET status = 'queued', next_at = 0, failing_since = NULL"
            " WHERE source = ? AND status = 'parked' AND (failure IS NULL OR failure = 'transient')" + mine,
            (source, *args),
        ).rowcount


def adopt_events(store: StateStore, source: str, account: str) -> int:
    """Give the events received before accounts (account ``''``) to ``account`` (the
    ``default`` connection's, at a listener's or poller's start)."""
    with store.tx() as db:
        return db.execute(
            "UPDATE events SET account = ? WHERE source = ? AND account = ''", (account, source)
        ).rowcount


def requeue_event_of(store: StateStore, run: Mapping[str, Any]) -> int | None:
    """Queue again the parked event whose run ``run`` is (after an operator settled
    or resumed it); its id, or None."""
    event_id = run["event_id"]
    if event_id is None:
        return None
    with store.tx() as db:
        cur = db.execute(
            "UPDATE events SET status = 'queued', next_at = 0, failing_since = NULL, failure = NULL"
            " WHERE id = ? AND status = 'parked'",
            (event_id,),
        )
    return int(event_id) if cur.rowcount else None


_FAILED = object()  # a dispatch that failed and was rescheduled or parked


class Dispatcher:
    """Delivers queued events: observers, then a handler (e.g. a workflow run).

    Failures are retried or parked by kind (see the module's docstring);
    ``max_attempts``, when given, also parks after that many attempts.
    """

    def __init__(
        self,
        conn: Connector,
        store: StateStore,
        source: str,
        handler: Callable[[str, dict[str, Any], dict[str, Any]], str | None],
        *,
        backoff: float = 2.0,
        max_delay: float | None = None,
        horizon: float | None = None,
        max_attempts: int | None = None,
        batch: int = 32,
        cancel: threading.Event | None = None,
        before_settle: Callable[[], None] | None = None,
    ):
        self.conn = conn
        self.store = store
        self.source = source
        self.handler = handler
        default_horizon, default_delay = retry_settings()
        self.horizon = default_horizon if horizon is None else horizon
        self.max_delay = default_delay if max_delay is None else max_delay
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.batch = batch
        self.cancel = cancel  # set: claimed events not yet started go back to the queue
        self.account = conn.account.id  # this dispatcher's events: its connection's
        #: polled and received events belong to an account; scheduled ones to none
        self.accounts = accounts_of(conn) if source in ACCOUNT_SOURCES else None
        # called before handled events are marked dispatched (e.g. to flush what a
        # handler printed: a crash after the mark must not lose what was "delivered")
        self.before_settle = before_settle
        self._next_sweep = 0.0

    def one(self, trigger: str | None = None) -> int:
        """Dispatch a batch of due events (in order); the number dispatched, 0 if none."""
        self._sweep()
        events = claim(self.store, self.source, trigger, limit=self.batch, account=self.accounts)
        self._deliver(events)
        return len(events)

    def deliver(self, events: list[dict[str, Any]]) -> int:
        """Dispatch events already taken (leased and marked ``dispatching``, e.g. by the
        poll that queued them: :meth:`Poller.poll` with ``take``), a batch at a time;
        the number handed on."""
        for start in range(0, len(events), self.batch):
            self._deliver(events[start : start + self.batch])
        return len(events)

    def _deliver(self, events: list[dict[str, Any]]) -> None:
        quiet: list[int] = []  # handled without a run: marked done together
        for event in events:
            if self.cancel is not None and self.cancel.is_set():
                finish(
                    self.store,
                    event["id"],
                    "queued",
                    event["error"],
                    retry_in=0,
                    uncounted=True,
                    failure=event["failure"],
                    failing_since=event["failing_since"],
                )
                continue
            run_id = self._dispatch(event)
            if run_id is _FAILED:
                continue
            telemetry.inc("events_dispatched", outcome="done", source=self.source)
            if log.isEnabledFor(logging.INFO):
                with telemetry.bind(
                    account=event.get("account") or None, trigger=event["trigger"], event_id=event["id"]
                ):
                    log.info("event %s done%s", event["id"], f" (run {run_id})" if run_id else "")
            if run_id is None:
                quiet.append(event["id"])
            else:
                self._settling()
                finish(self.store, event["id"], "dispatched", run_id=str(run_id))
        if quiet:
            self._settling()
            with self.store.tx() as db:
                _each_chunk(
                    db,
                    "UPDATE events SET status = 'dispatched', error = NULL, failure = NULL,"
                    " failing_since = NULL WHERE id IN ({})",
                    quiet,
                )
                self.store.leases.release_many([event_resource(i) for i in quiet], db=db)

    def _settling(self) -> None:
        if self.before_settle is not None:
            self.before_settle()

    def _sweep(self) -> None:
        """Now and then, take back the events of dispatchers that died meanwhile."""
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.store.leases.ttl
            if n := requeue_interrupted(self.store, self.source, self.accounts):
                log.warning("%d event(s) of a stopped dispatcher queued again", n)

    def _dispatch(self, event: dict[str, Any]) -> object:
        trigger_id = event["trigger"].split("#", 1)[0]
        with telemetry.bind(
            account=event.get("account") or None, trigger=event["trigger"], event_id=event["id"]
        ):
            self.conn.host.call_quietly("event_received", trigger=trigger_id, event=event["payload"])
            try:
                run_id = self.handler(trigger_id, event["payload"], event)
            except Exception as exc:
                self._failed(event, exc)
                return _FAILED
        return run_id

    def _failed(self, event: dict[str, Any], exc: Exception) -> None:
        run_id = getattr(exc, "run_id", None)
        kind = getattr(exc, "kind", None) or failure_kind(exc)
        message = (
            str(exc) if isinstance(exc, ConnectorError) else f"internal error: {type(exc).__name__}: {exc}"
        )
        eid, attempts = event["id"], event["attempts"]
        if kind == "interrupted":
            telemetry.inc("events_dispatched", outcome="requeued", source=self.source)
            log.info("event %s: run interrupted; queued again", eid)
            finish(
                self.store,
                eid,
                "queued",
                message,
                retry_in=0,
                run_id=run_id,
                uncounted=True,
                failure=event["failure"],
                failing_since=event["failing_since"],
            )
            return
        since = event.get("failing_since") or time.time()
        over = time.time() - since >= self.horizon or (
            self.max_attempts is not None and attempts >= self.max_attempts
        )
        if kind != "transient" or over:
            why = {
                "blocked": "it needs an operator",
                "permanent": "it cannot succeed as it is",
            }.get(kind, f"still failing after {attempts} attempts")
            telemetry.inc("events_dispatched", outcome="parked", source=self.source)
            log.error("event %s parked (%s): %s", eid, why, message)
            finish(self.store, eid, "parked", message, run_id=run_id, failure=kind, failing_since=since)
            if run_id and kind != "blocked":
                self.store.set_run(run_id, "parked", message)
            return
        delay = min(self.max_delay, self.backoff * 2 ** min(attempts - 1, 40))
        delay *= random.uniform(0.8, 1.0)  # spread the retries of a burst
        delay = min(self.max_delay, max(delay, getattr(exc, "retry_after", None) or 0))
        telemetry.inc("events_dispatched", outcome="retry", source=self.source)
        log.warning("event %s failed (attempt %d), retrying in %.0fs: %s", eid, attempts, delay, message)
        finish(
            self.store,
            eid,
            "queued",
            message,
            retry_in=delay,
            run_id=run_id,
            failure=kind,
            failing_since=since,
        )

    def drain(self, trigger: str | None = None) -> int:
        n = 0
        while not (self.cancel is not None and self.cancel.is_set()) and (done := self.one(trigger)):
            n += done
        return n


class RunFailed(ConnectorError):
    def __init__(self, message: str, run_id: str | None, kind: str | None = None):
        super().__init__(message)
        self.run_id = run_id
        self.kind = kind


def workflow_handler(
    conn: Connector,
    store: StateStore,
    workflows: list[Any],
    progress: bool = False,
    cancel: threading.Event | None = None,
) -> Callable[[str, dict[str, Any], dict[str, Any]], str | None]:
    """A dispatch handler that runs (or, on a retry, resumes) each matching workflow.
    ``cancel``, once set, stops a run at its next unit; the run is journaled
    ``interrupted`` and its event queued again, uncounted, to resume at the next start."""
    from connector.engines.local import LocalExecutor  # these load Jinja2: only when a run starts
    from connector.workflows.runner import Runner

    matches = matches_workflow

    def handle(trigger_id: str, payload: dict[str, Any], event: dict[str, Any]) -> str | None:
        last = None
        for wf in workflows:
            if not matches(wf, trigger_id, payload):
                continue
            prior = store.query(
                "SELECT id, status FROM runs WHERE event_id = ? AND name = ? ORDER BY started_at DESC",
                (event["id"], wf.name),
            )
            if prior and prior[0]["status"] == "succeeded":
                last = prior[0]["id"]
                continue  # done before a crash or an earlier attempt; never twice
            runner = Runner(conn, wf, store=store, progress=progress, executor=LocalExecutor(), cancel=cancel)
            if prior:  # an interrupted or failed attempt: completed steps are not resent
                result = runner.resume(prior[0]["id"], {}, payload)
            else:
                result = runner.start({}, payload, event_id=event["id"])
            last = result.run_id
            if result.status != "succeeded":
                raise RunFailed(f"workflow {wf.name}: {result.error}", result.run_id, result.kind)
        return last

    return handle


def matches_workflow(wf: Any, trigger_id: str, payload: Mapping[str, Any]) -> bool:
    """Does an event of ``trigger_id`` start ``wf`` (its trigger, and its interview if it names one)?"""
    trig = wf.trigger or {}
    if trig.get("use") != trigger_id:
        return False
    wanted = (trig.get("with") or {}).get("interview")
    if wanted:
        return bool(_interview_of(payload) == wanted)
    return True


def _interview_of(payload: Mapping[str, Any]) -> Any:
    data = payload.get("data")
    if isinstance(data, dict) and isinstance(data.get("interview"), dict):
        return data["interview"].get("key")
    return payload.get("interview")
