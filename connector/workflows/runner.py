"""Running workflows: steps in order, branches (``if``/``then``/``else``, ``switch``),
``foreach`` with bounded concurrency, ``retry`` and ``timeout`` per unit of work,
``on_error``, dry runs, cancellation, and a journal that makes every run resumable.

Every unit of work (an action step, or one foreach item) runs through
:func:`run_unit`, a module-level function of a :class:`UnitContext`, the run id and
the :class:`Unit` (which carries its own retry policy and timeout), so that any
executor can run it: threads here (:mod:`connector.engines.local`), an activity on a
task queue later. A unit is journaled as ``sending`` before each request, then as one
of:

- ``succeeded`` (with its output);
- ``failed``: it did not land (refused, never reached Willo) and may be sent again;
- ``ambiguous``: a try failed after the request may have landed (connection lost
  after sending, a 5xx other than 503) and the action is not idempotent;
- ``sent``: Willo answered 2xx, then the unit failed (e.g. strict schema drift); the
  2xx body is kept.

A unit that may have landed (``sending``, ``ambiguous``, ``sent``) is never sent
blindly again, whether the next try comes from the step's ``retry`` within the run
or from ``resume``, a ``rerun --failed`` or the dispatcher's event retry: the same
code (:func:`settle_pending`) first completes it from the kept 2xx body or looks it up
(the manifest's ``reconcile``), resends it only if the lookup says it did not land or
the action is idempotent, and otherwise leaves it **blocked** until an operator
settles it (:func:`settle`, ``willo-connector runs resolve``). A run is worked on by
one live process at a time: it holds the run's lease (:mod:`connector.state.leases`)
and every journal write is fenced by it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from connector import redaction, secrets, telemetry
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
from connector.state.leases import LeaseLost
from connector.state.store import StateStore, loads
from connector.workflows import expressions
from connector.workflows.model import Workflow, branches, walk_steps
from connector.workflows.progress import Progress
from connector.workflows.runtime import Connector, idempotent_for

log = logging.getLogger(__name__)

SINGLE = -1  # the item index of a step without foreach
DEFAULT_ON = ("network", "throttled", "server", "ambiguous", "timeout")
#: journal states of a unit whose request may have landed: settled before any resend
SETTLEABLE = ("sending", "ambiguous", "sent")


class Interrupted(ConnectorError):
    """The run was asked to stop (Ctrl-C, SIGTERM, a listener shutting down) before
    this unit finished; it is journaled as it stands and resumes later."""


class Blocked(ConnectorError):
    """A unit that may have been sent and that no lookup can settle: it is never
    resent blindly; an operator settles it (``willo-connector runs resolve``)."""


class RunBusy(ConnectorError):
    """Another live process holds the run's lease."""


class UnitFailed(ConnectorError):
    """A unit that failed for good: ``str()`` says why and after how many tries;
    ``kind`` is one of :data:`KINDS`, ``reason`` the :func:`retry_kind` of the last try."""

    def __init__(self, message: str, kind: str, tries: int, reason: str = "fatal"):
        super().__init__(message)
        self.kind = kind
        self.tries = tries
        self.reason = reason


class _NotStarted(Exception):
    """A foreach item not started: an earlier item failed (on_error: stop) or the run stops."""


STOPPING = "not tried again: the run is stopping"
_SEND = object()  # settle_pending: the unit surely did not land (or may be resent): send it


# --------------------------------------------------------------------------- kinds of failure

#: Why a unit, a step or a run failed, from the most to the least binding:
#: ``blocked`` needs an operator, ``permanent`` cannot succeed as it is (a 4xx other
#: than 429, a validation error), ``interrupted`` was stopped on purpose, and
#: ``transient`` may succeed later (429, 5xx, Willo unreachable). The dispatcher
#: retries or parks an event by it.
KINDS = ("blocked", "permanent", "interrupted", "transient")


def failure_kind(exc: BaseException) -> str:
    """The kind (see :data:`KINDS`) of one failure."""
    if isinstance(exc, UnitFailed):
        return exc.kind
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


def worst(kinds: Iterable[str]) -> str | None:
    found = set(kinds)
    return next((k for k in KINDS if k in found), None)


def retry_kind(exc: BaseException) -> str:
    """What a step's ``retry.on`` names: ``network`` (never sent), ``throttled`` (429),
    ``server`` (5xx), ``ambiguous`` (lost after sending), ``timeout`` (the step's
    timeout), ``rejected`` (another error answer) or ``fatal`` (bad input, a bug:
    retrying cannot help)."""
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


def landing(exc: BaseException, idempotent: bool) -> str:
    """Whether a failed try's request landed: ``sent`` (a 2xx came back), ``ambiguous``
    (it may have) or ``not_sent``. For an idempotent call it does not matter: a resend
    is safe, so anything but ``sent`` counts as ``not_sent``."""
    if getattr(exc, "sent", False):
        return "sent"
    status = getattr(exc, "status", None)
    if isinstance(exc, WilloError) and status is not None and (200 <= status < 300 or status == 303):
        return "sent"  # a 2xx (or See Other) whose body could not be used
    if idempotent:
        return "not_sent"
    if isinstance(exc, AmbiguousRequestError):
        return "ambiguous"
    if isinstance(exc, WilloError):
        # a 5xx may come after the work was done; 503 says the server did not take it
        return "ambiguous" if status is not None and status >= 500 and status != 503 else "not_sent"
    if isinstance(exc, ConnectorError):
        return "not_sent"  # refused before sending (inputs, settings, the step's timeout)
    return "ambiguous"  # an unexpected failure of a non-idempotent action: assume the worst


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class RetryPolicy:
    """A step's ``retry``: tries in all, exponential backoff with jitter, and which
    failures to retry (see :func:`retry_kind`)."""

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


class JournalLeases(Protocol):
    def check(self, resource: str, db: Any) -> None: ...


class Journal(Protocol):
    """Where units are journaled: the state store (:class:`StateStore`), or a
    :class:`MemoryJournal` whose rows another engine keeps (Temporal's history)."""

    @property
    def leases(self) -> JournalLeases: ...

    def mark_unit(
        self,
        run_id: str,
        step: str,
        item: int,
        action: str,
        status: str,
        inputs: Any = None,
        output: Any = None,
        error: str | None = None,
        tries: int | None = None,
        guard: Callable[[Any], None] | None = None,
        account: str | None = None,
    ) -> None: ...


class _NoLeases:
    def check(self, resource: str, db: Any) -> None:
        return None


class MemoryJournal:
    """A journal kept in memory, shaped like the state store's ``units`` rows (inputs
    and outputs as JSON text, secrets scrubbed): an engine that keeps the journal
    elsewhere reads the rows written during a pass (:attr:`written`) and hands them
    back on the next one."""

    leases = _NoLeases()

    def __init__(self, rows: Mapping[tuple[str, int], Mapping[str, Any]] | None = None):
        self.rows: dict[tuple[str, int], dict[str, Any]] = {k: dict(v) for k, v in (rows or {}).items()}
        self.written: dict[tuple[str, int], dict[str, Any]] = {}

    def mark_unit(
        self,
        run_id: str,
        step: str,
        item: int,
        action: str,
        status: str,
        inputs: Any = None,
        output: Any = None,
        error: str | None = None,
        tries: int | None = None,
        guard: Callable[[Any], None] | None = None,
        account: str | None = None,
    ) -> None:
        old = self.rows.get((step, item)) or {}
        row = {
            "step": step,
            "item": item,
            "action": action,
            "status": status,
            "inputs": old.get("inputs") if inputs is None else json.dumps(redaction.scrub_value(inputs)),
            "output": None if output is None else json.dumps(redaction.scrub_value(output)),
            "error": redaction.scrub(error) if error else error,
            "tries": max(int(old.get("tries") or 0), tries or 0),
            "account": old.get("account") or account,
        }
        self.rows[(step, item)] = self.written[(step, item)] = row


@dataclass
class UnitContext:
    """What running a unit needs besides the unit: the connector, the journal (the
    store, or a :class:`MemoryJournal`), the journal of the run being resumed, and the
    run's stop signal."""

    conn: Connector
    store: Journal | None = None
    journal: Mapping[tuple[str, int], Any] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    rng: random.Random = field(default_factory=random.Random)
    #: waits between tries; returns True if the run was asked to stop meanwhile
    wait: Callable[[float], bool] | None = None
    #: the connector of a step (its connection's); None: ``conn`` for every step
    step_conn: Callable[[str], Connector] | None = None
    #: how an operator settles a unit that may have landed (default: ``runs resolve``)
    settle_hint: Callable[[str | None, Unit], str] | None = None

    def sleep(self, seconds: float) -> bool:
        return (self.wait or self.cancel.wait)(seconds)

    def conn_of(self, unit: Unit) -> Connector:
        """The connector ``unit``'s requests go through (its step's connection)."""
        return self.step_conn(unit.step) if self.step_conn is not None else self.conn


@dataclass
class Pending:
    """A unit whose request may have landed: its journal status (``sending``,
    ``ambiguous`` or ``sent``), the 2xx body kept when ``sent``, and why."""

    status: str
    output: Any = None
    cause: str | None = None

    @classmethod
    def of(cls, row: Any) -> Pending | None:
        if row is None or row["status"] not in SETTLEABLE:
            return None
        return cls(row["status"], loads(row["output"]) if row["status"] == "sent" else None, row["error"])


def _place(step: str, item: int, label: str = "") -> str:
    return f"step {step}" + (f" {label or f'item {item}'}" if item != SINGLE else "")


def _where(unit: Unit) -> str:
    return _place(unit.step, unit.item, unit.label)


def _journal(ctx: UnitContext, run_id: str | None, unit: Unit, status: str, **kw: Any) -> None:
    """Journal a unit, fenced by the run's lease (:class:`LeaseLost` if another process
    took the run over: nothing is written)."""
    if ctx.store is not None and run_id is not None:
        ctx.store.mark_unit(
            run_id,
            unit.step,
            unit.item,
            unit.action,
            status,
            guard=_fence(ctx.store, run_id),
            account=ctx.conn_of(unit).account.id,
            **kw,
        )


def _fence(store: Journal, run_id: str) -> Callable[[Any], None]:
    """The run's lease check before a journal write; rows of one run written in one
    transaction (group commit) are fenced once (its ``key``)."""
    leases, resource = store.leases, run_resource(run_id)

    def check(db: Any) -> None:
        leases.check(resource, db)

    check.key = (id(store), resource)  # type: ignore[attr-defined]
    return check


def _journaled_inputs(prev: Any, fresh: dict[str, Any]) -> dict[str, Any]:
    """The inputs a unit that may have landed was sent with: the journal's copy, unless
    it equals the fresh rendering with secrets scrubbed (then the fresh one, secrets in)."""
    kept = loads(prev["inputs"]) if prev["inputs"] else None
    if kept is None or redaction.scrub_value(fresh) == kept:
        return fresh
    return dict(kept)


@dataclass
class UnitState:
    """Where a unit stands between its tries: the action's manifest, the inputs it is
    sent with, whether a resend is safe, what may have landed, and the tries so far.
    An executor that runs each try elsewhere (an activity) carries it from try to try."""

    manifest: Manifest
    inputs: dict[str, Any]
    idempotent: bool
    pending: Pending | None = None
    tries: int = 0

    @classmethod
    def begin(
        cls, ctx: UnitContext, unit: Unit, prev: Any = None, pending: Pending | None = None
    ) -> UnitState:
        """The state of a unit about to be tried, from its journal row ``prev`` (or the
        ``pending`` an executor carried)."""
        manifest = ctx.conn.catalog.get(unit.action, "action")
        pending = pending if pending is not None else Pending.of(prev)
        if pending is not None and prev is not None:
            inputs = _journaled_inputs(prev, unit.inputs)
        else:
            inputs = unit.inputs
        return cls(manifest, inputs, idempotent_for(manifest, inputs), pending)


@dataclass
class Retry:
    """One try failed and the unit may be tried again after ``wait`` seconds."""

    wait: float
    message: str
    reason: str


def run_unit(ctx: UnitContext, run_id: str | None, unit: Unit) -> UnitResult:
    """Run one unit with its retry policy; raise :class:`UnitFailed` when it fails for
    good, :class:`Blocked` when only an operator can settle it, :class:`Interrupted`
    (or :class:`~connector.state.leases.LeaseLost`) when the run stops."""
    if ctx.cancel.is_set():
        raise Interrupted(f"{_where(unit)}: not started: the run was stopped (it resumes later)")
    prev = ctx.journal.get((unit.step, unit.item))
    if prev is not None and prev["status"] == "succeeded":
        return UnitResult(loads(prev["output"]), [], 0)
    state = UnitState.begin(ctx, unit, prev)
    if state.pending is not None and prev is not None:
        same_account(run_id, unit, prev, ctx.conn_of(unit))
    while True:
        outcome = try_unit(ctx, run_id, unit, state)
        if isinstance(outcome, UnitResult):
            return outcome
        if ctx.sleep(outcome.wait):
            raise Interrupted(f"{_where(unit)}: interrupted while waiting to try again") from None


def try_unit(ctx: UnitContext, run_id: str | None, unit: Unit, state: UnitState) -> UnitResult | Retry:
    """One try of a unit (settling first what may have landed): its result, or a
    :class:`Retry` saying how long to wait before the next; ``state`` is updated for
    that next try. Raises :class:`UnitFailed`, :class:`Blocked`, :class:`Interrupted`
    or :class:`~connector.state.leases.LeaseLost` as :func:`run_unit` does."""
    manifest = state.manifest
    state.tries += 1
    tries = state.tries
    sending = [False]  # set once this try's request may go out
    try:
        output, requests = _attempt(ctx, run_id, unit, manifest, state.inputs, state.pending, tries, sending)
        return UnitResult(output, requests, tries)
    except (Blocked, Interrupted, LeaseLost):
        raise  # the journal stays as it is: settled later, or resumed
    except Exception as exc:
        if sending[0]:  # else it failed while settling: what may have landed still may have
            how = landing(exc, state.idempotent)
            if how == "sent":
                state.pending = Pending("sent", getattr(exc, "output", None), _message(exc))
            elif how == "ambiguous":
                state.pending = Pending("ambiguous", cause=_message(exc))
            else:
                state.pending = None
        pending = state.pending
        reason = retry_kind(exc)
        message = _message(exc)
        note = _why_not_again(ctx, run_id, unit, manifest, reason, tries, pending)
        stopping = note == STOPPING
        status = "failed" if pending is None else "sent" if pending.status == "sent" else "ambiguous"
        kept = pending.output if pending is not None and pending.status == "sent" else None
        if note is not None:
            message += f" (after {tries} tries)" if tries > 1 else ""
            message += f"; {note}" if note else ""
            _journal(ctx, run_id, unit, status, output=kept, error=message, tries=tries)
            kind = "interrupted" if stopping else failure_kind(exc)
            if ctx.store is not None and not stopping and only_an_operator_settles(state):
                kind = "blocked"  # as a resume would find it: say so now, not after one
            raise UnitFailed(message, kind, tries, reason) from None
        wait = unit.retry.delay(tries, ctx.rng, getattr(exc, "retry_after", None))
        log.info("%s: %s; try %d of %d in %.1fs", _where(unit), message, tries + 1, unit.retry.attempts, wait)
        _journal(ctx, run_id, unit, status, output=kept, error=message, tries=tries)
        return Retry(wait, message, reason)


def _why_not_again(
    ctx: UnitContext,
    run_id: str | None,
    unit: Unit,
    manifest: Manifest,
    reason: str,
    tries: int,
    pending: Pending | None,
) -> str | None:
    """None if the unit may be tried again; else a note for the error ('' for none)."""
    if not unit.retry.allows(reason) or tries >= unit.retry.attempts:
        return ""
    if pending is not None and pending.status == "sent":
        return ""  # Willo took it: sending it again cannot help and would do it twice
    if ctx.cancel.is_set():
        return STOPPING
    if pending is not None and manifest.data.get("reconcile") is None:
        note = (
            f"not tried again: it may have landed, and {manifest.id} is not idempotent and has no "
            "reconcile lookup"
        )
        if ctx.store is not None and run_id is not None:
            note += f"; check, then {(ctx.settle_hint or _how_to_settle)(run_id, unit)}"
        return note
    return None


def _attempt(
    ctx: UnitContext,
    run_id: str | None,
    unit: Unit,
    manifest: Manifest,
    inputs: dict[str, Any],
    pending: Pending | None,
    tries: int,
    sending: list[bool],
) -> tuple[Any, list[dict[str, Any]]]:
    with step_timeout.within(unit.timeout):
        if pending is not None:
            landed = settle_pending(
                ctx.conn_of(unit),
                run_id,
                unit,
                manifest,
                inputs,
                pending,
                hint=ctx.settle_hint or _how_to_settle,
            )
            if landed is not _SEND:
                _journal(ctx, run_id, unit, "succeeded", output=landed, tries=tries)
                return landed, []
        _journal(ctx, run_id, unit, "sending", inputs=redaction.scrub_value(inputs), tries=tries)
        sending[0] = True
        call = ctx.conn_of(unit).call(unit.action, inputs)
    _journal(ctx, run_id, unit, "succeeded", output=call.output, tries=tries)
    return call.output, call.requests


def settle_pending(
    conn: Connector,
    run_id: str | None,
    unit: Unit,
    manifest: Manifest,
    inputs: dict[str, Any],
    pending: Pending,
    *,
    hint: Callable[[str | None, Unit], str] | None = None,
) -> Any:
    """The output of a unit that may have landed, found without resending it; or
    ``_SEND`` when it surely did not land (the lookup says so) or the call is
    idempotent. Raises :class:`Blocked` when only an operator can tell. The one
    settling code of a retry within a run, a resume, a rerun and an event retry."""
    where = _where(unit)
    if pending.status == "sent" and pending.output is not None:
        try:
            conn.check_output(manifest, pending.output)
        except ConnectorError as exc:
            raise Blocked(
                f"{where}: {unit.action} was sent (Willo answered 2xx) but its output was "
                f"refused: {exc}; not resent. {(hint or _how_to_settle)(run_id, unit)}, or allow the "
                "output (WILLO_SCHEMA_MODE=warn) and resume"
            ) from None
        return manifest.numbers(pending.output)
    landed = reconcile(conn, manifest, inputs, where)
    if landed is not None:
        return landed
    has_lookup = manifest.data.get("reconcile") is not None
    if pending.status == "sent" or (not idempotent_for(manifest, inputs) and not has_lookup):
        cause = pending.cause or "the process stopped while sending"
        what = "was sent (Willo answered 2xx)" if pending.status == "sent" else "may have been sent"
        found = "the reconcile lookup does not find it" if has_lookup else "it has no reconcile lookup"
        raise Blocked(
            f"{where}: {unit.action} {what} ({_short(cause)}) and {found}; not resent. "
            f"Check Willo, then {(hint or _how_to_settle)(run_id, unit)}"
        )
    return _SEND


def only_an_operator_settles(state: UnitState) -> bool:
    """Whether :func:`settle_pending` can only block on this unit, whatever Willo holds:
    it may have landed (no 2xx came back), it is not idempotent, and there is no lookup
    to find it. (One whose 2xx came back, or that a lookup can find, a rerun settles.)"""
    return (
        state.pending is not None
        and state.pending.status == "ambiguous"
        and not state.idempotent
        and state.manifest.data.get("reconcile") is None
    )


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


def same_account(run_id: str | None, unit: Unit, prev: Any, conn: Connector) -> None:
    """A unit that may have been sent is looked up (or settled) only on the account it
    was sent to: if its connection now names another account (a changed key or base
    URL), it is :class:`Blocked`."""
    try:
        was = prev["account"]
    except (KeyError, IndexError):  # a journal row from before accounts
        was = None
    now = conn.account.id
    if was and was != now:
        raise Blocked(
            f"{_where(unit)}: {unit.action} may have been sent to account {was}, but "
            f"connection {conn.connection_name} is now account {now} (another key or base URL); "
            f"not looked up or resent there. Restore the connection, or check Willo and "
            f"{_how_to_settle(run_id, unit)}"
        )


def step_connections(data: Any) -> dict[str, str]:
    """``{step id: connection}`` of every step (branches included) that names one or is
    inside a branch step that does."""
    found: dict[str, str] = {}

    def visit(steps: Any, inherited: str | None) -> None:
        if not isinstance(steps, list):
            return
        for step in steps:
            if not isinstance(step, dict):
                continue
            own = step.get("connection") if isinstance(step.get("connection"), str) else inherited
            if isinstance(step.get("id"), str) and own:
                found.setdefault(step["id"], own)
            for _label, sub, _ptr in branches(step):
                visit(sub, own)

    if isinstance(data, dict):
        visit(data.get("steps"), None)
    return found


def start_unit(ctx: UnitContext, run_id: str | None, stop: threading.Event | None, unit: Unit) -> UnitResult:
    """:func:`run_unit`, unless the foreach or the run is stopping."""
    if ctx.cancel.is_set() or (stop is not None and stop.is_set()):
        raise _NotStarted
    return run_unit(ctx, run_id, unit)


def _how_to_settle(run_id: str | None, unit: Unit) -> str:
    item = f" --item {unit.item}" if unit.item != SINGLE else ""
    base = f"willo-connector runs resolve {run_id or 'RUN'} --step {unit.step}{item}"
    return f"settle it with `{base} --sent` (or `--not-sent`) and resume"


def _of_step(res: StepResult) -> str:
    """A step's error, said once as the step's (a unit's own message already names it)."""
    error = res.error or ""
    prefix = f"step {res.id}"
    return error if error.startswith((f"{prefix}:", f"{prefix} ")) else f"{prefix}: {error}"


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        if self.retries:
            d["retries"] = self.retries
        return d


@dataclass
class RunResult:
    run_id: str | None
    workflow: str
    status: str  # succeeded | failed | blocked | interrupted
    steps: list[StepResult]
    error: str | None = None
    dry_run: bool = False
    kind: str | None = None  # of a failure: see KINDS
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

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "succeeded" else 1


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


def _observed(execute: Callable[..., RunResult]) -> Callable[..., RunResult]:
    """Runs (and resumes) in a log context naming the run and its workflow; the
    outcome logged at info, counted, and its duration measured."""

    @functools.wraps(execute)
    def wrapper(self: Runner, run_id: str | None, *args: Any, **kwargs: Any) -> RunResult:
        if self.store is None:  # a dry run: nothing journaled, nothing to report
            return execute(self, run_id, *args, **kwargs)
        began = time.monotonic()
        with telemetry.bind(run_id=run_id, workflow=self.wf.name, account=self._account_label()):
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
        on_start: Callable[[str], None] | None = None,
        wait: Callable[[float], bool] | None = None,
        journal: MemoryJournal | None = None,
    ):
        self.conn = connector
        self.memory = journal  # journal here instead of the store (another engine keeps it)
        self.wf = workflow
        self.store = None if connector.dry_run else store
        self.progress = progress
        self.executor = executor
        self.cancel = cancel or threading.Event()  # set: start no further unit; resumable
        self.on_start = on_start
        self.wait = wait
        self.origins: dict[str, Any] = {}
        self.connections = step_connections(workflow.data)

    # ------------------------------------------------------------------ connections

    def connector(self, step: str | None = None) -> Connector:
        """The connector of ``step`` (its ``connection:``, a branch's, else the
        workflow's, else the one the runner was given); None: the workflow's."""
        name = self.connections.get(step) if step is not None else None
        return self.conn.using(name or self.wf.data.get("connection"))

    def _account_label(self) -> str | None:
        """The run's account for log lines (None when it cannot be told yet)."""
        try:
            return self.connector().account.id
        except ConnectorError:
            return None

    def _accounts(self) -> None:
        """Build the connector of every connection the workflow names (their keys
        are read now: a missing one stops the run before anything is sent)."""
        names = {*self.connections.values(), self.wf.data.get("connection")}
        for name in sorted(str(n) for n in names if n):
            self.conn.using(name)

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
        there is reused (units that may have landed are settled first)."""
        self.origins = dict(origins or {})
        values = prepare_inputs(self.wf, inputs, self.origins)
        self._accounts()
        run_id = None
        journal: dict[tuple[str, int], Any] = {}
        if self.store is not None:
            main = self.connector()
            settings: dict[str, Any] = {
                "pid": os.getpid(),
                "owner": self.store.leases.owner,
                "base_url": main.client.settings.base_url,
                "connection": main.connection_name,
            }
            if self.origins:
                settings["origins"] = self.origins
            run_id = self.store.new_run(
                self.wf.path,
                self.wf.name,
                self.wf.text,
                values,
                trigger,
                settings,
                event_id,
                parent=parent,
                hold=True,
                account=main.account.id,
            )
        try:
            if self.store is not None and run_id is not None and parent is not None and reuse:
                self.store.copy_reusable_units(parent, run_id)
                journal = self.store.units(run_id)
            if run_id is not None and self.on_start is not None:
                self.on_start(run_id)
            return self._execute(run_id, values, trigger, journal, parent)
        finally:
            self._let_go(run_id)

    def resume(self, run_id: str, inputs: Any, trigger: Any) -> RunResult:
        """Continue ``run_id``: what succeeded is reused, nothing is resent blindly.
        Raises :class:`RunBusy` while another live process holds the run."""
        assert self.store is not None
        self._accounts()
        take_run(self.store, run_id)
        try:
            row = self.store.run(run_id)
            if row is not None:
                self.origins = dict(json.loads(row["settings"] or "{}").get("origins") or {})
                inputs = inputs or loads(row["inputs"]) or {}
            journal = self.store.units(run_id)
            self.store.restart_run(run_id)
            if self.on_start is not None:
                self.on_start(run_id)
            parent = row["parent"] if row is not None else None
            return self._execute(run_id, inputs, trigger, journal, parent)
        finally:
            self._let_go(run_id)

    def replay(
        self,
        run_id: str,
        inputs: dict[str, Any],
        trigger: Any,
        *,
        origins: Mapping[str, Any] | None = None,
        parent: str | None = None,
    ) -> RunResult:
        """One pass over a run whose journal another engine keeps (the runner's
        :class:`MemoryJournal`): ``inputs`` are already prepared; whatever the journal
        holds is reused, and the executor says what is still to run."""
        assert self.memory is not None and self.store is None
        self.origins = dict(origins or {})
        return self._execute(run_id, inputs, trigger, dict(self.memory.rows), parent)

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
        self,
        run_id: str | None,
        inputs: dict[str, Any],
        trigger: Any,
        journal: dict[tuple[str, int], Any],
        parent: str | None,
    ) -> RunResult:
        sink: Journal | None = self.memory if self.memory is not None else self.store
        ctx = UnitContext(self.conn, sink, journal, self.cancel, wait=self.wait, step_conn=self.connector)
        scope: dict[str, Any] = {
            "inputs": inputs,
            "trigger": self._event(trigger),
            "steps": {},
            "secrets": secret_scope(self.wf),
        }
        results: list[StepResult] = []
        status, error, kind = self._block(ctx, run_id, self.wf.steps, scope, results)
        status = "succeeded" if status == "ok" else status
        if status == "interrupted":
            error = "interrupted before it finished" + (f": {error}" if error else "")
        if self.store is not None and run_id is not None:
            if kind == "interrupted" and not self.store.leases.holds(run_resource(run_id)):
                pass  # taken over by another process: its journal now, not ours
            else:
                self.store.set_run(run_id, status, error)
        return RunResult(
            run_id, self.wf.name, status, results, error, self.conn.dry_run, kind=kind, parent=parent
        )

    def _block(
        self,
        ctx: UnitContext,
        run_id: str | None,
        steps: list[dict[str, Any]],
        scope: dict[str, Any],
        results: list[StepResult],
    ) -> tuple[str, str | None, str | None]:
        """Run a list of steps: ``("ok" | "failed" | "blocked" | "interrupted", error,
        kind)``."""
        for step in steps:
            if self.cancel.is_set():
                return "interrupted", None, "interrupted"
            if "use" in step:
                res = self._action_step(ctx, run_id, step, scope)
                taken = "else" if res.status == "skipped" else None
            else:
                res, taken = self._branch_step(ctx, run_id, step, scope)
            results.append(res)
            scope["steps"][res.id] = {"output": res.output, "status": res.status, "error": res.error}
            if res.status == "interrupted" or res.kind == "interrupted":
                return "interrupted", _of_step(res) if res.error else None, "interrupted"
            if res.status == "failed" and step.get("on_error", "stop") == "stop":
                kind = res.kind or "permanent"
                return ("blocked" if kind == "blocked" else "failed"), _of_step(res), kind
            for label, sub, _ in branches(step):
                if label == taken and isinstance(sub, list):
                    outcome = self._block(ctx, run_id, sub, scope, results)
                    if outcome[0] != "ok":
                        return outcome
                else:
                    self._skip(sub, scope, results)
        return "ok", None, None

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
        except LeaseLost as exc:
            return StepResult(sid, kind, "interrupted", error=str(exc), kind="interrupted"), None
        except ConnectorError as exc:
            _journal(ctx, run_id, unit, "failed", error=str(exc))
            return StepResult(sid, kind, "failed", error=str(exc), kind="permanent"), None
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
        except LeaseLost as exc:
            return StepResult(sid, action, "interrupted", error=str(exc), kind="interrupted")
        except ConnectorError as exc:
            _journal(ctx, run_id, unit, "failed", error=str(exc))
            return StepResult(sid, action, "failed", error=str(exc), kind="permanent")
        fn = functools.partial(run_unit, ctx, run_id)
        _, result, error = next(self.executor.run([unit], fn, 1))
        if isinstance(error, (Interrupted, LeaseLost)):
            return StepResult(sid, action, "interrupted", error=str(error), kind="interrupted")
        if error is not None:
            return StepResult(sid, action, "failed", error=_message(error), kind=failure_kind(error))
        retries = max(0, result.tries - 1)  # settled by hand: no try at all
        return StepResult(sid, action, "succeeded", result.output, requests=result.requests, retries=retries)

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
        kinds: list[str] = []
        for i, item in enumerate(items):
            unit = Unit(sid, i, action, {}, base.retry, base.timeout, labels[i])
            try:
                unit.inputs = expressions.render(step.get("with") or {}, {**scope, "item": item, "index": i})
            except ConnectorError as exc:
                failures[i] = str(exc)
                kinds.append("permanent")
                _journal(ctx, run_id, unit, "failed", error=str(exc))
                continue
            units.append(unit)
        outputs: list[Any] = [None] * len(items)
        tries: dict[int, int] = {}
        requests: list[dict[str, Any]] = []
        bar = self._progress(sid, len(items), self._concurrency(step))
        for _ in failures:
            bar.advance(failed=True) if bar else None
        stop = threading.Event()  # start no further items
        stop_on_error = step.get("on_error", "stop") == "stop"

        def fn(unit: Unit) -> UnitResult:
            """An item; one that stops the step sets ``stop`` at once, in its own thread,
            so that no item queued behind it starts meanwhile."""
            try:
                return start_unit(ctx, run_id, stop, unit)
            except _NotStarted:
                raise
            except (Interrupted, LeaseLost):
                stop.set()
                raise
            except Exception as exc:
                if stop_on_error or failure_kind(exc) == "interrupted":
                    stop.set()
                raise

        skipped: set[int] = set()
        cut: str | None = None  # why items were left for later: the run stops, or its lease was lost
        try:
            for unit, result, failure in self.executor.run(units, fn, self._concurrency(step)):
                if isinstance(failure, _NotStarted):
                    skipped.add(unit.item)
                elif isinstance(failure, (Interrupted, LeaseLost)):
                    skipped.add(unit.item)
                    cut = cut or str(failure)
                    stop.set()
                elif failure is not None:
                    failures[unit.item] = _message(failure)
                    kinds.append(failure_kind(failure))
                    tries[unit.item] = getattr(failure, "tries", 1)
                    if stop_on_error or kinds[-1] == "interrupted":
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
        if skipped and self.cancel.is_set():
            cut = cut or "the run was stopped"
        report = [self._item_report(i, labels[i], failures, skipped, tries) for i in range(len(items))]
        retries = sum(max(0, n - 1) for n in tries.values())
        if failures:
            first = min(failures)
            msg = f"{len(failures)} of {len(items)} items failed; {labels[first]}: {failures[first]}"
            kind = worst([*kinds, *(["interrupted"] if cut else [])])
            return StepResult(sid, action, "failed", outputs, msg, report, requests, retries, kind)
        if cut:
            msg = f"{len(skipped)} of {len(items)} items not run: interrupted ({_short(cut)})"
            return StepResult(
                sid, action, "interrupted", outputs, msg, report, requests, retries, "interrupted"
            )
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


# --------------------------------------------------------------------------- leases


def run_resource(run_id: str) -> str:
    return f"run:{run_id}"


def take_run(store: StateStore, run_id: str) -> None:
    """Hold ``run_id``'s lease, or raise :class:`RunBusy` naming the live holder."""
    if store.leases.acquire(run_resource(run_id)):
        return
    holders = [h for h in store.leases.holders(run_resource(run_id)) if h.owner != store.leases.owner]
    who = holders[0].describe(time.time()) if holders else "another process"
    raise RunBusy(f"run {run_id} is being run by another process ({who}); not resumed")


def run_is_live(store: StateStore, run_id: str) -> bool:
    return bool(store.leases.holders(run_resource(run_id)))


# --------------------------------------------------------------------------- operators settle units


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
    where = _place(step, item)
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
        kept = loads(row["output"]) if row["status"] == "sent" and row["output"] is not None else None
        output = operator_output(
            connector, manifest, where, lambda: loads(row["inputs"]) or {}, output=output, kept=kept
        )
        store.mark_unit(run_id, step, item, row["action"], "succeeded", output=output)
        return {"step": step, "item": item, "status": "sent", "output": output}
    finally:
        store.leases.release(run_resource(run_id))


def operator_output(
    connector: Callable[[], Connector],
    manifest: Manifest,
    where: str,
    inputs: Callable[[], dict[str, Any]],
    *,
    output: Any = None,
    kept: Any = None,
) -> Any:
    """The output of a unit an operator says was sent: ``output`` as given (checked
    against the action's output schema), else the 2xx body ``kept`` when it was sent,
    else what the action's ``reconcile`` lookup finds for the ``inputs`` it was sent
    with. A one-line :class:`InputError` saying what to give instead when none
    applies. Both engines' ``runs resolve`` settle through it."""
    if output is not None:
        problems = schemas.errors(output, manifest.output_schema)
        if problems:
            text = "; ".join(f"{p or '/'}: {m}" for p, m in problems[:5])
            raise InputError(f"--output-json is not a {manifest.id} output: {_short(text, 400)}")
        return output
    if kept is not None:
        return kept
    if manifest.data.get("reconcile") is not None:
        found = reconcile(connector(), manifest, inputs(), where)
        if found is None:
            raise InputError(
                f"{where}: the {manifest.data['reconcile']['action']} lookup does not find it in "
                f"Willo; if it was sent, give its output with --output-json (as Willo shows it), "
                "else settle with --not-sent"
            )
        return found
    raise InputError(
        f"{where}: {manifest.id} has no reconcile lookup and no output was kept: give the "
        "resource as Willo shows it with --output-json JSON (it must match the action's "
        "output schema), or settle with --not-sent"
    )


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
    "KINDS",
    "Blocked",
    "Executor",
    "Interrupted",
    "RetryPolicy",
    "RunBusy",
    "RunResult",
    "Runner",
    "StepResult",
    "Unit",
    "UnitContext",
    "failure_kind",
    "operator_output",
    "retry_kind",
    "run_unit",
    "settle",
    "settle_pending",
    "summarize",
]
