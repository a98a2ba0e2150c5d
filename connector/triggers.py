"""Polling triggers and the event queue they share with webhooks.

The ledger of a polling trigger (one per trigger id and options) lives in the
state store: a cursor (the newest ``order`` value emitted), the keys already seen,
and the events emitted. New items, their seen keys, the cursor and the queued
events are written in one transaction, so a crash between fetching and committing
repeats nothing and loses nothing, and two pollers of one trigger never emit an
item twice. Events are then dispatched from the queue; a queued event survives a
crash and is dispatched at the next start.

Seen keys are pruned only when both older than ``WILLO_SEEN_WINDOW_DAYS`` (default
90) and older than the cursor, which excludes them anyway.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connector import expressions, schemas
from connector.catalog import Manifest
from connector.errors import ConnectorError, InputError
from connector.runtime import Connector
from connector.state import StateStore, dumps, loads

log = logging.getLogger(__name__)

PAGE_SIZE = 30
DEFAULT_WINDOW_DAYS = 90.0


def ledger_name(trigger_id: str, options: Mapping[str, Any]) -> str:
    """The ledger of one trigger with one set of options."""
    if not options:
        return trigger_id
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
    return f"{trigger_id}#{digest}"


def check_options(manifest: Manifest, options: Mapping[str, Any]) -> None:
    problems = schemas.errors(dict(options), manifest.input_schema)
    if problems:
        text = "; ".join(f"{p or '/'}: {m}" for p, m in problems)
        raise InputError(f"{manifest.id}: --with {text}")


@dataclass
class PollResult:
    events: list[dict[str, Any]]
    requests: int
    first: bool


class Poller:
    """One polling trigger with its options, backed by its ledger."""

    def __init__(
        self, conn: Connector, store: StateStore, trigger_id: str, options: Mapping[str, Any] | None = None
    ):
        self.conn = conn
        self.store = store
        self.manifest = conn.catalog.get(trigger_id, "trigger")
        if self.manifest.data["strategy"] != "polling":
            raise InputError(f"{trigger_id} is a webhook trigger; use `willo-connector listen`")
        self.options = dict(options or {})
        check_options(self.manifest, self.options)
        self.spec = self.manifest.data["polling"]
        self.name = ledger_name(self.manifest.id, self.options)
        with store.tx() as db:
            db.execute(
                "INSERT INTO triggers (name, trigger, options, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (self.name, self.manifest.id, dumps(self.options), time.time()),
            )

    # ------------------------------------------------------------------ fetching

    def _inputs(self) -> dict[str, Any]:
        rendered = expressions.render(
            self.spec.get("with") or {}, {"with": self.options}, omit_undefined=True
        )
        return {k: v for k, v in rendered.items() if v not in (None, "")}

    def _matches(self, item: Mapping[str, Any]) -> bool:
        return all(item.get(k) == v for k, v in (self.spec.get("filter") or {}).items())

    def state(self) -> dict[str, Any]:
        row = self.store.query("SELECT * FROM triggers WHERE name = ?", (self.name,))[0]
        return dict(row)

    def fetch(self, cursor: str | None, everything: bool) -> tuple[list[dict[str, Any]], int]:
        """Items newest first, paging only until the cursor (or through all)."""
        before = self.conn.client.requests_sent
        order = self.spec.get("order")
        inputs = {**self._inputs(), "page_size": PAGE_SIZE}
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            result = self.conn.call(self.spec["action"], {**inputs, "page": page}).output
            batch = result.get("results") or []
            items.extend(batch)
            reached = (
                not everything
                and order
                and cursor is not None
                and any(str(i.get(order) or "") <= cursor for i in batch)
            )
            if not result.get("next") or reached or (cursor is None and not everything):
                break
            page += 1
        return items, self.conn.client.requests_sent - before

    # ------------------------------------------------------------------ polling

    def poll(self, backfill: bool = False) -> PollResult:
        """Fetch, and commit new items as queued events in one transaction."""
        state = self.state()
        first = not state["initialized"]
        cursor = state["cursor"]
        items, requests = self.fetch(cursor, everything=first and backfill)
        id_field, order = self.spec["id"], self.spec.get("order")
        candidates = [i for i in items if self._matches(i) and i.get(id_field) is not None]
        if order:
            candidates.sort(key=lambda i: (str(i.get(order) or ""), str(i[id_field])))
        else:
            candidates.reverse()  # lists come newest first
        emitted: list[dict[str, Any]] = []
        now = time.time()
        with self.store.tx() as db:
            row = db.execute(
                "SELECT initialized, cursor FROM triggers WHERE name = ?", (self.name,)
            ).fetchone()
            first = not row["initialized"]  # another poller may have initialised meanwhile
            cursor = row["cursor"]
            for item in candidates:
                key, ord_value = str(item[id_field]), str(item.get(order) or "") if order else None
                if (
                    not first
                    and order
                    and cursor is not None
                    and ord_value is not None
                    and ord_value < cursor
                ):
                    continue  # older than what was already covered: never re-fire
                cur = db.execute(
                    "INSERT INTO seen (name, item, ord, seen_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (self.name, key, ord_value, now),
                )
                if cur.rowcount and (not first or backfill):
                    event = self._validated(item)
                    db.execute(
                        "INSERT INTO events (source, trigger, dedupe, payload, status, received_at)"
                        " VALUES ('poll', ?, ?, ?, 'queued', ?) ON CONFLICT DO NOTHING",
                        (self.name, key, dumps(event), now),
                    )
                    emitted.append(event)
            newest = max((str(i.get(order) or "") for i in candidates), default=None) if order else None
            new_cursor = max(filter(None, [cursor, newest]), default=None)
            db.execute(
                "UPDATE triggers SET initialized = 1, cursor = ?, polls = polls + 1,"
                " requests = requests + ?, updated_at = ? WHERE name = ?",
                (new_cursor, requests, now, self.name),
            )
        self.prune()
        return PollResult(emitted, requests, first)

    def _validated(self, item: dict[str, Any]) -> dict[str, Any]:
        report = schemas.errors(item, self.manifest.output_schema)
        if report:
            log.warning(
                "%s: event does not match the trigger's schema: %s",
                self.manifest.id,
                "; ".join(f"{p}: {m}" for p, m in report[:3]),
            )
        return item

    def prune(self) -> int:
        days = float(os.environ.get("WILLO_SEEN_WINDOW_DAYS", DEFAULT_WINDOW_DAYS))
        cutoff = time.time() - days * 86400
        with self.store.tx() as db:
            cur = db.execute(
                "DELETE FROM seen WHERE name = ? AND seen_at < ? AND ord IS NOT NULL AND ord <"
                " (SELECT cursor FROM triggers WHERE name = ?)",
                (self.name, cutoff, self.name),
            )
            return cur.rowcount

    def reset(self) -> None:
        reset_ledger(self.store, self.name)


def reset_ledger(store: StateStore, name: str) -> None:
    with store.tx() as db:
        db.execute("DELETE FROM seen WHERE name = ?", (name,))
        db.execute("DELETE FROM events WHERE trigger = ? AND source = 'poll'", (name,))
        db.execute(
            "UPDATE triggers SET initialized = 0, cursor = NULL, polls = 0, requests = 0 WHERE name = ?",
            (name,),
        )


# ---------------------------------------------------------------------- the event queue


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


def workflow_handler(
    conn: Connector, store: StateStore, workflows: list[Any], progress: bool = False
) -> Callable[[str, dict[str, Any], dict[str, Any]], str | None]:
    """A dispatch handler that runs (or, on a retry, resumes) each matching workflow."""
    from connector.engine import Runner

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
            runner = Runner(conn, wf, store=store, progress=progress)
            if prior:  # an interrupted or failed attempt: completed steps are not resent
                result = runner.resume(prior[0]["id"], {}, payload)
            else:
                result = runner.start({}, payload, event_id=event["id"])
            last = result.run_id
            if result.status != "succeeded":
                raise RunFailed(f"workflow {wf.name}: {result.error}", result.run_id)
        return last

    return handle


def _interview_of(payload: Mapping[str, Any]) -> Any:
    data = payload.get("data")
    if isinstance(data, dict) and isinstance(data.get("interview"), dict):
        return data["interview"].get("key")
    return payload.get("interview")
