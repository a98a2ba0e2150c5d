"""The event queue as an operator sees it: list, show, retry and drop trigger events.

The store's statuses are the dispatcher's; operators see four words (and one more):

==============  ==========  ====================================================
store           shown as    meaning
==============  ==========  ====================================================
``queued``      queued      waiting for a dispatcher (now, or at ``next_at`` when a
                            transient failure is being retried with backoff)
``dispatching`` running     claimed by a dispatcher (a live process holds its lease;
                            without one, its process died: the next start takes it)
``parked``      parked      failed for good, or past the retry horizon: waits for
                            an operator (``events retry``, ``runs resolve``)
``dispatched``  done        its workflows ran (or no workflow matched)
``dropped``     dropped     set aside by an operator (``events drop``); kept so a
                            redelivery of it is still known as a duplicate
==============  ==========  ====================================================

Retrying or dropping respects leases: an event a live process is dispatching, or
whose run a live process holds, is left alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from connector.errors import ConnectorError, InputError
from connector.state.leases import live_clause
from connector.state.store import StateStore, loads

#: store status -> the word operators see
SHOWN = {
    "queued": "queued",
    "dispatching": "running",
    "parked": "parked",
    "dispatched": "done",
    "dropped": "dropped",
}
#: the word operators use -> store status
STORED = {v: k for k, v in SHOWN.items()}
STATUSES = tuple(STORED)

#: why an event was parked, by the kind of its last failure
WHY_PARKED = {
    "transient": "still failing (429, 5xx or Willo unreachable) past the retry horizon "
    "(WILLO_EVENT_RETRY_HORIZON)",
    "permanent": "cannot succeed as it is (a 4xx other than 429, or invalid input)",
    "blocked": "its run is blocked: a unit may have been sent and no lookup can tell",
    None: "failed before failures had kinds",
}


def shown(status: str) -> str:
    return SHOWN.get(status, status)


def _event_resource(event_id: int) -> str:
    return f"event:{event_id}"


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _first_line(text: str | None, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _holder(store: StateStore, resource: str) -> str | None:
    holders = [h for h in store.leases.holders(resource) if h.owner != store.leases.owner]
    return holders[0].describe(time.time()) if holders else None


def summary(row: Any, store: StateStore, now: float | None = None) -> dict[str, Any]:
    """One event as ``events list`` shows it (no payload)."""
    now = time.time() if now is None else now
    status = shown(row["status"])
    reason = None
    if row["status"] == "parked":
        reason = _first_line(row["error"]) or WHY_PARKED.get(row["failure"], "")
    elif row["status"] == "queued" and row["error"]:
        wait = max(0.0, (row["next_at"] or 0) - now)
        reason = f"retry in {wait:.0f}s after: {_first_line(row['error'], 120)}"
    elif row["status"] == "dispatching" and not _holder(store, _event_resource(row["id"])):
        reason = "its dispatcher stopped; the next listen/poll/serve start takes it"
    return {
        "id": row["id"],
        "status": status,
        "source": row["source"],
        "trigger": row["trigger"],
        "attempts": row["attempts"],
        "received_at": _iso(row["received_at"]),
        "run_id": row["run_id"],
        "reason": reason,
    }


def list_events(
    store: StateStore,
    status: str | None = None,
    trigger: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Events newest first, optionally of one status (the operators' word) and one
    trigger (its id, or a polling ledger's name)."""
    sql = "SELECT * FROM events"
    where: list[str] = []
    args: list[Any] = []
    if status is not None:
        if status not in STORED:
            raise InputError(f"--status {status!r}: one of {', '.join(STATUSES)}")
        where.append("status = ?")
        args.append(STORED[status])
    if trigger is not None:
        where.append("(trigger = ? OR trigger LIKE ?)")
        args += [trigger, trigger + "#%"]
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC"
    if limit > 0:
        sql += " LIMIT ?"
        args.append(limit)
    now = time.time()
    return [summary(row, store, now) for row in store.query(sql, tuple(args))]


def counts(store: StateStore) -> dict[str, int]:
    """How many events there are in each status (the operators' words)."""
    rows = store.query("SELECT status, COUNT(*) AS n FROM events GROUP BY status")
    return {shown(r["status"]): r["n"] for r in rows}


def _row(store: StateStore, event_id: int) -> Any:
    rows = store.query("SELECT * FROM events WHERE id = ?", (event_id,))
    if not rows:
        raise ConnectorError(f"no event {event_id} in {store.path} (see willo-connector events list)")
    return rows[0]


def show(store: StateStore, event_id: int) -> dict[str, Any]:
    """Everything about one event: its status and why, its attempts and run, and the
    payload."""
    row = _row(store, event_id)
    info = summary(row, store)
    info["payload"] = loads(row["payload"])
    info["error"] = row["error"]
    info["failure"] = row["failure"]
    if row["status"] == "parked":
        info["why_parked"] = WHY_PARKED.get(row["failure"], row["failure"])
        info["next"] = _next_step(row)
    info["next_at"] = _iso(row["next_at"]) if row["status"] == "queued" else None
    info["failing_since"] = _iso(row["failing_since"])
    info["owner"] = _holder(store, _event_resource(event_id))
    run = store.run(row["run_id"]) if row["run_id"] else None
    if run is not None:
        info["run"] = {
            "id": run["id"],
            "workflow": run["name"],
            "status": run["status"],
            "error": run["error"],
        }
    return info


def _next_step(row: Mapping[str, Any]) -> str:
    if row["failure"] == "blocked" and row["run_id"]:
        return (
            f"check Willo, settle the run's open unit with `willo-connector runs resolve {row['run_id']} "
            "--step S --sent|--not-sent` (that queues the event again), or drop it"
        )
    return f"fix the cause, then `willo-connector events retry {row['id']}`, or drop it"


def _busy(store: StateStore, row: Mapping[str, Any]) -> str | None:
    """Who holds this event or its run, if a live process does."""
    who = _holder(store, _event_resource(row["id"]))
    if who:
        return f"event {row['id']} is being dispatched by {who}"
    if row["run_id"]:
        who = _holder(store, f"run:{row['run_id']}")
        if who:
            return f"event {row['id']}'s run {row['run_id']} is held by {who}"
    return None


def retry(store: StateStore, event_id: int) -> dict[str, Any]:
    """Queue one event again, now, with a fresh retry horizon: a parked one, one
    waiting for its next attempt, or one whose dispatcher died. An event a live
    process holds, or one that is done or dropped, is refused with the reason."""
    row = _row(store, event_id)
    status = row["status"]
    if status in ("dispatched", "dropped"):
        raise ConnectorError(f"event {event_id} is {shown(status)}; nothing to retry")
    busy = _busy(store, row)
    if busy:
        raise ConnectorError(f"{busy}; not retried (it is being worked on)")
    with store.tx() as db:
        cur = db.execute(
            "UPDATE events SET status = 'queued', next_at = 0, attempts = 0, failing_since = NULL,"
            " failure = NULL WHERE id = ? AND status = ? AND NOT " + live_clause("'event:' || events.id"),
            (event_id, status, store.leases.clock()),
        )
    if not cur.rowcount:  # it changed meanwhile
        raise ConnectorError(
            f"event {event_id} changed while retrying it; look again (events show {event_id})"
        )
    return {"id": event_id, "was": shown(status), "status": "queued"}


def retry_parked(store: StateStore, trigger: str | None = None, source: str | None = None) -> dict[str, Any]:
    """Queue every parked event again (of one trigger or source), but those whose
    run a live process holds; how many, and which were skipped and why."""
    sql = "SELECT * FROM events WHERE status = 'parked'"
    args: list[Any] = []
    if trigger is not None:
        sql += " AND (trigger = ? OR trigger LIKE ?)"
        args += [trigger, trigger + "#%"]
    if source is not None:
        sql += " AND source = ?"
        args.append(source)
    queued: list[int] = []
    skipped: dict[int, str] = {}
    for row in store.query(sql + " ORDER BY id", tuple(args)):
        try:
            retry(store, row["id"])
        except ConnectorError as exc:
            skipped[row["id"]] = str(exc)
        else:
            queued.append(row["id"])
    return {"queued": queued, "skipped": skipped}


def drop(store: StateStore, event_id: int, reason: str | None = None) -> dict[str, Any]:
    """Set one queued or parked event aside for good (``dropped``: kept, so that a
    redelivery is still a duplicate; pruned with done events). Its run, if parked,
    is marked failed, so that retention can prune it. Refused for an event a live
    process holds, or one already done."""
    row = _row(store, event_id)
    status = row["status"]
    if status == "dispatched":
        raise ConnectorError(f"event {event_id} is done; nothing to drop")
    if status == "dropped":
        return {"id": event_id, "was": "dropped", "status": "dropped"}
    busy = _busy(store, row)
    if busy:
        raise ConnectorError(f"{busy}; not dropped (it is being worked on)")
    note = f"dropped by an operator{': ' + reason if reason else ''}"
    with store.tx() as db:
        cur = db.execute(
            "UPDATE events SET status = 'dropped', error = COALESCE(error || ' | ', '') || ?"
            " WHERE id = ? AND status = ? AND NOT " + live_clause("'event:' || events.id"),
            (note, event_id, status, store.leases.clock()),
        )
        if cur.rowcount and row["run_id"]:
            db.execute(
                "UPDATE runs SET status = 'failed', error = COALESCE(error || ' | ', '') || ?,"
                " finished_at = ? WHERE id = ? AND status = 'parked'",
                (f"its event {event_id} was {note}", time.time(), row["run_id"]),
            )
    if not cur.rowcount:
        raise ConnectorError(
            f"event {event_id} changed while dropping it; look again (events show {event_id})"
        )
    return {"id": event_id, "was": shown(status), "status": "dropped"}


def parse_ids(values: Iterable[str]) -> list[int]:
    ids = []
    for v in values:
        if not v.isdigit():
            raise InputError(f"{v[:40]!r} is not an event id (a number; see willo-connector events list)")
        ids.append(int(v))
    return ids


__all__ = [
    "SHOWN",
    "STATUSES",
    "STORED",
    "WHY_PARKED",
    "counts",
    "drop",
    "list_events",
    "retry",
    "retry_parked",
    "show",
    "shown",
    "summary",
]
