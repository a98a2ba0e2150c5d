"""Running workflows: steps in order, ``if``, ``foreach`` with bounded concurrency,
``on_error``, dry runs, and a journal that makes every run resumable.

Every unit of work (a step, or one foreach item) is journaled in the state store
as ``sending`` before its request and ``succeeded``/``failed`` after. Resuming a
run reuses what succeeded and, for a unit caught ``sending``, first looks the
result up (the manifest's ``reconcile``) or resends only if the action is
idempotent. Units run through :class:`Executor`, the one seam a distributed
executor would replace.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from connector import redaction
from connector.catalog import schemas
from connector.errors import ConnectorError, InputError
from connector.state.store import StateStore, loads
from connector.workflows import expressions
from connector.workflows.model import Workflow
from connector.workflows.runtime import Connector

log = logging.getLogger(__name__)

SINGLE = -1  # the item index of a step without foreach


class _NotStarted(Exception):
    """A foreach item not started because an earlier item failed (on_error: stop)."""


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "dry_run": self.dry_run,
            "error": self.error,
            "steps": [s.as_dict() for s in self.steps],
        }


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
    ):
        self.conn = connector
        self.wf = workflow
        self.store = None if connector.dry_run else store
        self.progress = progress
        self.executor = executor

    # ------------------------------------------------------------------ entry points

    def start(self, inputs: Mapping[str, Any], trigger: Any = None, event_id: int | None = None) -> RunResult:
        check_workflow_inputs(self.wf, inputs)
        run_id = None
        if self.store is not None:
            settings = {"pid": os.getpid(), "base_url": self.conn.client.settings.base_url}
            run_id = self.store.new_run(
                self.wf.path, self.wf.name, self.wf.text, dict(inputs), trigger, settings, event_id
            )
        return self._execute(run_id, dict(inputs), trigger, {})

    def resume(self, run_id: str, inputs: Any, trigger: Any) -> RunResult:
        assert self.store is not None
        journal = self.store.units(run_id)
        self.store.restart_run(run_id)
        return self._execute(run_id, inputs, trigger, journal)

    # ------------------------------------------------------------------ execution

    def _event(self, trigger: Any) -> Any:
        """The trigger event as expressions see it: decimals as numbers."""
        if trigger is None:
            return {}
        use = (self.wf.trigger or {}).get("use")
        return self.conn.catalog.get(use, "trigger").numbers(trigger) if use else trigger

    def _execute(
        self, run_id: str | None, inputs: dict[str, Any], trigger: Any, journal: dict[tuple[str, int], Any]
    ) -> RunResult:
        scope: dict[str, Any] = {
            "inputs": inputs,
            "trigger": self._event(trigger),
            "steps": {},
        }
        results: list[StepResult] = []
        status, error = "succeeded", None
        for step in self.wf.steps:
            res = self._step(run_id, step, scope, journal)
            results.append(res)
            scope["steps"][res.id] = {"output": res.output, "status": res.status, "error": res.error}
            if res.status == "failed" and step.get("on_error", "stop") == "stop":
                status, error = "failed", f"step {res.id}: {res.error}"
                break
        if self.store is not None and run_id is not None:
            self.store.set_run(run_id, status, error)
        return RunResult(run_id, self.wf.name, status, results, error, self.conn.dry_run)

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
            return StepResult(sid, action, "failed", error=str(exc))
        unit = Unit(sid, SINGLE, action, inputs)
        _, output, error = next(self.executor.run([unit], self._runner(run_id, journal), 1))
        if error is not None:
            return StepResult(sid, action, "failed", error=_message(error))
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
        for i, item in enumerate(items):
            try:
                inputs = expressions.render(step.get("with") or {}, {**scope, "item": item, "index": i})
            except ConnectorError as exc:
                failures[i] = str(exc)
                self._journal(run_id, sid, i, action, "failed", error=str(exc))
                continue
            units.append(Unit(sid, i, action, inputs))
        outputs: list[Any] = [None] * len(items)
        requests: list[dict[str, Any]] = []
        bar = _Progress(sid, len(items), self.progress)
        for _ in failures:
            bar.step()
        stop = threading.Event() if step.get("on_error", "stop") == "stop" else None
        runner = self._runner(run_id, journal)
        skipped: set[int] = set()

        def guarded(unit: Unit) -> tuple[Any, list[dict[str, Any]]]:
            if stop is not None and stop.is_set():
                raise _NotStarted
            return runner(unit)

        try:
            for unit, output, failure in self.executor.run(units, guarded, self._concurrency(step)):
                bar.step()
                if isinstance(failure, _NotStarted):
                    skipped.add(unit.item)
                elif failure is not None:
                    failures[unit.item] = _message(failure)
                    if stop is not None:
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
            return StepResult(sid, action, "failed", outputs, msg, item_report, requests)
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

    def _journal(self, run_id: str | None, step: str, item: int, action: str, status: str, **kw: Any) -> None:
        if self.store is not None and run_id is not None:
            self.store.mark_unit(run_id, step, item, action, status, **kw)

    def _runner(
        self, run_id: str | None, journal: dict[tuple[str, int], Any]
    ) -> Callable[[Unit], tuple[Any, list[dict[str, Any]]]]:
        def run(unit: Unit) -> tuple[Any, list[dict[str, Any]]]:
            prev = journal.get((unit.step, unit.item))
            if prev is not None and prev["status"] == "succeeded":
                return loads(prev["output"]), []
            if prev is not None and prev["status"] == "sending":
                landed = self._reconcile(unit, loads(prev["inputs"]) or unit.inputs)
                if landed is not None:
                    self._journal(run_id, unit.step, unit.item, unit.action, "succeeded", output=landed)
                    return landed, []
                unit.inputs = loads(prev["inputs"]) or unit.inputs
            self._journal(run_id, unit.step, unit.item, unit.action, "sending", inputs=unit.inputs)
            try:
                call = self.conn.call(unit.action, unit.inputs)
            except Exception as exc:
                self._journal(run_id, unit.step, unit.item, unit.action, "failed", error=_message(exc))
                raise
            self._journal(run_id, unit.step, unit.item, unit.action, "succeeded", output=call.output)
            return call.output, call.requests

        return run

    def _reconcile(self, unit: Unit, inputs: dict[str, Any]) -> Any:
        """For a unit interrupted while sending: its result if it landed, else None.

        Raises when it cannot be known and resending is unsafe.
        """
        manifest = self.conn.catalog.get(unit.action, "action")
        spec = manifest.data.get("reconcile")
        where = f"step {unit.step}" + (f" item {unit.item}" if unit.item != SINGLE else "")
        if spec is None:
            if manifest.idempotent:
                return None  # safe to send again
            raise ConnectorError(
                f"{where}: interrupted while sending {unit.action}, which is not idempotent and "
                "has no reconcile lookup; check Willo by hand before running it again"
            )
        scope = {"input": inputs}
        lookup = expressions.render(spec["with"], scope, omit_undefined=True)
        match = expressions.render(spec["match"], scope, omit_undefined=True)
        found = self.conn.call(spec["action"], {**lookup, "all": True}).output
        for item in found.get("results", []):
            if all(str(item.get(k, "")).casefold() == str(v).casefold() for k, v in match.items()):
                log.info("%s: the interrupted %s had landed; not resent", where, unit.action)
                return item
        return None


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


__all__ = ["Executor", "RunResult", "Runner", "StepResult", "Unit", "summarize"]
