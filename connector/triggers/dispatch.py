"""The event queue that polling triggers and webhooks share, and its dispatcher.

Events wait in the state store's ``events`` table. A dispatcher claims due events
atomically (concurrent claimers never share one), shows each to the
``event_received`` observers, and hands it to a handler, typically
:func:`workflow_handler`, which runs (or, on a retry, resumes) the workflows whose
trigger matches. A failed dispatch is retried with backoff, then parked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from connector import redaction
from connector.errors import ConnectorError
from connector.state.store import StateStore, loads
from connector.workflows.runtime import Connector

log = logging.getLogger(__name__)


def claim(store: StateStore, source: str, trigger: str | None = None, limit: int = 1) -> list[dict[str, Any]]:
    """Take up to ``limit`` of the oldest due queued events, atomically: concurrent
    claimers never share one. A claimed event left by a crash is requeued at restart."""
    with store.tx() as db:
        sql = "SELECT * FROM events WHERE source = ? AND status = 'queued' AND next_at <= ?"
        args: tuple[Any, ...] = (source, time.time())
        if trigger is not None:
            sql += " AND trigger = ?"
            args += (trigger,)
        rows = db.execute(sql + " ORDER BY id LIMIT ?", (*args, limit)).fetchall()
        db.executemany(
            "UPDATE events SET status = 'dispatching', attempts = attempts + 1 WHERE id = ?",
            [(row["id"],) for row in rows],
        )
    events = []
    for row in rows:
        event = dict(row)
        event["attempts"] += 1
        event["payload"] = loads(row["payload"])
        events.append(event)
    return events


def finish(
    store: StateStore,
    event_id: int,
    status: str,
    error: str | None = None,
    retry_in: float | None = None,
    run_id: str | None = None,
) -> None:
    error = redaction.scrub(error) if error else error
    with store.tx() as db:
        if retry_in is not None:
            db.execute(
                "UPDATE events SET status = 'queued', next_at = ?, error = ?,"
                " run_id = COALESCE(?, run_id) WHERE id = ?",
                (time.time() + retry_in, error, run_id, event_id),
            )
        else:
            db.execute(
                "UPDATE events SET status = ?, error = ?, run_id = COALESCE(?, run_id) WHERE id = ?",
                (status, error, run_id, event_id),
            )


def requeue_interrupted(store: StateStore, source: str) -> int:
    """Events a crashed process was dispatching go back to the queue."""
    with store.tx() as db:
        return db.execute(
            "UPDATE events SET status = 'queued' WHERE source = ? AND status = 'dispatching'", (source,)
        ).rowcount


_FAILED = object()  # a dispatch that failed and was rescheduled or parked


class Dispatcher:
    """Delivers queued events: observers, then a handler (e.g. a workflow run).

    A handler failure is retried with exponential backoff, then the event is parked.
    """

    def __init__(
        self,
        conn: Connector,
        store: StateStore,
        source: str,
        handler: Callable[[str, dict[str, Any], dict[str, Any]], str | None],
        *,
        max_attempts: int = 5,
        backoff: float = 2.0,
        batch: int = 32,
    ):
        self.conn = conn
        self.store = store
        self.source = source
        self.handler = handler
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.batch = batch

    def one(self, trigger: str | None = None) -> int:
        """Dispatch a batch of due events (in order); the number dispatched, 0 if none."""
        events = claim(self.store, self.source, trigger, limit=self.batch)
        quiet: list[int] = []  # handled without a run: marked done together
        for event in events:
            run_id = self._dispatch(event)
            if run_id is _FAILED:
                continue
            if run_id is None:
                quiet.append(event["id"])
            else:
                finish(self.store, event["id"], "dispatched", run_id=str(run_id))
        if quiet:
            with self.store.tx() as db:
                db.executemany(
                    "UPDATE events SET status = 'dispatched', error = NULL WHERE id = ?",
                    [(i,) for i in quiet],
                )
        return len(events)

    def _dispatch(self, event: dict[str, Any]) -> object:
        trigger_id = event["trigger"].split("#", 1)[0]
        self.conn.host.call_quietly("event_received", trigger=trigger_id, event=event["payload"])
        try:
            run_id = self.handler(trigger_id, event["payload"], event)
        except RunInterrupted as exc:  # the process is stopping: the event waits for the next start
            with self.store.tx() as db:
                db.execute(
                    "UPDATE events SET status = 'queued', attempts = MAX(0, attempts - 1), error = ?,"
                    " run_id = COALESCE(?, run_id) WHERE id = ?",
                    (str(exc), exc.run_id, event["id"]),
                )
            return _FAILED
        except ConnectorError as exc:
            run_id = getattr(exc, "run_id", None)
            if event["attempts"] >= self.max_attempts:
                log.error("event %s parked after %d attempts: %s", event["id"], event["attempts"], exc)
                finish(self.store, event["id"], "parked", str(exc), run_id=run_id)
                if run_id:
                    self.store.set_run(run_id, "parked", str(exc))
            else:
                delay = self.backoff * 2 ** (event["attempts"] - 1)
                log.warning(
                    "event %s failed (attempt %d), retrying in %.0fs: %s",
                    event["id"],
                    event["attempts"],
                    delay,
                    exc,
                )
                finish(self.store, event["id"], "queued", str(exc), retry_in=delay, run_id=run_id)
            return _FAILED
        return run_id

    def drain(self, trigger: str | None = None) -> int:
        n = 0
        while done := self.one(trigger):
            n += done
        return n


class RunFailed(ConnectorError):
    def __init__(self, message: str, run_id: str | None):
        super().__init__(message)
        self.run_id = run_id


class RunInterrupted(RunFailed):
    """A run stopped by a signal: its event is queued again, the try not counted."""


def workflow_handler(
    conn: Connector,
    store: StateStore,
    workflows: list[Any],
    progress: bool = False,
    cancel: threading.Event | None = None,
) -> Callable[[str, dict[str, Any], dict[str, Any]], str | None]:
    """A dispatch handler that runs (or, on a retry, resumes) each matching workflow.
    ``cancel`` stops a run at the next unit; its event is then queued again."""
    from connector.engines.local import LocalExecutor  # these load Jinja2: only when a run starts
    from connector.workflows.runner import Runner

    def matches(wf: Any, trigger_id: str, payload: dict[str, Any]) -> bool:
        trig = wf.trigger or {}
        if trig.get("use") != trigger_id:
            return False
        wanted = (trig.get("with") or {}).get("interview")
        if wanted:
            return bool(_interview_of(payload) == wanted)
        return True

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
            if result.status == "interrupted":
                raise RunInterrupted(
                    f"workflow {wf.name}: interrupted; resumes at the next start", result.run_id
                )
            if result.status != "succeeded":
                raise RunFailed(f"workflow {wf.name}: {result.error}", result.run_id)
        return last

    return handle


def _interview_of(payload: Mapping[str, Any]) -> Any:
    data = payload.get("data")
    if isinstance(data, dict) and isinstance(data.get("interview"), dict):
        return data["interview"].get("key")
    return payload.get("interview")
