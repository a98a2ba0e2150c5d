"""The Temporal engine's workflows: thin and deterministic.

``WilloRun`` keeps a run's journal (in its history) and loops: ask the ``willo.plan``
local activity what to do next; if it is the result, return it; else run the units it
names as ``willo.unit`` activities on their accounts' task queues, at most the
step's ``concurrency`` at a time, starting no further item once one has failed under
``on_error: stop``, exactly as the local executor does. A unit that may have landed
and that no lookup can settle waits for an operator's word (the ``resolve`` update,
which ``willo-connector runs resolve`` sends), then the run goes on. Nothing here
evaluates an expression or reads the catalog: that all happens in activities.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from connector.engines.temporal import (
        BUDGET_WORKFLOW,
        MAX_LOST,
        POLL_WORKFLOW,
        RUN_WORKFLOW,
        event_workflow_id,
        unit_queue,
        wire,
    )

#: how long one try of a unit may take before Temporal gives it to another worker
#: (the unit's own ``timeout`` and the client's timeouts stop it well before)
UNIT_START_TO_CLOSE = timedelta(minutes=30)
PLAN_TIMEOUT = timedelta(minutes=5)
#: how long the lookup or the output check of an operator's ``runs resolve --sent`` may take
SETTLE_TIMEOUT = timedelta(minutes=2)
#: when a schedule started this run (Temporal sets it on the runs its schedules start)
SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _where(unit: dict[str, Any]) -> str:
    item = int(unit["item"])
    return f"step {unit['step']}" + (f" {unit.get('label') or f'item {item}'}" if item >= 0 else "")


def failure_row(err: ActivityError, unit: dict[str, Any], heartbeat: float) -> dict[str, Any]:
    """The journal row of a unit whose activity failed for good."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        tries = int(details.get("tries") or 1)
        if cause.type == "Blocked":
            return {
                "status": "blocked",
                "error": cause.message,
                "kind": "blocked",
                "tries": tries,
                "pending": details.get("pending"),
            }
        if cause.type == "UnitFailed":
            row = {
                "status": "failed",
                "error": cause.message,
                "kind": details.get("kind") or "permanent",
                "tries": tries,
                "reason": details.get("reason") or "fatal",
            }
            if details.get("pending"):  # it may have landed: a rerun looks it up first
                row["pending"] = details["pending"]
            return row
        return {
            "status": "failed",
            "error": f"{cause.message} (after {tries} tries)",
            "kind": "transient",
            "tries": tries,
            "reason": details.get("reason") or "network",
        }
    if isinstance(cause, TimeoutError):
        return {
            "status": "failed",
            "error": f"{unit['action']}: no worker finished it (its last worker was lost: no heartbeat "
            f"within {heartbeat:g}s); not tried again",
            "kind": "transient",
            "tries": 1,
            "reason": "network",
        }
    return {
        "status": "failed",
        "error": f"{unit['action']}: {type(cause).__name__ if cause else 'ActivityError'}: {cause or err}",
        "kind": "transient",
        "tries": 1,
        "reason": "network",
    }


@workflow.defn(name=RUN_WORKFLOW)
class WilloRun:
    """One run of a workflow file."""

    def __init__(self) -> None:
        self.journal: dict[str, dict[str, Any]] = {}
        self.phase = "running"
        self.prefix = "willo"
        #: what a rerun carries over for a unit that may have landed (settled before resending)
        self.carry: dict[str, dict[str, Any]] = {}
        #: units waiting for an operator (journal key: the unit, what may have landed, why)
        self.waiting: dict[str, dict[str, Any]] = {}
        #: an operator's word on a waiting unit, until the unit takes it
        self.settled: dict[str, dict[str, Any]] = {}

    @workflow.query(name="journal")
    def get_journal(self) -> dict[str, Any]:
        waiting = {
            k: {
                "step": w["unit"]["step"],
                "item": w["unit"]["item"],
                "label": w["unit"].get("label") or "",
                "action": w["unit"]["action"],
                "account": w["unit"]["account"],
                "error": w["error"],
            }
            for k, w in self.waiting.items()
            if k not in self.settled
        }
        return {"phase": self.phase, "journal": self.journal, "waiting": waiting}

    @workflow.run
    async def run(self, req: dict[str, Any]) -> dict[str, Any]:
        run_id = workflow.info().workflow_id
        self.prefix = str(req.get("prefix") or "willo")
        for k, row in (req.get("journal") or {}).items():  # a rerun's reused units
            self.journal[k] = dict(row)
        self.carry = {k: dict(v) for k, v in (req.get("carry") or {}).items()}
        req = _with_slot(req)
        while True:
            plan = await workflow.execute_local_activity(
                "willo.plan",
                {**req, "run_id": run_id, "journal": self.journal},
                start_to_close_timeout=PLAN_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=5),
            )
            now = workflow.now().timestamp()
            for k, row in plan["written"].items():
                self.journal[k] = {**row, "started_at": now, "updated_at": now}
            if plan["done"]:
                self.phase = "finished"
                result = dict(plan["result"])
                result["journal"] = {k: _public(row) for k, row in self.journal.items()}
                return result
            await self._units(req, plan)

    async def _units(self, req: dict[str, Any], plan: dict[str, Any]) -> None:
        limit = max(1, int(plan["concurrency"]))
        stop_on_error = bool(plan["stop_on_error"])
        # held: units waiting for an operator; under on_error: stop no further item starts meanwhile
        state = {"running": 0, "stop": False, "held": 0}
        heartbeat = float(req.get("heartbeat") or 15.0)

        async def one(unit: dict[str, Any]) -> None:
            k = wire.key(unit["step"], int(unit["item"]))
            carry = self.carry.pop(k, None)
            try:
                while True:
                    try:
                        out = await self._unit(req, unit, plan["secrets"], heartbeat, carry, stop_on_error)
                        row: dict[str, Any] = {
                            "status": "succeeded",
                            "output": _dumps(out["output"]),
                            "tries": out["tries"],
                        }
                        break
                    except ActivityError as err:
                        row = failure_row(err, unit, heartbeat)
                        if row["status"] == "blocked" and not stop_on_error:
                            # on_error: continue: as locally, it is a failure the run goes past
                            row = {**row, "status": "failed", "reason": "fatal"}
                        if row["status"] != "blocked":
                            if stop_on_error or row["kind"] == "interrupted":
                                state["stop"] = True
                            break
                    answer = await self._operator(k, unit, row, plan["secrets"], state)
                    if answer["sent"]:
                        row = {
                            "status": "succeeded",
                            "output": _dumps(answer["output"]),
                            "tries": row["tries"],
                            "error": None,
                            "pending": None,
                            "settled": "sent",
                        }
                        break
                    carry = None  # not sent: the unit is sent again, afresh
                    self.journal[k] = {
                        **self.journal[k],
                        "status": "running",
                        "error": None,
                        "pending": None,
                        "settled": "not sent",
                        "updated_at": workflow.now().timestamp(),
                    }
            finally:
                state["running"] -= 1
            self.journal[k] = {**self.journal[k], **row, "updated_at": workflow.now().timestamp()}

        tasks = []
        for unit in plan["units"]:
            await workflow.wait_condition(
                lambda: state["running"] < limit and not (stop_on_error and state["held"])
            )
            k = wire.key(unit["step"], int(unit["item"]))
            now = workflow.now().timestamp()
            base = {"step": unit["step"], "item": unit["item"], "action": unit["action"], "tries": 0}
            if state["stop"]:
                self.journal[k] = {**base, "status": "not_started", "started_at": None, "updated_at": now}
                continue
            self.journal[k] = {**base, "status": "running", "started_at": now, "updated_at": now}
            state["running"] += 1
            tasks.append(asyncio.ensure_future(one(unit)))
        if tasks:
            await asyncio.gather(*tasks)

    async def _unit(
        self,
        req: dict[str, Any],
        unit: dict[str, Any],
        secrets: list[str],
        heartbeat: float,
        carry: dict[str, Any] | None = None,
        waits: bool = True,
    ) -> dict[str, Any]:
        retry = unit["retry"]
        first = max(float(retry["backoff"]), 0.001)
        policy = RetryPolicy(
            initial_interval=timedelta(seconds=first),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=max(float(retry["max_backoff"]), first)),
            # the unit counts its own tries (and says when they are spent); this leaves room
            # for the tries lost with their workers
            maximum_attempts=int(retry["attempts"]) + MAX_LOST + 1,
            non_retryable_error_types=["UnitFailed", "Blocked"],
        )
        ask: dict[str, Any] = {
            "run_id": workflow.info().workflow_id,
            "unit": unit,
            "account": unit["account"],
            "secrets": secrets,
            "heartbeat": heartbeat,
        }
        if carry:
            ask["carry"] = carry
        if not waits:  # on_error: continue: the run goes past it, and its error says so
            ask["waits"] = False
        result: dict[str, Any] = await workflow.execute_activity(
            "willo.unit",
            ask,
            task_queue=unit_queue(req["prefix"], unit["account"]),
            start_to_close_timeout=UNIT_START_TO_CLOSE,
            heartbeat_timeout=timedelta(seconds=heartbeat),
            retry_policy=policy,
            summary=_where(unit),
        )
        return result

    # ------------------------------------------------------------------ an operator's word

    async def _operator(
        self, k: str, unit: dict[str, Any], row: dict[str, Any], secrets: list[str], state: dict[str, Any]
    ) -> dict[str, Any]:
        """Wait, durably, for an operator to settle a unit that may have landed."""
        self.journal[k] = {**self.journal[k], **row, "updated_at": workflow.now().timestamp()}
        self.waiting[k] = {
            "unit": unit,
            "pending": row.get("pending"),
            "error": row["error"],
            "secrets": secrets,
        }
        state["held"] += 1
        try:
            await workflow.wait_condition(lambda: k in self.settled)
        finally:
            state["held"] -= 1
        self.waiting.pop(k, None)
        return self.settled.pop(k)

    def _waiting_key(self, ask: dict[str, Any]) -> str:
        """The journal key of the waiting unit ``ask`` names (``step``, ``item``), or an
        error saying why there is none, worded as a local run's ``runs resolve``."""
        run_id = workflow.info().workflow_id
        step, item = ask.get("step"), ask.get("item")
        in_step: dict[int, Any] = {}
        for key, row in self.journal.items():
            s, i = wire.split(key)
            if s == step:
                in_step[i] = row
        if not in_step:
            steps = sorted({wire.split(k)[0] for k in self.journal})
            raise _nothing(
                f"run {run_id} has no journaled step {step!r} (steps: {', '.join(steps) or 'none'})"
            )
        if item is None:
            if -1 in in_step:
                item = -1
            else:
                open_items = sorted(i for i in in_step if wire.key(str(step), i) in self.waiting)
                raise _nothing(
                    f"step {step} is a foreach: give --item N (items to settle: "
                    f"{', '.join(map(str, open_items)) or 'none'})"
                )
        elif int(item) != -1 and -1 in in_step:
            raise _nothing(f"step {step} is not a foreach step: leave out --item")
        k = wire.key(str(step), int(item))
        where = f"step {step}" + (f" item {item}" if int(item) != -1 else "")
        found = self.journal.get(k)
        if found is None:
            raise _nothing(f"run {run_id}: {where} was never started; nothing to settle")
        if k not in self.waiting or k in self.settled:
            status = "settled already" if k in self.settled else found.get("status")
            raise _nothing(f"run {run_id}: {where} is {status}; nothing to settle")
        return k

    @workflow.update(name="resolve")
    async def resolve(self, ask: dict[str, Any]) -> dict[str, Any]:
        """An operator's word on a waiting unit (``runs resolve``): ``sent`` (its output
        given, else the 2xx body kept, else what the action's lookup finds: checked by a
        worker of the unit's account) or not sent (it is sent again). The run goes on."""
        k = self._waiting_key(ask)
        entry = self.waiting[k]
        unit = entry["unit"]
        sent = bool(ask.get("sent"))
        output: Any = None
        if sent:
            given = ask.get("output")
            kept = entry.get("pending") or {}
            if given is None and kept.get("status") == "sent" and kept.get("output") is not None:
                output = kept["output"]
            else:
                try:
                    found = await workflow.execute_activity(
                        "willo.settle",
                        {
                            "unit": unit,
                            "account": unit["account"],
                            "output": given,
                            "secrets": entry["secrets"],
                        },
                        task_queue=unit_queue(self.prefix, unit["account"]),
                        schedule_to_close_timeout=SETTLE_TIMEOUT,
                        retry_policy=RetryPolicy(
                            maximum_attempts=3, non_retryable_error_types=["SettleRefused"]
                        ),
                        summary=f"settle {_where(unit)}",
                    )
                except ActivityError as err:
                    cause = err.cause
                    if isinstance(cause, ApplicationError):
                        message = cause.message
                    else:
                        message = (
                            f"no worker of account {unit['account']} checked it within "
                            f"{int(SETTLE_TIMEOUT.total_seconds())}s (start `willo-connector worker -c "
                            f"{unit['account']}`)"
                        )
                    raise ApplicationError(message, type="SettleRefused", non_retryable=True) from None
                output = found["output"]
            if k not in self.waiting or k in self.settled:
                raise _nothing(f"{_where(unit)} was settled meanwhile by another operator")
        self.settled[k] = {"sent": sent, "output": output}
        return {
            "step": unit["step"],
            "item": int(unit["item"]),
            "status": "sent" if sent else "not sent",
            "output": wire.shown(output),
        }

    @resolve.validator
    def _check_resolve(self, ask: dict[str, Any]) -> None:
        self._waiting_key(ask)


def _nothing(message: str) -> ApplicationError:
    """A ``resolve`` that names no waiting unit: refused, the run unchanged."""
    return ApplicationError(message, type="NothingToSettle", non_retryable=True)


def _with_slot(req: dict[str, Any]) -> dict[str, Any]:
    """A run a schedule started learns its scheduled time (Temporal's
    ``TemporalScheduledStartTime``) and when it started: the plan makes them the
    trigger event, as the local scheduler does."""
    schedule = req.get("schedule")
    if not isinstance(schedule, dict) or schedule.get("slot"):
        return req
    info = workflow.info()
    fired = info.workflow_start_time
    slot = info.typed_search_attributes.get(SCHEDULED_START) or fired
    return {**req, "schedule": {**schedule, "slot": slot.isoformat(), "fired": fired.isoformat()}}


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A journal row as a run's result carries it (outputs are in the steps); of what
    may have landed, only whether it may have (``ambiguous``) or did (``sent``)."""
    public = {k: v for k, v in row.items() if k not in ("output", "inputs", "pending")}
    if row.get("pending"):
        public["landing"] = row["pending"].get("status")
    return public


# --------------------------------------------------------------------------- an account's budget

with workflow.unsafe.imports_passed_through():
    from connector.http.pacing import Pacer
    from connector.state.budget import KEEP

#: a budget workflow continues as new after this many updates (the server refuses more
#: than 2,000 updates in one run: history.maxTotalUpdates)
BUDGET_CONTINUE_AFTER = 500
#: a request goes this long after its slot at the earliest: a slot planned a window
#: after another one's time is then checked past that time, whatever the rounding
GO_AFTER = 1e-4


def next_utc_day(when: float) -> float:
    """The start of the UTC day after ``when`` (epoch seconds), with no clock or date library."""
    return (int(when // 86400) + 1) * 86400.0


@workflow.defn(name=BUDGET_WORKFLOW)
class WilloBudget:
    """One account's rate budget, shared by every worker: each request a worker sends
    first reserves a slot here, so the per-second and per-minute windows and the daily
    quota hold across all workers and machines. The windows are the local pacer's own
    (:class:`~connector.http.pacing.Pacer`), on the workers' clock; a 429 anywhere
    holds and tightens them for everyone (a signal).

    A slot is a plan, as in the local budget (:mod:`connector.state.budget`): a request
    may reach Willo later than its slot (a slow round trip here, a late thread on a
    loaded worker), and Willo counts it anywhere until it is answered. So the ``pace``
    update (one per worker process at a time, carrying whatever its threads wait for)
    does three things, in this order:

    - ``done``: requests answered (or ended unanswered) at a time by the worker's clock:
      their slots move there, no longer in flight;
    - ``go``: requests about to go, each at the earliest of its slot, the ask's clock
      and every ``go`` before it (so the checks are in the order of their times, as in
      one process): if it still keeps the windows counting every request in flight as
      at that time, it goes then (in flight until ``done``); else its slot is given
      back and a later one planned;
    - ``count`` new slots (or, when the day's quota is spent, when it renews).

    ``reserve`` (plans only, the protocol of workers before ``pace``) is kept for a
    fleet that is being upgraded."""

    @workflow.init
    def __init__(self, state: dict[str, Any]) -> None:
        # state is restored here, not in run(): an update that came with the start is
        # handled before run() begins
        self.limits: tuple[int, int, int] = (0, 0, 0)
        self.pacer: Pacer | None = None
        self.served = 0
        #: the latest wall-clock time a requesting worker sent (the windows' clock: a slot
        #: is a time the worker waits for by its own clock, so the round trip's jitter
        #: does not bunch requests)
        self.clock = float(state.get("clock") or 0.0)
        #: the time of the latest ``go``: the next checks at no earlier time
        self.last_go = float(state.get("last_go") or 0.0)
        #: the slots handed out by ``pace`` and not yet answered, by number
        self.slots: dict[int, list[float]] = {}
        self.next_slot = int(state.get("next_slot") or 1)
        self.asked = 0.0  # the worker's clock of the ask being handled (0: not known)
        limits = state.get("limits") or [0, 0, 0]
        pacer = self._pacer_for(*[int(x) for x in limits])
        self.day, self.used = int(state.get("day") or 0), int(state.get("used") or 0)
        kept = dict(state.get("pacer") or {})
        if "log" not in kept and kept.get("logs"):  # carried over by a worker before the shared budget
            kept["log"] = sorted({float(t) for log in kept["logs"] for t in log})
        pacer.restore(kept)
        cells = pacer.cells()
        for number, index in state.get("slots") or []:
            if 0 <= int(index) < len(cells):
                self.slots[int(number)] = cells[int(index)]

    def _now(self) -> float:
        return self.clock

    def _pacer_for(self, per_second: int, per_minute: int, per_day: int) -> Pacer:
        if self.pacer is None or self.limits[:2] != (per_second, per_minute):
            self.pacer = Pacer(per_second, per_minute, clock=self._now, sleep=lambda _s: None)
            self.slots = {}  # new windows: the old slots are not in them
        self.limits = (per_second, per_minute, per_day)
        return self.pacer

    def state(self) -> dict[str, Any]:
        """What a continue-as-new carries over (the slots in flight among it)."""
        assert self.pacer is not None
        cells = self.pacer.cells()
        index = {id(cell): i for i, cell in enumerate(cells)}
        return {
            "limits": list(self.limits),
            "day": self.day,
            "used": self.used,
            "clock": self.clock,
            "last_go": self.last_go,
            "next_slot": self.next_slot,
            "slots": [[n, index[id(cell)]] for n, cell in self.slots.items() if id(cell) in index],
            "pacer": self.pacer.state(),
        }

    @workflow.run
    async def run(self, state: dict[str, Any]) -> None:
        await workflow.wait_condition(
            lambda: self.served >= BUDGET_CONTINUE_AFTER or workflow.info().is_continue_as_new_suggested()
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(self.state())

    def _start(self, ask: dict[str, Any], now: float) -> Pacer:
        """Take an ask's limits and clock (``now``: the workflow's time)."""
        per_second, per_minute, per_day = (int(x) for x in ask["limits"])
        pacer = self._pacer_for(per_second, per_minute, per_day)
        self.asked = float(ask.get("now") or 0.0) if "lead" in ask else 0.0
        self.clock = max(self.clock, float(ask.get("now") or 0.0) + float(ask.get("lead") or 0.0), now - 60)
        today = int(self.clock // 86400)
        if today != self.day:
            self.day, self.used = today, 0
        self.served += 1
        return pacer

    def _slot(self, pacer: Pacer, numbered: bool) -> dict[str, Any]:
        """A new slot, or when the day's quota renews."""
        per_day = self.limits[2]
        if per_day and self.used >= per_day:
            return {"renews_at": next_utc_day(self.clock)}
        self.used += 1
        # planned ``lead`` ahead, counting the requests in flight as at the ask's time (as
        # the local pacer does: its plans are checked again as they go)
        cell = pacer.plan(self.asked or None)
        if not numbered:
            return {"at": cell[0]}
        number, self.next_slot = self.next_slot, self.next_slot + 1
        self.slots[number] = cell
        return {"at": cell[0], "slot": number}

    @workflow.update(name="reserve")
    def reserve(self, ask: dict[str, Any]) -> list[dict[str, Any]]:
        """Slots for ``ask["count"]`` requests (``ask``: the account's limits, the
        worker's clock): for each, ``{"at": epoch}`` to send it at, or ``{"renews_at":
        epoch}`` when the day's quota (a UTC day) is spent. Plans only: what workers
        before ``pace`` ask."""
        pacer = self._start(ask, workflow.now().timestamp())
        return [self._slot(pacer, False) for _ in range(max(1, min(int(ask.get("count") or 1), 1000)))]

    @workflow.update(name="pace")
    def pace_update(self, ask: dict[str, Any]) -> dict[str, Any]:
        return self.pace(ask, workflow.now().timestamp())

    def pace(self, ask: dict[str, Any], now: float) -> dict[str, Any]:
        """``ask``: ``limits``, ``now`` (the worker's clock), ``lead`` (how far ahead of
        it new slots are planned), ``done`` (``[slot, when]`` each), ``go`` (``{"slot",
        "force"}`` each) and ``count``. The answer: ``go`` (for each, ``{"go": when}``,
        or a new slot: ``{"at", "slot"}``) and ``slots`` (``count`` new ones: ``{"at",
        "slot"}`` or ``{"renews_at"}``). ``now`` is the workflow's time."""
        pacer = self._start(ask, now)
        asked = float(ask.get("now") or 0.0)
        for number, when in ask.get("done") or []:
            cell = self.slots.pop(int(number), None)
            if cell is not None:
                pacer.settle(cell, float(when))
        gone: list[dict[str, Any]] = []
        for go in ask.get("go") or []:
            cell = self.slots.get(int(go["slot"]))
            if cell is not None and cell[1]:  # asked again (the update was retried): it goes
                gone.append({"go": cell[0]})
                continue
            if cell is not None:
                at = max(cell[0] + GO_AFTER, asked, self.last_go)
                if pacer.go(cell, at, force=bool(go.get("force"))):
                    self.last_go = at
                    gone.append({"go": at})
                    continue
                del self.slots[int(go["slot"])]  # given back: a later one
            self.used = max(0, self.used - 1)  # the new slot stands for the one given back: counted once
            gone.append(self._slot(pacer, True))
        slots = [self._slot(pacer, True) for _ in range(max(0, min(int(ask.get("count") or 0), 1000)))]
        # slots the pacer forgot (planned and never sent, long ago) are forgotten here too
        horizon = self.clock - KEEP
        for number in [n for n, cell in self.slots.items() if cell[0] <= horizon]:
            del self.slots[number]
        return {"go": gone, "slots": slots}

    @workflow.signal(name="throttled")
    def throttled(self, retry_after: float | None) -> None:
        if self.pacer is not None:
            self.pacer.throttled(retry_after)

    @workflow.query(name="usage")
    def usage(self) -> dict[str, Any]:
        return {"limits": list(self.limits), "day": self.day, "used": self.used}


# --------------------------------------------------------------------------- polling triggers

#: a poller continues as new after this many polls (its history stays short)
POLLS_PER_RUN = 200


@workflow.defn(name=POLL_WORKFLOW)
class WilloPoller:
    """One polling trigger with its options, for one workflow and account: its ledger
    (cursor, seen keys) lives in this workflow's history, and there is one such
    workflow per trigger, options and workflow (its id says so), so two pollers never
    emit one item twice. Each new item starts a ``WilloRun`` whose id holds the item's
    key: should a poll be repeated, the server refuses the second start.

    Signals: ``update`` gives it a new run request (the workflow file changed) or
    interval, from the next item on; ``stop`` ends it after the poll in hand, with its
    ledger as its result, which the next poller of the same id starts from."""

    def __init__(self) -> None:
        self.changes: dict[str, Any] = {}
        self.stopping = False

    @workflow.signal(name="update")
    def update(self, changes: dict[str, Any]) -> None:
        self.changes.update({k: v for k, v in changes.items() if k in ("run", "interval")})

    @workflow.signal(name="stop")
    def stop(self) -> None:
        self.stopping = True

    @workflow.run
    async def run(self, req: dict[str, Any]) -> dict[str, Any]:
        ledger = req.get("ledger") or {}
        started = int(req.get("started") or 0)
        for n in range(POLLS_PER_RUN):
            if self.stopping:
                return {"ledger": ledger, "started": started, "stopped": True}
            res = await workflow.execute_activity(
                "willo.poll",
                {
                    **req,
                    "ledger": ledger,
                    "backfill": bool(req.get("backfill")) and not ledger.get("initialized"),
                },
                task_queue=unit_queue(req["prefix"], req["account"]),
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=2),
                    maximum_interval=timedelta(minutes=5),
                    non_retryable_error_types=["PollFailed"],
                ),
            )
            ledger = res["ledger"]
            if self.changes:
                req = {**req, **self.changes}
                self.changes = {}
            for event in res["events"]:
                wf_id = event_workflow_id(
                    req["prefix"], req["account"], f"{req['run']['name']}.{req['trigger']}", str(event["key"])
                )
                try:
                    await workflow.start_child_workflow(
                        RUN_WORKFLOW,
                        {**req["run"], "trigger": event["payload"]},
                        id=wf_id,
                        task_queue=workflow.info().task_queue,
                        parent_close_policy=ParentClosePolicy.ABANDON,
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                        memo={"workflow": req["run"]["name"], "file": req["run"]["path"]},
                    )
                    started += 1
                except WorkflowAlreadyStartedError:
                    pass  # this item's run exists: never twice
            if req.get("once") or self.stopping:
                return {"ledger": ledger, "started": started, "stopped": self.stopping}
            with contextlib.suppress(builtins.TimeoutError):  # the interval passed
                await workflow.wait_condition(
                    lambda: self.stopping, timeout=timedelta(seconds=float(req.get("interval") or 60))
                )
            if self.changes:
                req = {**req, **self.changes}
                self.changes = {}
            if n + 1 < POLLS_PER_RUN and workflow.info().is_continue_as_new_suggested():
                break
        if self.stopping:
            return {"ledger": ledger, "started": started, "stopped": True}
        workflow.continue_as_new({**req, "ledger": ledger, "started": started})
