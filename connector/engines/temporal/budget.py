"""An account's rate budget across every worker: the client side.

Two layers hold it. The server hands out the account's units no faster than its
per-second limit (the task queue's rate, ``max_task_queue_activities_per_second``),
so workers do not sit on units they cannot send yet. And every request a worker's
client sends draws on the account's ``WilloBudget`` workflow (an update, which starts
the workflow if it is not running): there the per-second and per-minute windows (the
local pacer's algorithm) and the daily quota are kept for all workers at once,
however many there are and wherever they run. A 429 seen by any worker holds and
tightens the windows for all of them.

A request's slot is a plan, as in the local budget (:mod:`connector.state.budget`):
a request reaches Willo later than its slot when a reservation's round trip is slow
or its thread wakes late on a loaded worker, and Willo counts it anywhere until it is
answered. So a request takes three steps in the budget workflow: it reserves a slot;
shortly before the slot it asks to go, and goes only if the windows still hold
counting every request in flight (of any worker) as at that time, else it takes a
later slot; and when it is answered (or ends unanswered), its slot moves to that
time, no longer in flight. The steps of a process's threads travel together, one
update in flight at a time.

When the day's quota is spent, a request fails as throttled until the quota renews
(the start of the next UTC day): the unit is tried again then (Temporal waits, the
run stays durable), within its ``retry`` attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from connector.engines.temporal import BUDGET_WORKFLOW, TemporalSettings
from connector.errors import NetworkError, RateLimited
from connector.http import step_timeout
from connector.state.budget import MAX_RESLOTS

#: tries of one update before its requests fail as never sent (Temporal unreachable)
RESERVE_TRIES = 5
#: a slot is planned at least this far ahead, and a request asks to go this long before
#: its slot: the update's round trip (a few ms to tens of ms under load) then seldom
#: makes a request later than its slot (and when it does, the request is checked as it
#: goes, so it is never sent closer to the others than the windows allow)
LEAD = 0.2


class QuotaSpent(RateLimited):
    """The account's daily quota is spent; ``retry_after`` is when it renews."""


class _Ask:
    """A thread's wait for a new slot (``slot`` None) or to send at its slot."""

    def __init__(self, slot: int | None = None, force: bool = False) -> None:
        self.slot = slot
        self.force = force
        self.done = threading.Event()
        self.answer: dict[str, Any] | None = None
        self.error: BaseException | None = None


class Budget:
    """The steps of requests in one account's budget workflow, from any thread of the
    worker. One thread of the process sends them: whatever requests wait when it is
    free (new slots, requests about to go, requests answered) go in one ``pace``
    update, so a process has one update in flight at a time, whatever its concurrency
    (the server admits only a few per workflow at once)."""

    def __init__(
        self,
        client: Client,
        loop: asyncio.AbstractEventLoop,
        settings: TemporalSettings,
        account: str,
        limits: tuple[int, int, int],
        clock: Callable[[], float] = time.time,
    ):
        self.client = client
        self.loop = loop
        self.settings = settings
        self.account = account
        self.limits = list(limits)
        self.workflow_id = settings.budget_id(account)
        self.clock = clock
        self._lock = threading.Lock()
        self._waiting: list[_Ask] = []
        self._done: list[list[float]] = []  # [slot, when]: requests over, to report
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name=f"willo-budget-{account}")
        self._thread.start()

    def _run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _pace(self, ask: dict[str, Any], update_id: str) -> dict[str, Any]:
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            BUDGET_WORKFLOW,
            {"limits": self.limits},
            id=self.workflow_id,
            task_queue=self.settings.control_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        answer: dict[str, Any] = await self.client.execute_update_with_start_workflow(
            "pace", ask, start_workflow_operation=start, id=update_id
        )
        return answer

    def _serve(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                batch, self._waiting = self._waiting, []
                done, self._done = self._done, []
                self._wake.clear()
            if not batch and not done:
                continue
            gos = [a for a in batch if a.slot is not None]
            news = [a for a in batch if a.slot is None]
            update_id = uuid.uuid4().hex  # the same on every try: the server applies it once
            last: BaseException | None = None
            answer: dict[str, Any] | None = None
            for n in range(RESERVE_TRIES):
                ask = {
                    "limits": self.limits,
                    "now": self.clock(),
                    "lead": LEAD,
                    "done": done,
                    "go": [{"slot": a.slot, "force": a.force} for a in gos],
                    "count": len(news),
                }
                try:
                    answer = self._run(self._pace(ask, update_id))
                    break
                except Exception as exc:  # a continue-as-new in between, the cluster unreachable
                    last = exc
                    time.sleep(min(2.0, 0.05 * 2**n) * (0.5 + random.random()))
            if answer is None and done:
                with self._lock:  # reported with the next update (a slot in flight too long is dropped)
                    self._done[:0] = done
            got = answer or {}
            for asks, answers in ((gos, got.get("go") or []), (news, got.get("slots") or [])):
                for i, waiting in enumerate(asks):
                    if i < len(answers):
                        waiting.answer = answers[i]
                    else:
                        why = f"{type(last).__name__}: {last}"
                        waiting.error = NetworkError(
                            f"account {self.account}: no rate-budget slot from Temporal ({why})"
                        )
                    waiting.done.set()

    def _ask(self, ask: _Ask) -> dict[str, Any]:
        with self._lock:
            self._waiting.append(ask)
            self._wake.set()
        if not ask.done.wait(120.0):
            raise NetworkError(f"account {self.account}: no rate-budget slot from Temporal within 120 s")
        if ask.error is not None:
            raise ask.error
        assert ask.answer is not None
        return ask.answer

    def reserve(self) -> dict[str, Any]:
        """A new slot: ``{"at": epoch, "slot": number}``, or ``{"renews_at": epoch}``
        when the day's quota is spent."""
        return self._ask(_Ask())

    def go(self, slot: int, force: bool = False) -> dict[str, Any]:
        """The request of ``slot`` is about to go: ``{"go": epoch}`` (send it then, not
        before: it is in flight until :meth:`done`), or a later slot to wait for
        instead (``{"at", "slot"}``). ``force``: it goes whatever the windows say."""
        return self._ask(_Ask(slot, force))

    def done(self, slot: int, when: float) -> None:
        """The request of ``slot`` was answered (or ended unanswered) at ``when``; told
        the budget workflow with the next update (this does not wait for it)."""
        with self._lock:
            self._done.append([slot, when])
            self._wake.set()

    def throttled(self, retry_after: float | None) -> None:
        async def signal() -> None:
            await self.client.get_workflow_handle(self.workflow_id).signal("throttled", retry_after)

        with contextlib.suppress(Exception):  # best effort: the next reservations still pace
            self._run(signal(), timeout=10.0)


class FleetPacer:
    """The pacing of a worker's Willo client (:class:`~connector.http.pacing.Pacing`):
    each request waits for its slot in the account's shared budget, goes only once the
    budget workflow says it may, and is in flight until :meth:`observe` or
    :meth:`release`."""

    #: (for progress bars, which a worker never shows)
    windows: tuple[Any, ...] = ()

    def __init__(
        self,
        budget: Budget,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.budget = budget
        self.clock = clock
        self.sleep = sleep
        self.waited = 0.0
        self.throttles = 0
        self.missed = 0  # slots given back: they no longer kept the windows when due
        self._mine = threading.local()  # the slot of this thread's request in flight

    def _spent(self, answer: dict[str, Any]) -> None:
        if "renews_at" in answer:
            renews = float(answer["renews_at"])
            when = datetime.datetime.fromtimestamp(renews, datetime.UTC).isoformat(timespec="seconds")
            per_day = self.budget.limits[2]
            raise QuotaSpent(
                f"account {self.budget.account}: its daily quota ({per_day:,} requests a UTC day) is spent; "
                f"it renews at {when}",
                retry_after=max(1.0, renews - self.clock()),
            )

    def _until(self, when: float) -> None:
        delay = when - self.clock()
        if delay > 0:
            self.waited += delay
            self.sleep(step_timeout.cap(delay))

    def acquire(self) -> None:
        self.release()  # a thread sends one request at a time: its last one is over
        answer = self.budget.reserve()
        if not any(self.budget.limits[:2]):  # a daily quota and no windows: nothing to check as it goes
            self._spent(answer)
            self._until(float(answer["at"]))  # (held after a 429)
            return
        for tries in range(1, MAX_RESLOTS + 1):
            self._spent(answer)
            slot = int(answer["slot"])
            self._until(float(answer["at"]) - LEAD)
            try:
                answer = self.budget.go(slot, force=tries >= MAX_RESLOTS)
            except BaseException:
                self.budget.done(slot, self.clock())  # never sent (and perhaps never planned)
                raise
            if "go" in answer:
                self._mine.slot = slot
                self._until(float(answer["go"]))
                return
            self.missed += 1  # given back: wait for the later one

    def observe(self, seconds: float) -> None:
        """This thread's request was answered: the server counted it no later than now."""
        self.release()

    def release(self) -> None:
        """This thread's request is over (answered, failed, or never sent)."""
        slot = getattr(self._mine, "slot", None)
        if slot is not None:
            self._mine.slot = None
            self.budget.done(slot, self.clock())

    def throttled(self, retry_after: float | None = None) -> None:
        self.throttles += 1
        self.budget.throttled(retry_after)

    def describe(self) -> str:
        s, m, d = self.budget.limits
        return f"{s}/s, {m}/min, {d}/day (shared by every worker)"

    def time_for(self, n: int) -> float:
        return 0.0
