"""Talking to Temporal from the CLI: connect (self-hosted, TLS, Temporal Cloud), start
a run and wait for it, list runs and read one (its history is its journal)."""

from __future__ import annotations

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


async def connect(settings: TemporalSettings) -> Client:
    """A client of the configured cluster, or a one-line :class:`ConnectorError`."""
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
            memo={"workflow": req["name"], "file": req["path"]},
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


async def wait(handle: WorkflowHandle[Any, Any]) -> RunResult:
    """The run's result, as a local run returns it."""
    try:
        data = await handle.result()
    except WorkflowFailureError as exc:
        cause = exc.cause or exc
        raise ConnectorError(
            f"run {handle.id} failed on Temporal: {redaction.scrub(str(getattr(cause, 'message', cause)))}"
        ) from None
    return wire.result_from_wire(data)


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
            "rerun_of": None,
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
        "request": None,
    }
    if info.status == WorkflowExecutionStatus.COMPLETED:
        data = await handle.result()
        out["result"] = data
        out["journal"] = data.get("journal") or {}
    elif info.status == WorkflowExecutionStatus.RUNNING:
        try:
            state = await handle.query("journal")
            out["journal"] = state.get("journal") or {}
        except RPCError:
            pass  # no worker to answer: the execution's status is all there is
    async for event in handle.fetch_history_events():
        attrs = event.workflow_execution_started_event_attributes
        if attrs and attrs.input and attrs.input.payloads:
            out["request"] = json.loads(attrs.input.payloads[0].data)
        break
    return out


# --------------------------------------------------------------------------- pollers


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
) -> tuple[str, bool]:
    """Start the one poller of ``trigger`` with ``options`` for ``wf``: ``(workflow id,
    started)``; ``started`` is False when it is polling already (another `poll` started
    it, here or on another machine). A poller that finished (``--once``) hands its
    ledger on to the next one."""
    from connector.engines.temporal import POLL_WORKFLOW
    from connector.workflows.runner import prepare_inputs

    wf_id = settings.poller_id(account, trigger, dict(options), wf.name)
    ledger = None
    try:
        info = await client.get_workflow_handle(wf_id).describe()
        if info.status == WorkflowExecutionStatus.RUNNING:
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
        "run": run_request(settings, wf, prepare_inputs(wf, {}), None, None, account),
    }
    try:
        await client.start_workflow(
            POLL_WORKFLOW,
            req,
            id=wf_id,
            task_queue=settings.control_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo={"workflow": wf.name, "trigger": trigger},
        )
    except WorkflowAlreadyStartedError:
        return wf_id, False
    return wf_id, True
