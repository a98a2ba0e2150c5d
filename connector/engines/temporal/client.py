"""Talking to Temporal from the CLI: connect (self-hosted, TLS, Temporal Cloud), start
a run and wait for it, list runs and read one (its history is its journal)."""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, TLSConfig

from connector import redaction
from connector.engines.temporal import RUN_WORKFLOW, TemporalSettings, wire
from connector.errors import ConfigError, ConnectorError
from connector.workflows.model import Workflow
from connector.workflows.runner import RunResult, secret_scope


def _read(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what}={path}: cannot read: {exc.strerror}") from None


def tls_config(settings: TemporalSettings) -> bool | TLSConfig:
    if not settings.tls:
        return False
    parts = (settings.tls_cert, settings.tls_ca, settings.tls_server_name)
    if not any(parts):
        return True
    return TLSConfig(
        server_root_ca_cert=_read(settings.tls_ca, "WILLO_TEMPORAL_TLS_CA"),
        domain=settings.tls_server_name,
        client_cert=_read(settings.tls_cert, "WILLO_TEMPORAL_TLS_CERT"),
        client_private_key=_read(settings.tls_key, "WILLO_TEMPORAL_TLS_KEY"),
    )


#: Set once this process has connected to Temporal (its client's threads then live
#: until the process ends: see :func:`connector.cli.run`).
connected = False


async def connect(settings: TemporalSettings) -> Client:
    """A client of the configured cluster, or a one-line :class:`ConnectorError`."""
    global connected
    connected = True
    try:
        return await Client.connect(
            settings.address,
            namespace=settings.namespace,
            api_key=settings.api_key,
            tls=tls_config(settings),
            connect_timeout=datetime.timedelta(seconds=10),
        )
    except (RuntimeError, RPCError, OSError) as exc:
        first = redaction.scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise ConnectorError(
            f"cannot reach Temporal at {settings.address} (namespace {settings.namespace}): {first[:300]}"
        ) from None


def run_request(
    settings: TemporalSettings,
    wf: Workflow,
    values: Mapping[str, Any],
    trigger: Any = None,
    origins: Mapping[str, Any] | None = None,
    account: str = "default",
) -> dict[str, Any]:
    """What a ``WilloRun`` starts from: the workflow's source (workers need not have
    the file), its prepared inputs and trigger with secrets sealed out."""
    found = secret_scope(wf)  # an unknown secret: the local run's error, before anything starts
    return {
        "path": str(wf.path),
        "source": wf.text,
        "name": wf.name,
        "inputs": wire.seal(dict(values), found),
        "trigger": wire.seal(trigger, found),
        "origins": dict(origins or {}),
        "account": account,
        "prefix": settings.prefix,
        "heartbeat": settings.heartbeat,
    }


async def start_run(
    client: Client,
    settings: TemporalSettings,
    req: dict[str, Any],
    workflow_id: str | None = None,
) -> WorkflowHandle[Any, Any]:
    """Start a run; with ``workflow_id`` given (an event's), a second start of the same
    id is refused by the server (:class:`WorkflowAlreadyStartedError`), even after the
    first has finished."""
    try:
        return await client.start_workflow(
            RUN_WORKFLOW,
            req,
            id=workflow_id or settings.run_id(),
            task_queue=settings.control_queue,
            memo=run_memo(req),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except RPCError as exc:
        size = len(json.dumps(req, default=str))
        hint = (
            f"; the run's source and inputs are {size:,} bytes, over the cluster's payload limit "
            "(2 MB by default): split the inputs into several runs"
            if "size" in exc.message.lower()
            else ""
        )
        raise ConnectorError(
            f"Temporal did not start the run: {redaction.scrub(exc.message)[:200]}{hint}"
        ) from None


def run_memo(req: Mapping[str, Any]) -> dict[str, Any]:
    """What ``runs`` lists of a run without reading its history."""
    memo = {"workflow": req["name"], "file": req["path"]}
    if req.get("parent"):
        memo["rerun_of"] = req["parent"]
    return memo


async def start_once(
    client: Client, settings: TemporalSettings, req: dict[str, Any], workflow_id: str
) -> tuple[str, bool]:
    """Start the run of one delivered event: ``(workflow id, started)``; a duplicate
    delivery (the same id) is not an error: the first delivery's run is the run."""
    try:
        await start_run(client, settings, req, workflow_id)
    except WorkflowAlreadyStartedError:
        return workflow_id, False
    return workflow_id, True


#: how often a waiting ``run`` asks whether its run waits for an operator
BLOCKED_CHECK = 1.0


async def wait(handle: WorkflowHandle[Any, Any], *, until_blocked: bool = True) -> RunResult:
    """The run's result, as a local run returns it. With ``until_blocked``, a run that
    waits for an operator (a unit that may have landed) is returned as ``blocked``, as
    a local run stops: the run itself goes on waiting on Temporal for `runs resolve`."""
    import asyncio

    done = asyncio.ensure_future(handle.result())
    try:
        while until_blocked and not done.done():
            await asyncio.wait([done], timeout=BLOCKED_CHECK)
            if done.done():
                break
            state: dict[str, Any] = {}
            with contextlib.suppress(RPCError, WorkflowQueryFailedError):
                state = await handle.query("journal", rpc_timeout=datetime.timedelta(seconds=5))
            waiting = list((state.get("waiting") or {}).values())
            if waiting:
                return _blocked_result(handle.id, waiting)
        data = await done
    except WorkflowFailureError as exc:
        cause = exc.cause or exc
        raise ConnectorError(
            f"run {handle.id} failed on Temporal: {redaction.scrub(str(getattr(cause, 'message', cause)))}"
        ) from None
    finally:
        if not done.done():
            done.cancel()
    return wire.result_from_wire(data)


def _blocked_result(run_id: str, waiting: list[dict[str, Any]]) -> RunResult:
    """A run waiting for an operator, as a blocked local run reports it."""
    from connector.workflows.runner import RunResult, StepResult

    steps = [
        StepResult(
            w["step"], w["action"], "blocked", None, redaction.scrub(str(w["error"])), None, [], 0, "blocked"
        )
        for w in waiting
    ]
    first = waiting[0]
    where = f"step {first['step']}" + (f" item {first['item']}" if int(first["item"]) >= 0 else "")
    error = f"{where}: {redaction.scrub(str(first['error']))}"
    return RunResult(run_id, "", "blocked", steps, error, False, kind="blocked")


# --------------------------------------------------------------------------- runs


_STATUS = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "finished",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "running",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
}


def _ts(when: datetime.datetime | None) -> float | None:
    return when.timestamp() if when is not None else None


async def list_runs(client: Client, settings: TemporalSettings, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` runs of this deployment (its task-queue prefix), one row
    each as ``runs`` lists local runs."""
    found: list[dict[str, Any]] = []
    query = f"WorkflowType = '{RUN_WORKFLOW}' AND WorkflowId STARTS_WITH '{settings.prefix}-'"
    async for execution in client.list_workflows(query, limit=limit):
        memo = await execution.memo()
        row: dict[str, Any] = {
            "id": execution.id,
            "workflow": memo.get("workflow") or "",
            "file": memo.get("file") or "",
            "status": _STATUS.get(execution.status, "unknown") if execution.status else "unknown",
            "error": None,
            "attempts": 1,
            "units_succeeded": 0,
            "units": 0,
            "started_at": _ts(execution.start_time),
            "finished_at": _ts(execution.close_time),
            "rerun_of": memo.get("rerun_of"),
            "engine": "temporal",
        }
        if execution.status == WorkflowExecutionStatus.COMPLETED:
            data = await client.get_workflow_handle(execution.id, run_id=execution.run_id).result()
            journal = data.get("journal") or {}
            row.update(
                status=data.get("status"),
                error=data.get("error"),
                units=len(journal),
                units_succeeded=sum(1 for u in journal.values() if u.get("status") == "succeeded"),
            )
        found.append(row)
        if len(found) >= limit:
            break
    return found


async def describe_run(client: Client, run_id: str) -> dict[str, Any]:
    """One run: its execution, and its result (finished) or its journal so far
    (running: read from the workflow, which needs a live worker)."""
    handle = client.get_workflow_handle(run_id)
    try:
        info = await handle.describe()
    except RPCError as exc:
        raise ConnectorError(f"no Temporal run {run_id!r} ({redaction.scrub(exc.message)[:200]})") from None
    memo = await info.memo()
    status = _STATUS.get(info.status, "unknown") if info.status else "unknown"
    out: dict[str, Any] = {
        "id": run_id,
        "workflow": memo.get("workflow") or "",
        "file": memo.get("file") or "",
        "execution": status,
        "started_at": _ts(info.start_time),
        "finished_at": _ts(info.close_time),
        "result": None,
        "journal": {},
        "waiting": {},
        "request": None,
        "rerun_of": memo.get("rerun_of"),
    }
    if info.status == WorkflowExecutionStatus.COMPLETED:
        data = await handle.result()
        out["result"] = data
        out["journal"] = data.get("journal") or {}
    elif info.status == WorkflowExecutionStatus.RUNNING:
        try:
            state = await handle.query("journal", rpc_timeout=datetime.timedelta(seconds=20))
            out["journal"] = state.get("journal") or {}
            out["waiting"] = state.get("waiting") or {}
        except (RPCError, WorkflowQueryFailedError):
            pass  # no worker to answer: the execution's status is all there is
    out["request"] = await first_request(handle)
    schedule = (out["request"] or {}).get("schedule")
    if isinstance(schedule, dict) and not (out["request"] or {}).get("trigger"):
        out["request"]["trigger"] = scheduled_trigger(schedule, info)
    return out


async def first_request(handle: WorkflowHandle[Any, Any]) -> dict[str, Any] | None:
    """What the run was started with (its history's first event)."""
    async for event in handle.fetch_history_events():
        attrs = event.workflow_execution_started_event_attributes
        if attrs and attrs.input and attrs.input.payloads:
            found: dict[str, Any] = json.loads(attrs.input.payloads[0].data)
            return found
        break
    return None


def scheduled_trigger(schedule: Mapping[str, Any], info: Any) -> dict[str, Any] | None:
    """The trigger event of a run a schedule started, from its execution (the
    scheduled time Temporal gave it, its start), as the run itself made it."""
    from temporalio.common import SearchAttributeKey

    from connector.engines.temporal.activities import scheduled_event

    key = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
    fired = info.start_time
    slot = info.typed_search_attributes.get(key) or fired
    if slot is None:
        return None
    return scheduled_event({**schedule, "slot": slot.isoformat(), "fired": (fired or slot).isoformat()})


# --------------------------------------------------------------------------- an operator's word


async def resolve(
    client: Client, run_id: str, step: str, item: int | None, sent: bool, output: Any
) -> dict[str, Any]:
    """Settle the unit a running run waits on (``runs resolve``): the run goes on. A
    one-line :class:`ConnectorError` when the run has no such unit waiting, or has
    finished."""
    handle = client.get_workflow_handle(run_id)
    try:
        info = await handle.describe()
    except RPCError as exc:
        raise ConnectorError(f"no Temporal run {run_id!r} ({redaction.scrub(exc.message)[:200]})") from None
    if info.status != WorkflowExecutionStatus.RUNNING:
        status = _STATUS.get(info.status, "unknown") if info.status else "unknown"
        raise ConnectorError(
            f"run {run_id} is over ({status}): nothing waits to be settled; run again what failed "
            f"(what may have landed is looked up first): willo-connector rerun {run_id} --failed"
        )
    ask = {"step": step, "item": item, "sent": sent, "output": output}
    try:
        done: dict[str, Any] = await handle.execute_update(
            "resolve", ask, rpc_timeout=datetime.timedelta(minutes=4)
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = getattr(cause, "message", None) or str(cause or exc)
        raise ConnectorError(redaction.scrub(str(message))) from None
    except RPCError as exc:
        raise ConnectorError(
            f"run {run_id}: Temporal did not take the settlement: {redaction.scrub(exc.message)[:200]}"
        ) from None
    return done


# --------------------------------------------------------------------------- reruns

#: journal statuses of a unit that may have landed when its run ended (in flight, or
#: waiting for an operator): settled (looked up) before anything is resent
_IN_FLIGHT = ("running", "blocked")


def rerun_request(
    request: Mapping[str, Any], journal: Mapping[str, Mapping[str, Any]], parent: str, only_failed: bool
) -> dict[str, Any]:
    """A new run of ``parent``'s request (its source, inputs, trigger, account). With
    ``only_failed``, what succeeded there is reused (its outputs, its branch
    decisions), and a unit that may have landed (failed ambiguously, in flight or
    waiting when the run ended) is carried over to be settled first, as a local
    ``rerun --failed`` does; the rest runs again."""
    req = {k: v for k, v in request.items() if k not in ("journal", "carry")}
    req["parent"] = parent
    if not only_failed:
        return req
    seed: dict[str, Any] = {}
    carry: dict[str, Any] = {}
    for k, row in journal.items():
        status = row.get("status")
        if status == "succeeded":
            seed[k] = {**row, "error": None, "tries": 0}
        elif row.get("pending") or status in _IN_FLIGHT:
            pending = row.get("pending") or {
                "status": "sending",
                "output": None,
                "cause": "its run ended while it ran",
            }
            carry[k] = {"pending": pending, "tries": 0}
    req["journal"] = seed
    req["carry"] = carry
    return req


def needs_rerun(journal: Mapping[str, Mapping[str, Any]]) -> bool:
    """Did anything of a finished run fail, or stay unfinished?"""
    return any(
        row.get("status") in ("failed", "not_started", *_IN_FLIGHT) or row.get("pending")
        for row in journal.values()
    )


async def rerun_source(client: Client, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(request, journal)`` of a finished run: its journal whole (outputs
    sealed, what may have landed), read from the workflow (a worker replays it)."""
    handle = client.get_workflow_handle(run_id)
    try:
        info = await handle.describe()
    except RPCError as exc:
        raise ConnectorError(f"no Temporal run {run_id!r} ({redaction.scrub(exc.message)[:200]})") from None
    if info.status == WorkflowExecutionStatus.RUNNING:
        state: dict[str, Any] = {}
        with contextlib.suppress(RPCError, WorkflowQueryFailedError):
            state = await handle.query("journal", rpc_timeout=datetime.timedelta(seconds=20))
        waiting = state.get("waiting") or {}
        hint = (
            f"it waits for an operator: settle {len(waiting)} unit(s) with `willo-connector runs resolve "
            f"{run_id} ...` (see runs show {run_id})"
            if waiting
            else "it is still running"
        )
        raise ConnectorError(f"run {run_id} has not finished; {hint}")
    request = await first_request(handle)
    if request is None:
        raise ConnectorError(f"run {run_id}: its history has no request to run again")
    schedule = request.get("schedule")
    if isinstance(schedule, dict) and not request.get("trigger"):  # the same scheduled time again
        request = {k: v for k, v in request.items() if k != "schedule"}
        request["trigger"] = scheduled_trigger(schedule, info)
    try:
        data = await handle.query("journal", rpc_timeout=datetime.timedelta(seconds=30))
    except (RPCError, WorkflowQueryFailedError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        raise ConnectorError(
            f"run {run_id}: no worker read its journal ({redaction.scrub(str(message))[:200]}); "
            "start `willo-connector worker`"
        ) from None
    return request, dict(data.get("journal") or {})


# --------------------------------------------------------------------------- schedules

#: how long after its time a slot the cluster could not start (it was down) still
#: runs, with ``catch_up: false`` (Temporal's least); with ``catch_up`` the latest
#: missed slot runs once, however long ago (one buffered start: never one per slot)
NO_CATCH_UP = datetime.timedelta(seconds=10)
CATCH_UP = datetime.timedelta(days=365)


def schedule_of(
    settings: TemporalSettings, wf: Workflow, account: str, folder: str | None = None
) -> tuple[str, Any]:
    """``(schedule id, Temporal Schedule)`` of a workflow with a ``schedule`` trigger:
    its cron in its time zone; each time starts a ``WilloRun`` whose trigger event is
    the local scheduler's (``scheduled_at``, ``fired_at``, ``timezone``, ``missed``);
    a time that comes while the last run still runs waits for it (one at most)."""
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleOverlapPolicy,
        SchedulePolicy,
        ScheduleSpec,
        ScheduleState,
    )

    from connector.catalog.formats import expand
    from connector.workflows.runner import prepare_inputs

    options = (wf.trigger or {}).get("with") or {}
    timezone = str(options.get("timezone") or "UTC")
    req = run_request(settings, wf, prepare_inputs(wf, {}), None, None, account)
    req["schedule"] = {"timezone": timezone}
    sid = settings.schedule_id(account, wf.name)
    memo = {**run_memo(req), "account": account, **({"folder": folder} if folder else {})}
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            RUN_WORKFLOW,
            req,
            id=f"{settings.prefix}-run-{sid.split('-schedule-', 1)[1]}",  # Temporal adds the time
            task_queue=settings.control_queue,
            memo=run_memo(req),
        ),
        spec=ScheduleSpec(cron_expressions=[expand(str(options["cron"]))], time_zone_name=timezone),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.BUFFER_ONE,
            catchup_window=CATCH_UP if options.get("catch_up", True) else NO_CATCH_UP,
        ),
        state=ScheduleState(note=f"willo-connector: {wf.path}"),
    )
    return sid, (schedule, memo)


async def ensure_schedule(
    client: Client,
    settings: TemporalSettings,
    wf: Workflow,
    account: str = "default",
    folder: str | None = None,
) -> tuple[str, bool]:
    """Create the one Temporal Schedule of ``wf`` on ``account`` (``(id, created)``), or,
    when it exists (another `serve`, here or on another machine, created it), update it
    to ``wf`` as it is now: there is one schedule per account and workflow, whatever
    the number of `serve` processes, so a time never starts two runs."""
    from temporalio.client import ScheduleAlreadyRunningError, ScheduleUpdate

    sid, (schedule, memo) = schedule_of(settings, wf, account, folder)
    try:
        await client.create_schedule(sid, schedule, memo=memo)
        return sid, True
    except ScheduleAlreadyRunningError:
        pass

    def updater(_current: Any) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=schedule)

    await client.get_schedule_handle(sid).update(updater)
    return sid, False


# --------------------------------------------------------------------------- pollers


def poller_memo(wf: Workflow, trigger: str, account: str, folder: str | None = None) -> dict[str, Any]:
    memo = {"workflow": wf.name, "trigger": trigger, "file": str(wf.path), "account": account}
    if folder is not None:
        memo["folder"] = folder
    return memo


async def start_poller(
    client: Client,
    settings: TemporalSettings,
    wf: Workflow,
    trigger: str,
    options: Mapping[str, Any],
    *,
    interval: float,
    once: bool = False,
    backfill: bool = False,
    account: str = "default",
    update: bool = False,
    folder: str | None = None,
) -> tuple[str, bool]:
    """Start the one poller of ``trigger`` with ``options`` for ``wf``: ``(workflow id,
    started)``; ``started`` is False when it is polling already (another `poll` started
    it, here or on another machine), and then, with ``update``, it is given ``wf`` as
    it is now and ``interval``. A poller that finished (``--once``, stopped) hands
    its ledger on to the next one."""
    from connector.engines.temporal import POLL_WORKFLOW
    from connector.workflows.runner import prepare_inputs

    wf_id = settings.poller_id(account, trigger, dict(options), wf.name)
    run = run_request(settings, wf, prepare_inputs(wf, {}), None, None, account)
    ledger = None
    try:
        info = await client.get_workflow_handle(wf_id).describe()
        if info.status == WorkflowExecutionStatus.RUNNING:
            if update:
                await client.get_workflow_handle(wf_id).signal("update", {"run": run, "interval": interval})
            return wf_id, False
        if info.status == WorkflowExecutionStatus.COMPLETED:
            ledger = (await client.get_workflow_handle(wf_id).result()).get("ledger")
    except RPCError:
        pass  # never started
    req = {
        "trigger": trigger,
        "options": dict(options),
        "account": account,
        "prefix": settings.prefix,
        "interval": interval,
        "once": once,
        "backfill": backfill,
        "ledger": ledger,
        "run": run,
    }
    try:
        await client.start_workflow(
            POLL_WORKFLOW,
            req,
            id=wf_id,
            task_queue=settings.control_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo=poller_memo(wf, trigger, account, folder),
        )
    except WorkflowAlreadyStartedError:
        if update:
            await client.get_workflow_handle(wf_id).signal("update", {"run": run, "interval": interval})
        return wf_id, False
    return wf_id, True
