"""Running workflows: steps in order, branches (``if``/``then``/``else``, ``switch``),
``foreach`` with bounded concurrency, ``retry`` and ``timeout`` per unit of work,
``on_error``, dry runs, cancellation, and a journal that makes every run resumable.

Every unit of work (an action step, or one foreach item) runs through
:func:`run_unit`, a module-level function of a :class:`UnitContext`, the run id and
the :class:`Unit` (which carries its own retry policy and timeout), so that any
executor can run it: threads here (:mod:`connector.engines.local`), an activity on a
task queue later. A unit is journaled as ``sending`` before its request and
``succeeded``/``failed`` after. A try that failed in a way that may have landed
(connection lost after sending, 5xx, timeout) is, for an action that is not
idempotent, journaled ``ambiguous`` and never blindly resent: the next try, in this
run or on resume, first looks the result up (the manifest's ``reconcile``), exactly
as resuming a unit caught ``sending`` does.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from connector import redaction, secrets
from connector.catalog import schemas
from connector.catalog.types import Manifest
from connector.errors import (
    AmbiguousRequestError,
    CassetteMiss,
    ConfigError,
    ConnectorError,
    InputError,
    NetworkError,
    RateLimited,
    ServerError,
    TimedOut,
    WilloError,
)
from connector.http import step_timeout
from connector.state.store import StateStore, loads
from connector.workflows import expressions
from connector.workflows.model import Workflow, branches, walk_steps
from connector.workflows.progress import Progress
from connector.workflows.runtime import Connector, idempotent_for

log = logging.getLogger(__name__)

SINGLE = -1  # the item index of a step without foreach
#: failure kinds after which a request may have landed
MAYBE_LANDED = ("ambiguous", "server", "timeout")
DEFAULT_ON = ("network", "throttled", "server", "ambiguous", "timeout")
#: journal states of a unit whose request may have landed: look it up before resending
PENDING = ("sending", "ambiguous")


class Interrupted(ConnectorError):
    """The run was asked to stop (Ctrl-C, SIGTERM) before this unit finished."""


class UnitFailed(ConnectorError):
    """A unit that failed for good: ``str()`` says why and after how many tries."""

    def __init__(self, message: str, kind: str, tries: int):
        super().__init__(message)
        self.kind = kind
        self.tries = tries


class _NotStarted(Exception):
    """A foreach item not started: an earlier item failed (on_error: stop) or the run stops."""


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class RetryPolicy:
    """A step's ``retry``: tries in all, exponential backoff with jitter, and which
    failures to retry (see :func:`failure_kind`)."""

    attempts: int = 6
    backoff: float = 1.0
    max_backoff: float = 30.0
    on: tuple[str, ...] = DEFAULT_ON

    @classmethod
    def from_step(cls, spec: Mapping[str, Any] | None) -> RetryPolicy:
        if not spec:
            return cls()
        base = cls()
        return cls(
            attempts=int(spec.get("attempts", base.attempts)),
            backoff=float(spec.get("backoff", base.backoff)),
            max_backoff=float(spec.get("max_backoff", base.max_backoff)),
            on=tuple(spec.get("on", base.on)),
        )

    def allows(self, kind: str) -> bool:
        return kind in self.on or ("any" in self.on and kind != "fatal")

    def delay(self, failed_try: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait after try ``failed_try`` (1-based): half fixed, half random."""
        top = min(self.max_backoff, self.backoff * 2 ** (failed_try - 1))
        wait = top / 2 + rng.random() * top / 2
        return max(wait, retry_after) if retry_after else wait


def failure_kind(exc: BaseException) -> str:
    """``network`` (never sent), ``throttled`` (429), ``server`` (5xx), ``ambiguous``
    (lost after sending), ``timeout`` (the step's timeout), ``rejected`` (another
    error answer) or ``fatal`` (bad input, a bug: retrying cannot help)."""
    if isinstance(exc, TimedOut):
        return "timeout"
    if isinstance(exc, AmbiguousRequestError):
        return "ambiguous"
    if isinstance(exc, RateLimited):
        return "throttled"
    if isinstance(exc, ServerError):
        return "server"
    if isinstance(exc, CassetteMiss):
        return "fatal"
    if isinstance(exc, NetworkError):
        return "network"
    if isinstance(exc, WilloError):
        return "rejected"
    return "fatal"


# --------------------------------------------------------------------------- units


@dataclass
class Unit:
    """One unit of work: an action call with rendered inputs, and how to retry it."""

    step: str
    item: int
    action: str
    inputs: dict[str, Any]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    label: str = ""  # how messages name it: "item 3", "people.csv:5"


@dataclass
class UnitResult:
    output: Any
    requests: list[dict[str, Any]] = field(default_factory=list)
    tries: int = 1


@dataclass
class UnitContext:
    """What running a unit needs besides the unit: the connector, the store, the
    journal of the run being resumed, and the run's stop signal."""

    conn: Connector
    store: StateStore | None = None
    journal: Mapping[tuple[str, int], Any] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    rng: random.Random = field(default_factory=random.Random)
    #: waits between tries; returns True if the run was asked to stop meanwhile
    wait: Callable[[float], bool] | None = None

    def sleep(self, seconds: float) -> bool:
        return (self.wait or self.cancel.wait)(seconds)


def _where(unit: Unit) -> str:
    return f"step {unit.step}" + (f" {unit.label or f'item {unit.item}'}" if unit.item != SINGLE else "")


def _journal(ctx: UnitContext, run_id: str | None, unit: Unit, status: str, **kw: Any) -> None:
    if ctx.store is not None and run_id is not None:
        ctx.store.mark_unit(run_id, unit.step, unit.item, unit.action, status, **kw)


def _journaled_inputs(prev: Any, fresh: dict[str, Any]) -> dict[str, Any]:
    """The inputs a unit caught sending was sent with: the journal's copy, unless it
    equals the fresh rendering with secrets scrubbed (then the fresh one, secrets in)."""
    kept = loads(prev["inputs"]) if prev["inputs"] else None
    if kept is None or redaction.scrub_value(fresh) == kept:
        return fresh
    return dict(kept)


def run_unit(ctx: UnitContext, run_id: str | None, unit: Unit) -> UnitResult:
    """Run one unit with its retry policy; raise :class:`UnitFailed` (or
    :class:`Interrupted`) when it fails for good."""
    prev = ctx.journal.get((unit.step, unit.item))
    if prev is not None and prev["status"] == "succeeded":
        return UnitResult(loads(prev["output"]), [], 0)
    manifest = ctx.conn.catalog.get(unit.action, "action")
    pending = prev is not None and prev["status"] in PENDING
    inputs = _journaled_inputs(prev, unit.inputs) if pending else unit.inputs
    idempotent = idempotent_for(manifest, inputs)
    tries = 0
    while True:
        tries += 1
        try:
            output, requests = _attempt(ctx, run_id, unit, manifest, inputs, pending, tries)
            return UnitResult(output, requests, tries)
        except Exception as exc:
            kind = failure_kind(exc)
            pending = kind in MAYBE_LANDED and not idempotent
            message = _message(exc)
            note = _why_not_again(unit, manifest, kind, tries, pending, ctx.cancel)
            if note is not None:
                message += f" (after {tries} tries)" if tries > 1 else ""
                message += f"; {note}" if note else ""
                _journal(ctx, run_id, unit, "ambiguous" if pending else "failed", error=message, tries=tries)
                raise UnitFailed(message, kind, tries) from None
            wait = unit.retry.delay(tries, ctx.rng, getattr(exc, "retry_after", None))
            log.info(
                "%s: %s; try %d of %d in %.1fs", _where(unit), message, tries + 1, unit.retry.attempts, wait
            )
            _journal(ctx, run_id, unit, "ambiguous" if pending else "failed", error=message, tries=tries)
            if ctx.sleep(wait):
                raise Interrupted(f"{_where(unit)}: interrupted while waiting to try again") from None


def _why_not_again(
    unit: Unit, manifest: Manifest, kind: str, tries: int, pending: bool, cancel: threading.Event
) -> str | None:
    """None if the unit may be tried again; else a note for the error ('' for none)."""
    if not unit.retry.allows(kind) or tries >= unit.retry.attempts:
        return ""
    if cancel.is_set():
        return "not tried again: the run is stopping"
    if pending and manifest.data.get("reconcile") is None:
        return (
            f"not tried again: it may have landed, and {manifest.id} is not idempotent and has no "
            "reconcile lookup"
        )
    return None


def _attempt(
    ctx: UnitContext,
    run_id: str | None,
    unit: Unit,
    manifest: Manifest,
    inputs: dict[str, Any],
    reconcile_first: bool,
    tries: int,
) -> tuple[Any, list[dict[str, Any]]]:
    with step_timeout.within(unit.timeout):
        if reconcile_first:
            landed = reconcile(ctx.conn, manifest, unit, inputs)
            if landed is not None:
                _journal(ctx, run_id, unit, "succeeded", output=landed, tries=tries)
                return landed, []
        _journal(ctx, run_id, unit, "sending", inputs=redaction.scrub_value(inputs), tries=tries)
        call = ctx.conn.call(unit.action, inputs)
    _journal(ctx, run_id, unit, "succeeded", output=call.output, tries=tries)
    return call.output, call.requests


def reconcile(conn: Connector, manifest: Manifest, unit: Unit, inputs: dict[str, Any]) -> Any:
    """For a unit whose request may have landed: its result if it did, None if it did
    not (or the action is idempotent and may simply be sent again). Raises when it
    cannot be known and resending is unsafe."""
    spec = manifest.data.get("reconcile")
    if spec is None:
        if idempotent_for(manifest, inputs):
            return None
        raise ConnectorError(
            f"{_where(unit)}: interrupted while sending {unit.action}, which is not idempotent and "
            "has no reconcile lookup; check by hand before running it again"
        )
    scope = {"input": inputs}
    lookup = expressions.render(spec["with"], scope, omit_undefined=True)
    match = expressions.render(spec["match"], scope, omit_undefined=True)
    found = conn.call(spec["action"], {**lookup, "all": True}).output
    for item in found.get("results", []):
        if all(str(item.get(k, "")).casefold() == str(v).casefold() for k, v in match.items()):
            log.info("%s: the earlier %s had landed; not resent", _where(unit), unit.action)
            return item
    return None


def start_unit(ctx: UnitContext, run_id: str | None, stop: threading.Event | None, unit: Unit) -> UnitResult:
    """:func:`run_unit`, unless the foreach or the run is stopping."""
    if ctx.cancel.is_set() or (stop is not None and stop.is_set()):
        raise _NotStarted
    return run_unit(ctx, run_id, unit)


# --------------------------------------------------------------------------- results


@dataclass
class StepResult:
    id: str
    action: str
    status: str  # succeeded | failed | skipped | interrupted
    output: Any = None
    error: str | None = None
    items: list[dict[str, Any]] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    retries: int = 0

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
        if self.retries:
            d["retries"] = self.retries
        return d


@dataclass
class RunResult:
    run_id: str | None
    workflow: str
    status: str  # succeeded | failed | interrupted
    steps: list[StepResult]
    error: str | None = None
    dry_run: bool = False
    parent: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "dry_run": self.dry_run,
            "error": self.error,
            "steps": [s.as_dict() for s in self.steps],
        }
        if self.parent:
            d["rerun_of"] = self.parent
        return d


class Executor(Protocol):
    """The seam every unit of work runs through: yields ``(unit, result, error)`` as
    each unit finishes, at most ``concurrency`` at a time. ``connector.engines.local``
    runs them on in-process threads. ``fn`` is :func:`run_unit` (or
    :func:`start_unit`) with its context and run id bound."""

    def run(
        self, units: list[Unit], fn: Callable[[Unit], Any], concurrency: int
    ) -> Iterator[tuple[Unit, Any, BaseException | None]]: ...


# --------------------------------------------------------------------------- inputs


def prepare_inputs(
    workflow: Workflow, inputs: Mapping[str, Any], origins: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The inputs with the schema's defaults filled in, validated; a problem in a row
    that came from a CSV file is named by its file and line."""
    schema = workflow.data.get("inputs")
    if not schema:
        return dict(inputs)
    values = schemas.apply_defaults(dict(inputs), schema)
    problems = schemas.errors(values, schema)
    if problems:
        text = "; ".join(_input_problem(ptr, msg, origins or {}) for ptr, msg in problems)
        raise InputError(f"{workflow.path}: inputs: {text}")
    return dict(values)


def _input_problem(ptr: str, msg: str, origins: Mapping[str, Any]) -> str:
    parts = ptr.split("/")
    if len(parts) >= 3 and parts[1] in origins and parts[2].isdigit():
        origin = origins[parts[1]]
        index = int(parts[2])
        if index < len(origin["lines"]):
            rest = "/" + "/".join(parts[3:]) if len(parts) > 3 else "/"
            return f"{origin['file']}:{origin['lines'][index]}: {rest}: {msg}"
    return f"{ptr or '/'}: {msg}"


def check_workflow_inputs(workflow: Workflow, inputs: Mapping[str, Any]) -> None:
    prepare_inputs(workflow, inputs)


def check_event(workflow: Workflow, connector: Connector, event: Any, label: str) -> None:
    trig = workflow.trigger
    if not trig:
        return
    manifest = connector.catalog.get(trig["use"], "trigger")
    problems = schemas.errors(event, manifest.output_schema)
    if problems:
        text = "; ".join(f"{p or '/'}: {m}" for p, m in problems)
        raise InputError(f"{label}: not a {manifest.id} event: {text}")


def secret_scope(workflow: Workflow) -> dict[str, str]:
    """The values of the secrets the workflow reads (each registered for redaction)."""
    found: dict[str, str] = {}
    for name in sorted(workflow.secret_names):
        value = secrets.lookup(name)
        if value is None:
            raise ConfigError(f"{workflow.path}: unknown secret {name!r} ({secrets.hint(name)})")
        found[name] = value
    return found


def item_labels(step: Mapping[str, Any], origins: Mapping[str, Any], n: int) -> list[str]:
    """How each foreach item is named in messages: its CSV file and line when the
    foreach is exactly ``{{ inputs.NAME }}`` of an input read from a CSV, else ``item N``."""
    expr = expressions.single_expression(str(step.get("foreach", ""))) or ""
    name = expr[len("inputs.") :] if expr.startswith("inputs.") else ""
    origin = origins.get(name)
    if origin and len(origin.get("lines", [])) == n:
        return [f"{origin['file']}:{line}" for line in origin["lines"]]
    return [f"item {i}" for i in range(n)]


def _case_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


# --------------------------------------------------------------------------- the runner


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
        on_start: Callable[[str], None] | None = None,
        wait: Callable[[float], bool] | None = None,
    ):
        self.conn = connector
        self.wf = workflow
        self.store = None if connector.dry_run else store
        self.progress = progress
        self.executor = executor
        self.cancel = cancel or threading.Event()
        self.on_start = on_start
        self.wait = wait
        self.origins: dict[str, Any] = {}

    # ------------------------------------------------------------------ entry points

    def start(
        self,
        inputs: Mapping[str, Any],
        trigger: Any = None,
        event_id: int | None = None,
        *,
        origins: Mapping[str, Any] | None = None,
        parent: str | None = None,
        reuse: bool = False,
    ) -> RunResult:
        """A new run. ``origins`` says which inputs came from CSV files (file, lines);
        ``parent`` is the run this one repeats, and with ``reuse`` what succeeded
        there is reused (units that may have landed are looked up first)."""
        self.origins = dict(origins or {})
        values = prepare_inputs(self.wf, inputs, self.origins)
        run_id = None
        journal: dict[tuple[str, int], Any] = {}
        if self.store is not None:
            settings: dict[str, Any] = {"pid": os.getpid(), "base_url": self.conn.client.settings.base_url}
            if self.origins:
                settings["origins"] = self.origins
            run_id = self.store.new_run(
                self.wf.path, self.wf.name, self.wf.text, values, trigger, settings, event_id, parent=parent
            )
            if parent is not None and reuse:
                self.store.copy_reusable_units(parent, run_id)
                journal = self.store.units(run_id)
        if run_id is not None and self.on_start is not None:
            self.on_start(run_id)
        return self._execute(run_id, values, trigger, journal, parent)

    def resume(self, run_id: str, inputs: Any, trigger: Any) -> RunResult:
        assert self.store is not None
        row = self.store.run(run_id)
        if row is not None:
            self.origins = dict(json.loads(row["settings"] or "{}").get("origins") or {})
            inputs = inputs or loads(row["inputs"]) or {}
        journal = self.store.units(run_id)
        self.store.restart_run(run_id)
        if self.on_start is not None:
            self.on_start(run_id)
        return self._execute(run_id, inputs, trigger, journal, row["parent"] if row is not None else None)

    # ------------------------------------------------------------------ execution

    def _event(self, trigger: Any) -> Any:
        """The trigger event as expressions see it: decimals as numbers."""
        if trigger is None:
            return {}
        use = (self.wf.trigger or {}).get("use")
        return self.conn.catalog.get(use, "trigger").numbers(trigger) if use else trigger

    def _execute(
        self,
        run_id: str | None,
        inputs: dict[str, Any],
        trigger: Any,
        journal: dict[tuple[str, int], Any],
        parent: str | None,
    ) -> RunResult:
        ctx = UnitContext(self.conn, self.store, journal, self.cancel, wait=self.wait)
        scope: dict[str, Any] = {
            "inputs": inputs,
            "trigger": self._event(trigger),
            "steps": {},
            "secrets": secret_scope(self.wf),
        }
        results: list[StepResult] = []
        status, error = self._block(ctx, run_id, self.wf.steps, scope, results)
        status = "succeeded" if status == "ok" else status
        if status == "interrupted":
            error = "interrupted before it finished"
        if self.store is not None and run_id is not None:
            self.store.set_run(run_id, status, error)
        return RunResult(run_id, self.wf.name, status, results, error, self.conn.dry_run, parent)

    def _block(
        self,
        ctx: UnitContext,
        run_id: str | None,
        steps: list[dict[str, Any]],
        scope: dict[str, Any],
        results: list[StepResult],
    ) -> tuple[str, str | None]:
        """Run a list of steps: ``("ok" | "failed" | "interrupted", error)``."""
        for step in steps:
            if self.cancel.is_set():
                return "interrupted", None
            if "use" in step:
                res = self._action_step(ctx, run_id, step, scope)
                taken = "else" if res.status == "skipped" else None
            else:
                res, taken = self._branch_step(ctx, run_id, step, scope)
            results.append(res)
            scope["steps"][res.id] = {"output": res.output, "status": res.status, "error": res.error}
            if res.status == "interrupted":
                return "interrupted", None
            if res.status == "failed" and step.get("on_error", "stop") == "stop":
                return "failed", f"step {res.id}: {res.error}"
            for label, sub, _ in branches(step):
                if label == taken and isinstance(sub, list):
                    outcome = self._block(ctx, run_id, sub, scope, results)
                    if outcome[0] != "ok":
                        return outcome
                else:
                    self._skip(sub, scope, results)
        return "ok", None

    def _skip(self, steps: Any, scope: dict[str, Any], results: list[StepResult]) -> None:
        """Steps of a branch not taken: in scope and in the report as skipped."""
        for step, _ptr, _path in walk_steps(steps):
            kind = step.get("use") or ("switch" if "switch" in step else "if")
            scope["steps"][step["id"]] = {"output": None, "status": "skipped", "error": None}
            results.append(StepResult(step["id"], kind, "skipped"))

    def _branch_step(
        self, ctx: UnitContext, run_id: str | None, step: dict[str, Any], scope: dict[str, Any]
    ) -> tuple[StepResult, str | None]:
        """Decide which branch runs (journaled, so a resume takes the same one)."""
        sid = step["id"]
        kind = "switch" if "switch" in step else "if"
        unit = Unit(sid, SINGLE, kind, {})
        prev = ctx.journal.get((sid, SINGLE))
        try:
            if prev is not None and prev["status"] == "succeeded":
                label, public = loads(prev["inputs"])
            else:
                label, public = self._choose(step, scope)
                _journal(ctx, run_id, unit, "succeeded", inputs=[label, public], output={"branch": public})
        except ConnectorError as exc:
            _journal(ctx, run_id, unit, "failed", error=str(exc))
            return StepResult(sid, kind, "failed", error=str(exc)), None
        return StepResult(sid, kind, "succeeded", {"branch": public}), label

    @staticmethod
    def _choose(step: dict[str, Any], scope: dict[str, Any]) -> tuple[str | None, str | None]:
        """``(branch label, branch name shown as output)``."""
        if "switch" in step:
            value = _case_text(expressions.evaluate(step["switch"], scope))
            for key in step.get("cases") or {}:
                if _case_text(key) == value:
                    return f"case {key}", str(key)
            return ("default", "default") if "default" in step else (None, None)
        if expressions.evaluate(step["if"], scope):
            return "then", "then"
        return ("else", "else") if "else" in step else (None, None)

    def _action_step(
        self, ctx: UnitContext, run_id: str | None, step: dict[str, Any], scope: dict[str, Any]
    ) -> StepResult:
        sid, action = step["id"], step["use"]
        unit = Unit(sid, SINGLE, action, {}, RetryPolicy.from_step(step.get("retry")), step.get("timeout"))
        try:
            if "if" in step and not expressions.evaluate(step["if"], scope):
                _journal(ctx, run_id, unit, "skipped")
                return StepResult(sid, action, "skipped")
            if "foreach" in step:
                return self._foreach(ctx, run_id, step, scope, unit)
            unit.inputs = expressions.render(step.get("with") or {}, scope)
        except ConnectorError as exc:
            _journal(ctx, run_id, unit, "failed", error=str(exc))
            return StepResult(sid, action, "failed", error=str(exc))
        fn = functools.partial(run_unit, ctx, run_id)
        _, result, error = next(self.executor.run([unit], fn, 1))
        if isinstance(error, Interrupted):
            return StepResult(sid, action, "interrupted", error=str(error))
        if error is not None:
            return StepResult(sid, action, "failed", error=_message(error))
        return StepResult(
            sid, action, "succeeded", result.output, requests=result.requests, retries=result.tries - 1
        )

    def _foreach(
        self, ctx: UnitContext, run_id: str | None, step: dict[str, Any], scope: dict[str, Any], base: Unit
    ) -> StepResult:
        sid, action = step["id"], step["use"]
        items = expressions.evaluate(step["foreach"], scope)
        if not isinstance(items, list):
            raise InputError(f"foreach {step['foreach']!r} gave {type(items).__name__}, not a list")
        labels = item_labels(step, self.origins, len(items))
        units: list[Unit] = []
        failures: dict[int, str] = {}
        for i, item in enumerate(items):
            unit = Unit(sid, i, action, {}, base.retry, base.timeout, labels[i])
            try:
                unit.inputs = expressions.render(step.get("with") or {}, {**scope, "item": item, "index": i})
            except ConnectorError as exc:
                failures[i] = str(exc)
                _journal(ctx, run_id, unit, "failed", error=str(exc))
                continue
            units.append(unit)
        outputs: list[Any] = [None] * len(items)
        tries: dict[int, int] = {}
        requests: list[dict[str, Any]] = []
        bar = self._progress(sid, len(items), self._concurrency(step))
        for _ in failures:
            bar.advance(failed=True) if bar else None
        stop = threading.Event() if step.get("on_error", "stop") == "stop" else None
        fn = functools.partial(start_unit, ctx, run_id, stop)
        skipped: set[int] = set()
        try:
            for unit, result, failure in self.executor.run(units, fn, self._concurrency(step)):
                if isinstance(failure, (_NotStarted, Interrupted)):
                    skipped.add(unit.item)
                elif failure is not None:
                    failures[unit.item] = _message(failure)
                    tries[unit.item] = getattr(failure, "tries", 1)
                    if stop is not None:
                        stop.set()  # start no further items; running ones finish
                else:
                    outputs[unit.item] = result.output
                    tries[unit.item] = result.tries
                    requests.extend(result.requests)
                if bar is not None and not isinstance(failure, _NotStarted):
                    bar.advance(failed=failure is not None, retries=max(0, tries.get(unit.item, 1) - 1))
        finally:
            if bar is not None:
                bar.close()
        report = [self._item_report(i, labels[i], failures, skipped, tries) for i in range(len(items))]
        retries = sum(max(0, n - 1) for n in tries.values())
        if failures:
            first = min(failures)
            msg = f"{len(failures)} of {len(items)} items failed; {labels[first]}: {failures[first]}"
            return StepResult(sid, action, "failed", outputs, msg, report, requests, retries)
        if skipped and self.cancel.is_set():
            msg = f"{len(skipped)} of {len(items)} items not run: interrupted"
            return StepResult(sid, action, "interrupted", outputs, msg, report, requests, retries)
        return StepResult(sid, action, "succeeded", outputs, None, report, requests, retries)

    @staticmethod
    def _item_report(
        i: int, label: str, failures: dict[int, str], skipped: set[int], tries: dict[int, int]
    ) -> dict[str, Any]:
        status = "failed" if i in failures else "not started" if i in skipped else "succeeded"
        entry: dict[str, Any] = {"item": i, "status": status}
        if not label.startswith("item "):
            entry["source"] = label
        if i in failures:
            entry["error"] = failures[i]
        if tries.get(i, 1) > 1:
            entry["tries"] = tries[i]
        return entry

    def _progress(self, label: str, total: int, concurrency: int = 1) -> Progress | None:
        if not self.progress or total <= 1:
            return None
        client = self.conn.client if not self.conn.dry_run else None
        return Progress(
            label,
            total,
            pacer=client.pacer if client is not None else None,
            sent=(lambda: client.requests_sent) if client is not None else None,
            interval=float(os.environ.get("WILLO_PROGRESS_INTERVAL") or 5),
            concurrency=concurrency,
        )

    def _concurrency(self, step: dict[str, Any]) -> int:
        """The step's concurrency, capped by ``WILLO_MAX_CONCURRENCY`` and by cassettes
        (vcrpy records and replays one request at a time)."""
        wanted = int(step.get("concurrency", 1))
        cap = os.environ.get("WILLO_MAX_CONCURRENCY", "")
        if cap.isdigit() and int(cap) > 0:
            wanted = min(wanted, int(cap))
        return 1 if self.conn.serial else wanted


def _message(exc: BaseException) -> str:
    if isinstance(exc, ConnectorError):
        return str(exc)  # scrubbed by ConnectorError itself
    return redaction.scrub(f"{type(exc).__name__}: {exc}")


def summarize(output: Any) -> str:
    """A short description of a step output for the human report."""
    if isinstance(output, list):
        return f"{len(output)} items"
    if isinstance(output, dict):
        keep = {
            k: output[k]
            for k in ("key", "title", "email", "name", "stage", "count", "status", "branch")
            if k in output
        }
        if "participant" in output and isinstance(output["participant"], dict):
            keep = {"participant": output["participant"].get("key"), "created": output.get("created")}
        return redaction.scrub(json.dumps(keep or output)[:120])
    return redaction.scrub(json.dumps(output)[:120]) if output is not None else ""


__all__ = [
    "Executor",
    "RetryPolicy",
    "RunResult",
    "Runner",
    "StepResult",
    "Unit",
    "UnitContext",
    "run_unit",
    "summarize",
]
