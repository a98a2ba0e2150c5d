"""Running workflows: steps in order, ``if``, ``foreach`` with bounded concurrency,
``on_error``, dry runs, and a journal that makes every run resumable.

Every unit of work (a step, or one foreach item) is journaled in the state store
as ``sending`` before its request, then as one of:

- ``succeeded`` (with its output);
- ``failed``: it did not land (refused, never reached Willo) and may be sent again;
- ``ambiguous``: the attempt failed after the request may have landed (connection
  lost after sending, a 5xx other than 503) and the action is not idempotent;
- ``sent``: Willo answered 2xx, then the unit failed (e.g. strict schema drift); the
  2xx body is kept.

Resuming a run reuses what succeeded and never sends a unit blindly again: a unit
caught ``sending`` or ``ambiguous`` is first looked up (the manifest's
``reconcile``), or resent only if the action is idempotent, or else it stays
**blocked** until an operator settles it (:func:`settle`, ``willo-connector runs
resolve``); a ``sent`` unit is completed from its kept body if it now passes the
output check, else it is blocked too. A run is worked on by one live process at a
time: it holds the run's lease (:mod:`connector.state.leases`) and every journal
write is fenced by it. Units run through :class:`Executor`, the one seam a
distributed executor would replace.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from connector import redaction, telemetry
from connector.catalog import schemas
from connector.catalog.types import Manifest
from connector.errors import AmbiguousRequestError, ConnectorError, InputError, RateLimited, WilloError
from connector.state.leases import LeaseLost
from connector.state.store import StateStore, loads
from connector.workflows import expressions
from connector.workflows.model import Workflow
from connector.workflows.runtime import Connector

log = logging.getLogger(__name__)

SINGLE = -1  # the item index of a step without foreach


class _NotStarted(Exception):
    """A foreach item not started because an earlier item failed (on_error: stop)."""


_SEND = object()  # a unit to send (again)


class Blocked(ConnectorError):
    """A unit that may have been sent and that no lookup can settle: it is never
    resent blindly; an operator settles it (``willo-connector runs resolve``)."""


class Interrupted(ConnectorError):
    """The run was asked to stop (e.g. the listener is shutting down); it is
    journaled as it stands and resumes later."""


class RunBusy(ConnectorError):
    """Another live process holds the run's lease."""


#: Why a unit, a step or a run failed, from the most to the least binding:
#: ``blocked`` needs an operator, ``permanent`` cannot succeed as it is (a 4xx other
#: than 429, a validation error), ``interrupted`` was stopped on purpose, and
#: ``transient`` may succeed later (429, 5xx, Willo unreachable).
KINDS = ("blocked", "permanent", "interrupted", "transient")


def failure_kind(exc: BaseException) -> str:
    """The kind (see :data:`KINDS`) of one failure."""
    if isinstance(exc, Blocked):
        return "blocked"
    if isinstance(exc, (Interrupted, LeaseLost)):
        return "interrupted"
    if isinstance(exc, RunBusy):
        return "transient"
    if isinstance(exc, WilloError):
        status = exc.status
        if status is None or status >= 500 or isinstance(exc, RateLimited) or status == 429:
            return "transient"
        return "permanent"
    return "permanent"


def worst(kinds: Iterator[str] | list[str]) -> str | None:
    found = set(kinds)
    return next((k for k in KINDS if k in found), None)


def landing(exc: BaseException, manifest: Manifest) -> str:
    """Whether a failed call's request landed: ``sent`` (a 2xx came back), ``ambiguous``
    (it may have) or ``not_sent``. For an idempotent action it does not matter: a
    resend is safe, so anything but ``sent`` counts as ``not_sent``."""
    if getattr(exc, "sent", False):
        return "sent"
    status = getattr(exc, "status", None)
    if isinstance(exc, WilloError) and status is not None and (200 <= status < 300 or status == 303):
        return "sent"  # a 2xx (or See Other) whose body could not be used
    if manifest.idempotent:
        return "not_sent"
    if isinstance(exc, AmbiguousRequestError):
        return "ambiguous"
    if isinstance(exc, WilloError):
        # a 5xx may come after the work was done; 503 says the server did not take it
        return "ambiguous" if status is not None and status >= 500 and status != 503 else "not_sent"
    if isinstance(exc, ConnectorError):
        return "not_sent"  # refused before sending (inputs, settings)
    return "ambiguous"  # an unexpected failure of a non-idempotent action: assume the worst


@dataclass
class Unit:
    """One unit of work: an action call with rendered inputs."""

    step: str
    item: int
    action: str
    inputs: dict[str, Any]


@dataclass
class StepResult:
    id: str
    action: str
    status: str  # succeeded | failed | skipped
    output: Any = None
    error: str | None = None
    items: list[dict[str, Any]] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    kind: str | None = None  # of a failure: see KINDS

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "action": self.action,
            "status": self.status,
            "output": self.output,
        }
        if self.error:
            d["error"] = self.error
        if self.items is not None:
            d["items"] = self.items
        if self.requests:
            d["requests"] = self.requests
        return d


@dataclass
class RunResult:
    run_id: str | None
    workflow: str
    status: str
    steps: list[StepResult]
    error: str | None = None
    dry_run: bool = False
    kind: str | None = None  # of a failure: see KINDS

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "dry_run": self.dry_run,
            "error": self.error,
            "steps": [s.as_dict() for s in self.steps],
        }

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "succeeded" else 1


class Executor(Protocol):
    """The seam every unit of work runs through: yields ``(unit, result, error)`` as
    each unit finishes, at most ``concurrency`` at a time. ``connector.engines.local``
    runs them on in-process threads."""

    def run(
        self, units: list[Unit], fn: Callable[[Unit], Any], concurrency: int
    ) -> Iterator[tuple[Unit, Any, BaseException | None]]: ...


class _Progress:
    """A progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, label: str, total: int, enabled: bool):
        self.bar: Any = None
        if enabled and total > 1 and sys.stderr.isatty():
            import click

            self.bar = click.progressbar(length=total, label=label, file=sys.stderr)
            self.bar.__enter__()

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def check_workflow_inputs(workflow: Workflow, inputs: Mapping[str, Any]) -> None:
    schema = workflow.data.get("inputs")
    if not schema:
        return
    problems = schemas.errors(dict(inputs), schema)
    if problems:
        text = "; ".join(f"{p or '/'}: {m}" for p, m in problems)
        raise InputError(f"{workflow.path}: inputs: {text}")


def check_event(workflow: Workflow, connector: Connector, event: Any, label: str) -> None:
    trig = workflow.trigger
    if not trig:
        return
    manifest = connector.catalog.get(trig["use"], "trigger")
    problems = schemas.errors(event, manifest.output_schema)
    if problems:
        text = "; ".join(f"{p or '/'}: {m}" for p, m in problems)
        raise InputError(f"{label}: not a {manifest.id} event: {text}")


def _observed(execute: Callable[..., RunResult]) -> Callable[..., RunResult]:
    """Runs (and resumes) in a log context naming the run and its workflow; the
    outcome logged at info, counted, and its duration measured."""

    @functools.wraps(execute)
    def wrapper(self: Runner, run_id: str | None, *args: Any, **kwargs: Any) -> RunResult:
        if self.store is None:  # a dry run: nothing journaled, nothing to report
            return execute(self, run_id, *args, **kwargs)
        began = time.monotonic()
        with telemetry.bind(run_id=run_id, workflow=self.wf.name):
            log.info("run %s of %s started", run_id, self.wf.name)
            result = execute(self, run_id, *args, **kwargs)
            took = time.monotonic() - began
            telemetry.inc("runs", workflow=self.wf.name, status=result.status)
            telemetry.observe("run_duration", took, workflow=self.wf.name, status=result.status)
            log.info(
                "run %s of %s %s in %.1fs%s",
                run_id,
                self.wf.name,
                result.status,
                took,
                f": {result.error}" if result.error else "",
            )
        return result

    return wrapper


class Runner:
    """Runs one workflow with one connector; journals unless it is a dry run."""

    def __init__(
        self,
        connector: Connector,
        workflow: Workflow,
        *,
        store: StateStore | None = None,
        progress: bool = True,
        executor: Executor,
        cancel: threading.Event | None = None,
    ):
        self.conn = connector
        self.wf = workflow
        self.store = None if connector.dry_run else store
        self.progress = progress
        self.executor = executor
        self.cancel = cancel  # set: start no further unit; the run is left resumable

    # ------------------------------------------------------------------ entry points

    def start(self, inputs: Mapping[str, Any], trigger: Any = None, event_id: int | None = None) -> RunResult:
        check_workflow_inputs(self.wf, inputs)
        run_id = None
        if self.store is not None:
            settings = {
                "pid": os.getpid(),
                "owner": self.store.leases.owner,
                "base_url": self.conn.client.settings.base_url,
            }
            run_id = self.store.new_run(
                self.wf.path, self.wf.name, self.wf.text, dict(inputs), trigger, settings, event_id, hold=True
            )
        try:
            return self._execute(run_id, dict(inputs), trigger, {})
        finally:
            self._let_go(run_id)

    def resume(self, run_id: str, inputs: Any, trigger: Any) -> RunResult:
        """Continue ``run_id``: what succeeded is reused, nothing is resent blindly.
        Raises :class:`RunBusy` while another live process holds the run."""
        assert self.store is not None
        take_run(self.store, run_id)
        try:
            journal = self.store.units(run_id)
            self.store.restart_run(run_id)
            return self._execute(run_id, inputs, trigger, journal)
        finally:
            self._let_go(run_id)

    def _let_go(self, run_id: str | None) -> None:
        if self.store is not None and run_id is not None:
            self.store.leases.release(run_resource(run_id))

    # ------------------------------------------------------------------ execution

    def _event(self, trigger: Any) -> Any:
        """The trigger event as expressions see it: decimals as numbers."""
        if trigger is None:
            return {}
        use = (self.wf.trigger or {}).get("use")
        return self.conn.catalog.get(use, "trigger").numbers(trigger) if use else trigger

    @_observed
    def _execute(
        self, run_id: str | None, inputs: dict[str, Any], trigger: Any, journal: dict[tuple[str, int], Any]
    ) -> RunResult:
        scope: dict[str, Any] = {
            "inputs": inputs,
            "trigger": self._event(trigger),
            "steps": {},
        }
        results: list[StepResult] = []
        status, error, kind = "succeeded", None, None
        for step in self.wf.steps:
            res = self._step(run_id, step, scope, journal)
            results.append(res)
            scope["steps"][res.id] = {"output": res.output, "status": res.status, "error": res.error}
            if res.status == "failed" and (
                step.get("on_error", "stop") == "stop" or res.kind == "interrupted"
            ):
                kind = res.kind or "permanent"
                status = {"blocked": "blocked", "interrupted": "interrupted"}.get(kind, "failed")
                error = f"step {res.id}: {res.error}"
                break
        if self.store is not None and run_id is not None:
            if kind == "interrupted" and not self.store.leases.holds(run_resource(run_id)):
                pass  # taken over by another process: its journal now, not ours
            else:
                self.store.set_run(run_id, status, error)
        return RunResult(run_id, self.wf.name, status, results, error, self.conn.dry_run, kind)

    def _step(
        self,
        run_id: str | None,
        step: dict[str, Any],
        scope: dict[str, Any],
        journal: dict[tuple[str, int], Any],
    ) -> StepResult:
        sid, action = step["id"], step["use"]
        try:
            if "if" in step and not expressions.evaluate(step["if"], scope):
                self._journal(run_id, sid, SINGLE, action, "skipped")
                return StepResult(sid, action, "skipped")
            if "foreach" in step:
                return self._foreach(run_id, step, scope, journal)
            inputs = expressions.render(step.get("with") or {}, scope)
        except ConnectorError as exc:
            self._journal(run_id, sid, SINGLE, action, "failed", error=str(exc))
            return StepResult(sid, action, "failed", error=str(exc), kind="permanent")
        unit = Unit(sid, SINGLE, action, inputs)
        _, output, error = next(self.executor.run([unit], self._runner(run_id, journal), 1))
        if error is not None:
            return StepResult(sid, action, "failed", error=_message(error), kind=failure_kind(error))
        out, reqs = output
        return StepResult(sid, action, "succeeded", out, requests=reqs)

    def _foreach(
        self,
        run_id: str | None,
        step: dict[str, Any],
        scope: dict[str, Any],
        journal: dict[tuple[str, int], Any],
    ) -> StepResult:
        sid, action = step["id"], step["use"]
        items = expressions.evaluate(step["foreach"], scope)
        if not isinstance(items, list):
            raise InputError(f"foreach {step['foreach']!r} gave {type(items).__name__}, not a list")
        units: list[Unit] = []
        failures: dict[int, str] = {}
        kinds: list[str] = []
        for i, item in enumerate(items):
            try:
                inputs = expressions.render(step.get("with") or {}, {**scope, "item": item, "index": i})
            except ConnectorError as exc:
                failures[i] = str(exc)
                kinds.append("permanent")
                self._journal(run_id, sid, i, action, "failed", error=str(exc))
                continue
            units.append(Unit(sid, i, action, inputs))
        outputs: list[Any] = [None] * len(items)
        requests: list[dict[str, Any]] = []
        bar = _Progress(sid, len(items), self.progress)
        for _ in failures:
            bar.step()
        stop = threading.Event()  # start no further items
        stop_on_error = step.get("on_error", "stop") == "stop"
        runner = self._runner(run_id, journal)
        skipped: set[int] = set()

        def guarded(unit: Unit) -> tuple[Any, list[dict[str, Any]]]:
            if stop.is_set():
                raise _NotStarted
            return runner(unit)

        try:
            for unit, output, failure in self.executor.run(units, guarded, self._concurrency(step)):
                bar.step()
                if isinstance(failure, _NotStarted):
                    skipped.add(unit.item)
                elif failure is not None:
                    failures[unit.item] = _message(failure)
                    kinds.append(failure_kind(failure))
                    if stop_on_error or kinds[-1] == "interrupted":
                        stop.set()  # start no further items; running ones finish
                else:
                    outputs[unit.item], reqs = output
                    requests.extend(reqs)
        finally:
            bar.close()
        item_report = [
            {
                "item": i,
                "status": "failed" if i in failures else "not started" if i in skipped else "succeeded",
                **({"error": failures[i]} if i in failures else {}),
            }
            for i in range(len(items))
        ]
        if failures:
            first = min(failures)
            msg = f"{len(failures)} of {len(items)} items failed; item {first}: {failures[first]}"
            return StepResult(sid, action, "failed", outputs, msg, item_report, requests, worst(kinds))
        return StepResult(sid, action, "succeeded", outputs, None, item_report, requests)

    def _concurrency(self, step: dict[str, Any]) -> int:
        """The step's concurrency, capped by ``WILLO_MAX_CONCURRENCY`` and by cassettes
        (vcrpy records and replays one request at a time)."""
        wanted = int(step.get("concurrency", 1))
        cap = os.environ.get("WILLO_MAX_CONCURRENCY", "")
        if cap.isdigit() and int(cap) > 0:
            wanted = min(wanted, int(cap))
        return 1 if self.conn.serial else wanted

    # ------------------------------------------------------------------ one unit

    def _cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def _journal(self, run_id: str | None, step: str, item: int, action: str, status: str, **kw: Any) -> None:
        if self.store is not None and run_id is not None:
            leases, resource = self.store.leases, run_resource(run_id)
            self.store.mark_unit(
                run_id, step, item, action, status, guard=lambda db: leases.check(resource, db), **kw
            )

    def _runner(
        self, run_id: str | None, journal: dict[tuple[str, int], Any]
    ) -> Callable[[Unit], tuple[Any, list[dict[str, Any]]]]:
        def run(unit: Unit) -> tuple[Any, list[dict[str, Any]]]:
            where = _where(unit.step, unit.item)
            if self._cancelled():
                raise Interrupted(f"{where}: not started: the run was stopped (it resumes later)")
            prev = journal.get((unit.step, unit.item))
            manifest = self.conn.catalog.get(unit.action, "action")
            if prev is not None and prev["status"] == "succeeded":
                return loads(prev["output"]), []
            if prev is not None and prev["status"] in SETTLEABLE:
                kept = loads(prev["inputs"]) or unit.inputs
                landed = self._settle_on_resume(run_id, unit, manifest, prev, kept)
                if landed is not _SEND:
                    self._journal(run_id, unit.step, unit.item, unit.action, "succeeded", output=landed)
                    return landed, []
                unit.inputs = kept  # what was (perhaps) sent is what is sent again
            self._journal(run_id, unit.step, unit.item, unit.action, "sending", inputs=unit.inputs)
            try:
                call = self.conn.call(unit.action, unit.inputs)
            except Exception as exc:
                how = landing(exc, manifest)
                if how == "sent":
                    status, output = "sent", getattr(exc, "output", None)
                else:
                    status, output = ("ambiguous" if how == "ambiguous" else "failed"), None
                self._journal(
                    run_id, unit.step, unit.item, unit.action, status, output=output, error=_message(exc)
                )
                raise
            self._journal(run_id, unit.step, unit.item, unit.action, "succeeded", output=call.output)
            return call.output, call.requests

        return run

    def _settle_on_resume(
        self, run_id: str | None, unit: Unit, manifest: Manifest, prev: Any, kept: dict[str, Any]
    ) -> Any:
        """The output of a unit that may have been sent, found without resending it;
        or ``_SEND`` when it surely did not land (the lookup says so) or the action is
        idempotent. Raises :class:`Blocked` when only an operator can tell."""
        where = _where(unit.step, unit.item)
        status = prev["status"]
        if status == "sent":
            output = loads(prev["output"])
            if output is not None:
                try:
                    self.conn.check_output(manifest, output)
                except ConnectorError as exc:
                    raise Blocked(
                        f"{where}: {unit.action} was sent (Willo answered 2xx) but its output was "
                        f"refused: {exc}; not resent. {_how_to_settle(run_id, unit)}, or allow the "
                        "output (WILLO_SCHEMA_MODE=warn) and resume"
                    ) from None
                return manifest.numbers(output)
        landed = reconcile(self.conn, manifest, kept, where)
        if landed is not None:
            return landed
        has_lookup = manifest.data.get("reconcile") is not None
        if status == "sent" or (not manifest.idempotent and not has_lookup):
            cause = prev["error"] or "the process stopped while sending"
            what = "was sent (Willo answered 2xx)" if status == "sent" else "may have been sent"
            found = "the reconcile lookup does not find it" if has_lookup else "it has no reconcile lookup"
            raise Blocked(
                f"{where}: {unit.action} {what} ({_short(cause)}) and {found}; not resent. "
                f"Check Willo, then {_how_to_settle(run_id, unit)}"
            )
        return _SEND


# ---------------------------------------------------------------------- leases and lookups


def run_resource(run_id: str) -> str:
    return f"run:{run_id}"


def take_run(store: StateStore, run_id: str) -> None:
    """Hold ``run_id``'s lease, or raise :class:`RunBusy` naming the live holder."""
    if store.leases.acquire(run_resource(run_id)):
        return
    import time

    holders = [h for h in store.leases.holders(run_resource(run_id)) if h.owner != store.leases.owner]
    who = holders[0].describe(time.time()) if holders else "another process"
    raise RunBusy(f"run {run_id} is being run by another process ({who}); not resumed")


def run_is_live(store: StateStore, run_id: str) -> bool:
    return bool(store.leases.holders(run_resource(run_id)))


def reconcile(conn: Connector, manifest: Manifest, inputs: dict[str, Any], where: str) -> Any:
    """What the manifest's ``reconcile`` lookup finds for ``inputs``, or None (also
    when the manifest has none)."""
    spec = manifest.data.get("reconcile")
    if spec is None:
        return None
    scope = {"input": inputs}
    lookup = expressions.render(spec["with"], scope, omit_undefined=True)
    match = expressions.render(spec["match"], scope, omit_undefined=True)
    found = conn.call(spec["action"], {**lookup, "all": True}).output
    for item in found.get("results", []):
        if all(str(item.get(k, "")).casefold() == str(v).casefold() for k, v in match.items()):
            log.info("%s: %s had landed; not resent", where, manifest.id)
            return item
    return None


def _where(step: str, item: int) -> str:
    return f"step {step}" + (f" item {item}" if item != SINGLE else "")


def _how_to_settle(run_id: str | None, unit: Unit) -> str:
    item = f" --item {unit.item}" if unit.item != SINGLE else ""
    base = f"willo-connector runs resolve {run_id or 'RUN'} --step {unit.step}{item}"
    return f"settle it with `{base} --sent` (or `--not-sent`) and resume"


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------- operators settle units


SETTLEABLE = ("sending", "ambiguous", "sent")


def settle(
    store: StateStore,
    connector: Callable[[], Connector],
    catalog: Any,
    run_id: str,
    step: str,
    item: int | None,
    *,
    sent: bool,
    output: Any = None,
) -> dict[str, Any]:
    """Record an operator's word on a unit that may have been sent (after checking
    Willo), so that ``resume`` can go on.

    ``sent=False``: it did not land; resume sends it. ``sent=True``: it landed; its
    output is ``output`` when given (checked against the action's output schema),
    else the 2xx body kept when it was sent, else what the action's ``reconcile``
    lookup finds. Returns ``{"step", "item", "status", "output"}``; raises
    :class:`ConnectorError` with a one-line reason when it cannot be settled.
    """
    units = store.units(run_id)
    in_step = {i: row for (s, i), row in units.items() if s == step}
    if not in_step:
        steps = sorted({s for s, _ in units})
        raise InputError(f"run {run_id} has no journaled step {step!r} (steps: {', '.join(steps) or 'none'})")
    if item is None:
        if SINGLE in in_step:
            item = SINGLE
        else:
            open_items = sorted(i for i, row in in_step.items() if row["status"] in SETTLEABLE)
            raise InputError(
                f"step {step} is a foreach: give --item N (items to settle: "
                f"{', '.join(map(str, open_items)) or 'none'})"
            )
    elif item != SINGLE and SINGLE in in_step:
        raise InputError(f"step {step} is not a foreach step: leave out --item")
    row = in_step.get(item)
    where = _where(step, item)
    if row is None:
        raise InputError(f"run {run_id}: {where} was never started; nothing to settle")
    if row["status"] not in SETTLEABLE:
        raise InputError(f"run {run_id}: {where} is {row['status']}; nothing to settle")
    take_run(store, run_id)
    try:
        manifest = catalog.get(row["action"], "action")
        if not sent:
            store.mark_unit(
                run_id,
                step,
                item,
                row["action"],
                "failed",
                error="settled by an operator: not sent (resume sends it)",
            )
            return {"step": step, "item": item, "status": "not sent", "output": None}
        if output is not None:
            problems = schemas.errors(output, manifest.output_schema)
            if problems:
                text = "; ".join(f"{p or '/'}: {m}" for p, m in problems[:5])
                raise InputError(f"--output-json is not a {manifest.id} output: {_short(text, 400)}")
        elif row["status"] == "sent" and row["output"] is not None:
            output = loads(row["output"])
        elif manifest.data.get("reconcile") is not None:
            output = reconcile(connector(), manifest, loads(row["inputs"]) or {}, where)
            if output is None:
                raise InputError(
                    f"{where}: the {manifest.data['reconcile']['action']} lookup does not find it in "
                    f"Willo; if it was sent, give its output with --output-json (as Willo shows it), "
                    "else settle with --not-sent"
                )
        else:
            raise InputError(
                f"{where}: {manifest.id} has no reconcile lookup and no output was kept: give the "
                "resource as Willo shows it with --output-json JSON (it must match the action's "
                "output schema), or settle with --not-sent"
            )
        store.mark_unit(run_id, step, item, row["action"], "succeeded", output=output)
        return {"step": step, "item": item, "status": "sent", "output": output}
    finally:
        store.leases.release(run_resource(run_id))


def _message(exc: BaseException) -> str:
    if isinstance(exc, ConnectorError):
        return str(exc)  # scrubbed by ConnectorError itself
    return redaction.scrub(f"{type(exc).__name__}: {exc}")


def summarize(output: Any) -> str:
    """A short description of a step output for the human report."""
    if isinstance(output, list):
        return f"{len(output)} items"
    if isinstance(output, dict):
        keep = {k: output[k] for k in ("key", "title", "email", "name", "stage", "count") if k in output}
        if "participant" in output and isinstance(output["participant"], dict):
            keep = {"participant": output["participant"].get("key"), "created": output.get("created")}
        return json.dumps(keep or output)[:120]
    return json.dumps(output)[:120] if output is not None else ""


__all__ = [
    "Blocked",
    "Executor",
    "Interrupted",
    "RunBusy",
    "RunResult",
    "Runner",
    "StepResult",
    "Unit",
    "failure_kind",
    "settle",
    "summarize",
]
