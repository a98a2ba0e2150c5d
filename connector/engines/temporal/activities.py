"""The Temporal engine's activities: plain module-level functions.

- ``willo.plan`` (a local activity of the run's workflow): one pass of the local
  :class:`~connector.workflows.runner.Runner` over the run's journal so far. It
  evaluates every expression, takes every branch and shapes every result exactly as a
  local run does, and stops at the first units of work the journal has no outcome
  for (:class:`NeedUnits`): the workflow runs those and asks again.
- ``willo.unit``: one try of one unit (:func:`~connector.workflows.runner.try_unit`,
  the local executor's own), on the task queue of the unit's account. Temporal
  retries it by the step's ``retry`` (declared where the workflow calls it); what a
  try may have left behind (a request that may have landed) travels to the next try
  in the heartbeat details, and the next try settles it (the manifest's
  ``reconcile`` lookup) before it may resend. A try on a worker that was lost
  (killed, cut off) counts as one that may have sent its request.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from connector import redaction, secrets
from connector.engines.temporal import MAX_LOST, accounts, wire
from connector.errors import ConfigError, ConnectorError
from connector.workflows.model import Workflow, load, walk_steps
from connector.workflows.runner import (
    Blocked,
    MemoryJournal,
    Retry,
    Runner,
    RunResult,
    Unit,
    UnitContext,
    UnitFailed,
    UnitResult,
    UnitState,
    _NotStarted,
    only_an_operator_settles,
    operator_output,
    secret_scope,
    try_unit,
)

log = logging.getLogger(__name__)
#: a unit's failures are outcomes the run reports, not the worker's errors: logged at debug
BENIGN = ApplicationErrorCategory.BENIGN

# --------------------------------------------------------------------------- the plan


class NeedUnits(BaseException):
    """The runner reached units the journal has no outcome for (a signal to the
    planner, not an error: a BaseException, so that no runner code catches it)."""

    def __init__(self, units: list[Unit], concurrency: int):
        super().__init__(f"{len(units)} units to run")
        self.units = units
        self.concurrency = concurrency


class PlanExecutor:
    """An executor that runs nothing: it answers each unit from the journal the
    workflow keeps, or stops the pass with :class:`NeedUnits`."""

    def __init__(self, rows: Mapping[tuple[str, int], Mapping[str, Any]], lookup: Callable[[str], str]):
        self.rows = rows
        self.lookup = lookup

    def run(
        self, units: list[Unit], fn: Callable[[Unit], Any], concurrency: int
    ) -> Iterator[tuple[Unit, Any, BaseException | None]]:
        missing = [u for u in units if (self.rows.get((u.step, u.item)) or {}).get("status") not in wire.DONE]
        if missing:
            raise NeedUnits(missing, concurrency)
        for unit in units:
            row = self.rows[(unit.step, unit.item)]
            status = row["status"]
            if status == "succeeded":
                output = wire.unseal(wire_loads(row.get("output")), self.lookup)
                yield unit, UnitResult(output, [], int(row.get("tries") or 1)), None
            elif status == "not_started":
                yield unit, None, _NotStarted()
            elif status == "blocked":
                yield unit, None, Blocked(row.get("error") or "blocked")
            else:
                error = UnitFailed(
                    row.get("error") or "failed",
                    row.get("kind") or "permanent",
                    int(row.get("tries") or 1),
                    row.get("reason") or "fatal",
                )
                yield unit, None, error


def wire_loads(text: Any) -> Any:
    import json

    return None if text is None else json.loads(text)


_WORKFLOWS: OrderedDict[tuple[str, str, int], Workflow] = OrderedDict()
_WORKFLOWS_LOCK = threading.Lock()


def _workflow(conn: Any, path: str, source: str) -> Workflow:
    """The workflow of a run, loaded (and checked) once per process and source."""
    key = (path, hashlib.sha256(source.encode()).hexdigest(), id(conn.catalog))
    with _WORKFLOWS_LOCK:
        found = _WORKFLOWS.get(key)
        if found is not None:
            _WORKFLOWS.move_to_end(key)
            return found
    wf = load(Path(path), conn.catalog, text=source, check_secrets=False)
    with _WORKFLOWS_LOCK:
        _WORKFLOWS[key] = wf
        while len(_WORKFLOWS) > 64:
            _WORKFLOWS.popitem(last=False)
    return wf


def lookup_secret(name: str) -> str:
    value = secrets.lookup(name)
    if value is None:
        raise ConfigError(f"unknown secret {name!r} on this worker ({secrets.hint(name)})")
    return value


def _failed(run_id: str, name: str, message: str) -> dict[str, Any]:
    result = RunResult(run_id, name, "failed", [], redaction.scrub(message), kind="permanent")
    return {"done": True, "result": wire.result_to_wire(result), "written": {}}


@activity.defn(name="willo.plan")
def plan(req: dict[str, Any]) -> dict[str, Any]:
    """One pass of the runner over the journal ``req["journal"]``: either the run's
    result (``done``) or the units to run next, with their concurrency and whether a
    failure stops the rest (``on_error: stop``). Rows it journaled on the way (branch
    decisions, skipped steps, inputs that did not render) come back as ``written``."""
    run_id = str(req["run_id"])
    conn = accounts.current().planner(req["account"])
    try:
        wf = _workflow(conn, req["path"], req["source"])
    except ConnectorError as exc:
        return _failed(run_id, req.get("name") or "", str(exc))
    rows = {wire.split(k): dict(v) for k, v in (req.get("journal") or {}).items()}
    memory = MemoryJournal(rows)
    runner = Runner(
        conn, wf, store=None, progress=False, executor=PlanExecutor(rows, lookup_secret), journal=memory
    )
    try:
        found = secret_scope(wf)
        inputs = wire.unseal(req.get("inputs") or {}, lookup_secret)
        trigger = wire.unseal(req.get("trigger"), lookup_secret)
        if trigger is None and isinstance(req.get("schedule"), dict):
            trigger = scheduled_event(req["schedule"])
        result = runner.replay(run_id, inputs, trigger, origins=req.get("origins"), parent=req.get("parent"))
    except NeedUnits as need:
        steps = {s["id"]: s for s, _p, _path in walk_steps(wf.steps)}
        step = steps.get(need.units[0].step) or {}
        # each on its step's account (its connection:, a branch's, the workflow's), whose
        # workers (`worker -c NAME`) run it
        units = [
            wire.seal(
                wire.unit_to_wire(
                    u, runner.connections.get(u.step) or wf.data.get("connection") or req["account"]
                ),
                found,
            )
            for u in need.units
        ]
        return {
            "done": False,
            "units": units,
            "concurrency": need.concurrency,
            "stop_on_error": step.get("on_error", "stop") == "stop",
            "foreach": "foreach" in step,
            "secrets": sorted(found),
            "written": _written(memory),
        }
    except ConnectorError as exc:
        return _failed(run_id, wf.name, str(exc))
    shown = redaction.scrub_value(wire.shown(wire.seal(wire.result_to_wire(result), found)))
    return {"done": True, "result": shown, "written": _written(memory)}


def scheduled_event(schedule: Mapping[str, Any]) -> dict[str, Any] | None:
    """The trigger event of a run a Temporal schedule started (its slot and start
    time, which the run took from Temporal), as the local scheduler gives it."""
    from datetime import datetime

    from connector.triggers.schedule import LATE_AFTER, slot_event

    if not schedule.get("slot"):
        return None
    slot = datetime.fromisoformat(str(schedule["slot"]))
    fired = datetime.fromisoformat(str(schedule.get("fired") or schedule["slot"]))
    late = (fired - slot).total_seconds() > LATE_AFTER
    return slot_event(str(schedule.get("timezone") or "UTC"), slot, fired, late)


def _written(memory: MemoryJournal) -> dict[str, Any]:
    return {wire.key(s, i): row for (s, i), row in memory.written.items()}


# --------------------------------------------------------------------------- one unit


def recover(attempt: int, last: Mapping[str, Any] | None, carry: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where a unit stands at the start of Temporal attempt ``attempt``: tries so far,
    workers lost so far, and what may have landed (``pending``), from the last
    heartbeat details and what the workflow carried over (``carry``).

    Only a previous attempt that reported its failure (``state: failed``) is taken at
    its word; any other (killed, cut off, timed out) may have sent its request, so the
    unit is settled (looked up) before it may be resent."""
    base = dict(carry or {})
    if attempt <= 1:
        return {
            "tries": int(base.get("tries", 0)),
            "lost": int(base.get("lost", 0)),
            "pending": base.get("pending"),
        }
    if last and last.get("attempt") == attempt - 1 and last.get("state") == "failed":
        return {
            "tries": int(last.get("tries", 0)),
            "lost": int(last.get("lost", 0)),
            "pending": last.get("pending"),
        }
    seen = dict(last or base)
    kept = seen.get("pending")
    if not (kept and kept.get("status") == "sent"):
        kept = {"status": "sending", "output": None, "cause": "its worker was lost while it ran"}
    return {"tries": int(seen.get("tries", 0)), "lost": int(seen.get("lost", 0)) + 1, "pending": kept}


class _Beat:
    """The heartbeat of one try: the details now (sent at once when they change) and a
    thread that repeats them while the try runs, so a lost worker is noticed."""

    def __init__(self, details: dict[str, Any], interval: float):
        self.details = details
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._loop,), daemon=True, name="willo-heartbeat"
        )

    def __enter__(self) -> _Beat:
        self.send()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def update(self, **changes: Any) -> None:
        self.details = {**self.details, **changes}
        self.send()

    def send(self) -> None:
        with contextlib.suppress(RuntimeError):  # not in an activity (a direct call in a test)
            activity.heartbeat(self.details)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.send()


class _BeatJournal(MemoryJournal):
    """The journal of a try: the moment the request may go out, it says so first."""

    def __init__(self, beat: _Beat):
        super().__init__()
        self.beat = beat

    def mark_unit(
        self, run_id: str, step: str, item: int, action: str, status: str, *a: Any, **kw: Any
    ) -> None:
        super().mark_unit(run_id, step, item, action, status, *a, **kw)
        if status == "sending":
            self.beat.update(state="sending")


def settle_hint(run_id: str | None, unit: Unit, waits: bool = True) -> str:
    """How an operator goes on after a unit of a Temporal run that may have landed: the
    run waits for their word (``on_error: stop``), or went past it (``continue``)."""
    if not waits:
        return (
            "send it again yourself if Willo does not have it:"
            " the run goes on without it (on_error: continue)"
        )
    item = f" --item {unit.item}" if unit.item >= 0 else ""
    command = f"willo-connector runs resolve {run_id or 'RUN'} --step {unit.step}{item}"
    return f"settle it with `{command} --sent` (or `--not-sent`): the run waits for it, then goes on"


@activity.defn(name="willo.unit")
def unit(req: dict[str, Any]) -> dict[str, Any]:
    """One try of one unit: ``{"output", "tries"}``, or an :class:`ApplicationError`:
    ``Retry`` (with the unit's own backoff as the next delay), ``UnitFailed`` or
    ``Blocked`` (not retryable; details: kind, tries, reason)."""
    info = activity.info()
    conn = accounts.current().connector(req["account"])
    names = list(req.get("secrets") or [])
    sealing = {n: v for n in names if (v := secrets.lookup(n))}
    the_unit = wire.unit_from_wire(wire.unseal(req["unit"], lookup_secret))
    details = list(info.heartbeat_details or [])
    last = details[0] if details and isinstance(details[0], dict) else None
    start = recover(info.attempt, last, req.get("carry"))
    if start["lost"] > MAX_LOST:
        raise ApplicationError(
            f"{the_unit.action}: its worker was lost {start['lost']} times (killed or cut off); "
            "not tried again",
            {"kind": "transient", "tries": start["tries"], "reason": "network"},
            type="UnitFailed",
            non_retryable=True,
            category=BENIGN,
        )
    heartbeat = float(req.get("heartbeat") or 15.0)
    details0 = {"attempt": info.attempt, "state": "started", **start}
    asked: list[bool] = []  # the unit asked for an operator's word: the run waits for it

    waits = req.get("waits", True)

    def hint(run_id: str | None, the: Unit) -> str:
        asked.append(True)
        return settle_hint(run_id, the, waits)

    with _Beat(details0, max(0.2, heartbeat / 3)) as beat:
        ctx = UnitContext(conn, _BeatJournal(beat), {}, threading.Event(), random.Random(), settle_hint=hint)
        pending = wire.pending_from_wire(
            wire.unseal(start["pending"], lookup_secret) if start["pending"] else None
        )
        state: UnitState | None = None

        def landing() -> Any:
            """What may have landed, as the journal keeps it (secrets sealed)."""
            now = state.pending if state is not None else pending
            return wire.seal(wire.pending_to_wire(now), sealing) if now is not None else None

        try:
            state = UnitState.begin(ctx, the_unit, None, pending)
            state.tries = start["tries"]
            outcome = try_unit(ctx, str(req["run_id"]), the_unit, state)
        except UnitFailed as exc:
            # it may have landed, and no lookup can tell: only an operator can settle it
            if asked or (state is not None and only_an_operator_settles(state)):
                message = str(exc)
                if not asked:
                    message += (
                        f"; it may have landed and {the_unit.action} has no reconcile lookup: check Willo, "
                        f"then {settle_hint(str(req['run_id']), the_unit, waits)}"
                    )
                raise ApplicationError(
                    message,
                    {"kind": "blocked", "tries": exc.tries, "pending": landing()},
                    type="Blocked",
                    non_retryable=True,
                    category=BENIGN,
                ) from None
            raise ApplicationError(
                str(exc),
                {"kind": exc.kind, "tries": exc.tries, "reason": exc.reason, "pending": landing()},
                type="UnitFailed",
                non_retryable=True,
                category=BENIGN,
            ) from None
        except Blocked as exc:
            raise ApplicationError(
                str(exc),
                {
                    "kind": "blocked",
                    "tries": (state.tries if state else start["tries"]),
                    "pending": landing(),
                },
                type="Blocked",
                non_retryable=True,
                category=BENIGN,
            ) from None
        except ConnectorError as exc:  # could not even begin (an unknown action on this worker)
            raise ApplicationError(
                str(exc),
                {"kind": "permanent", "tries": start["tries"] + 1},
                type="UnitFailed",
                non_retryable=True,
                category=BENIGN,
            ) from None
        if isinstance(outcome, Retry):
            beat.update(
                state="failed",
                tries=state.tries,
                pending=wire.seal(wire.pending_to_wire(state.pending), sealing),
            )
            raise ApplicationError(
                outcome.message,
                {"reason": outcome.reason, "tries": state.tries},
                type="Retry",
                next_retry_delay=timedelta(seconds=max(outcome.wait, 0.001)),
                category=BENIGN,
            )
    return {"output": wire.seal(outcome.output, sealing), "tries": outcome.tries}


# --------------------------------------------------------------------------- an operator's word


@activity.defn(name="willo.settle")
def settle(req: dict[str, Any]) -> dict[str, Any]:
    """The output of a unit an operator says was sent (``runs resolve --sent``), on a
    worker of the unit's account (its key, its catalog): the output given, checked
    against the action's output schema, else what the action's ``reconcile`` lookup
    finds; a ``SettleRefused`` error saying what to give instead, as locally."""
    conn = accounts.current().connector(req["account"])
    the_unit = wire.unit_from_wire(wire.unseal(req["unit"], lookup_secret))
    sealing = {n: v for n in req.get("secrets") or [] if (v := secrets.lookup(n))}
    where = f"step {the_unit.step}" + (f" item {the_unit.item}" if the_unit.item >= 0 else "")
    try:
        manifest = conn.catalog.get(the_unit.action, "action")
        output = operator_output(
            lambda: conn, manifest, where, lambda: the_unit.inputs, output=req.get("output")
        )
    except ConnectorError as exc:
        raise ApplicationError(str(exc), type="SettleRefused", non_retryable=True, category=BENIGN) from None
    return {"output": wire.seal(output, sealing)}


# --------------------------------------------------------------------------- polling triggers


@activity.defn(name="willo.poll")
def poll(req: dict[str, Any]) -> dict[str, Any]:
    """One poll of a polling trigger by the local :class:`~connector.triggers.polling.Poller`,
    over the ledger the poller workflow keeps in its history (``req["ledger"]``: the
    cursor, whether the first poll happened, the keys seen at the cursor): the new
    events, and the ledger after them. The poller's state store here is a scratch
    one, seeded from and read back into that ledger."""
    import tempfile

    from connector.state.store import StateStore
    from connector.triggers.polling import Poller

    conn = accounts.current().connector(req["account"])
    ledger = req.get("ledger") or {}
    with tempfile.TemporaryDirectory(prefix="willo-poll-") as scratch:
        store = StateStore(scratch)
        poller = Poller(conn, store, req["trigger"], req.get("options") or {})
        with store.tx() as db:
            db.execute(
                "UPDATE triggers SET initialized = ?, cursor = ? WHERE name = ?",
                (1 if ledger.get("initialized") else 0, ledger.get("cursor"), poller.name),
            )
            db.executemany(
                "INSERT INTO seen (name, item, ord, seen_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(poller.name, k, o, t) for k, o, t in ledger.get("seen") or []],
            )
        try:
            result = poller.poll(backfill=bool(req.get("backfill")))
        except ConnectorError as exc:
            raise ApplicationError(str(exc), type="PollFailed", category=BENIGN) from None
        row = store.query("SELECT initialized, cursor FROM triggers WHERE name = ?", (poller.name,))[0]
        cursor = row["cursor"]
        seen = [
            [r["item"], r["ord"], r["seen_at"]]
            for r in store.query("SELECT item, ord, seen_at FROM seen WHERE name = ?", (poller.name,))
            if cursor is None or r["ord"] is None or r["ord"] >= cursor  # older ones the cursor excludes
        ]
        events = [
            {"key": r["dedupe"], "payload": wire_loads(r["payload"])}
            for r in store.query("SELECT dedupe, payload FROM events WHERE source = 'poll' ORDER BY id")
        ]
    return {
        "events": events,
        "first": result.first,
        "ledger": {"initialized": bool(row["initialized"]), "cursor": cursor, "seen": seen},
    }
