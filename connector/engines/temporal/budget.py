"""An account's rate budget across every worker: the client side.

Two layers hold it. The server hands out the account's units no faster than its
per-second limit (the task queue's rate, ``max_task_queue_activities_per_second``),
so workers do not sit on units they cannot send yet. And every request a worker's
client sends first reserves a slot in the account's ``WilloBudget`` workflow (an
update, which starts the workflow if it is not running): there the per-second and
per-minute windows (the local pacer's algorithm) and the daily quota are kept for
all workers at once, however many there are and wherever they run. A 429 seen by
any worker holds and tightens the windows for all of them.

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
from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from connector.engines.temporal import BUDGET_WORKFLOW, TemporalSettings
from connector.errors import NetworkError, RateLimited
from connector.http import step_timeout

#: tries of one reservation before the request fails as never sent (Temporal unreachable)
RESERVE_TRIES = 5
#: a slot is asked for at least this far ahead: the answer's round trip (a few ms to
#: tens of ms under load) then never makes a request later than its slot, which would
#: bunch it with the next ones at Willo
LEAD = 0.2


class QuotaSpent(RateLimited):
    """The account's daily quota is spent; ``retry_after`` is when it renews."""


class _Ask:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: dict[str, Any] | None = None
        self.error: BaseException | None = None


class Budget:
    """Reservations in one account's budget workflow, from any thread of the worker.
    One thread of the process sends them: whatever requests wait when it is free go
    in one update (so a process has one update in flight at a time, whatever its
    concurrency: the server admits only a few per workflow at once)."""

    def __init__(
        self,
        client: Client,
        loop: asyncio.AbstractEventLoop,
        settings: TemporalSettings,
        account: str,
        limits: tuple[int, int, int],
    ):
        self.client = client
        self.loop = loop
        self.settings = settings
        self.account = account
        self.limits = list(limits)
        self.workflow_id = settings.budget_id(account)
        self._lock = threading.Lock()
        self._waiting: list[_Ask] = []
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name=f"willo-budget-{account}")
        self._thread.start()

    def _run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _reserve(self, count: int) -> list[dict[str, Any]]:
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            BUDGET_WORKFLOW,
            {"limits": self.limits},
            id=self.workflow_id,
            task_queue=self.settings.control_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        ask = {"limits": self.limits, "now": time.time() + LEAD, "count": count}
        answer: list[dict[str, Any]] = await self.client.execute_update_with_start_workflow(
            "reserve", ask, start_workflow_operation=start
        )
        return answer

    def _serve(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                batch, self._waiting = self._waiting, []
                self._wake.clear()
            if not batch:
                continue
            last: BaseException | None = None
            answers: list[dict[str, Any]] | None = None
            for n in range(RESERVE_TRIES):
                try:
                    answers = self._run(self._reserve(len(batch)))
                    break
                except Exception as exc:  # a continue-as-new in between, the cluster unreachable
                    last = exc
                    time.sleep(min(2.0, 0.05 * 2**n) * (0.5 + random.random()))
            for i, ask in enumerate(batch):
                if answers is not None and i < len(answers):
                    ask.answer = answers[i]
                else:
                    why = f"{type(last).__name__}: {last}"
                    ask.error = NetworkError(
                        f"account {self.account}: no rate-budget slot from Temporal ({why})"
                    )
                ask.done.set()

    def reserve(self) -> dict[str, Any]:
        ask = _Ask()
        with self._lock:
            self._waiting.append(ask)
            self._wake.set()
        if not ask.done.wait(120.0):
            raise NetworkError(f"account {self.account}: no rate-budget slot from Temporal within 120 s")
        if ask.error is not None:
            raise ask.error
        assert ask.answer is not None
        return ask.answer

    def throttled(self, retry_after: float | None) -> None:
        async def signal() -> None:
            await self.client.get_workflow_handle(self.workflow_id).signal("throttled", retry_after)

        with contextlib.suppress(Exception):  # best effort: the next reservations still pace
            self._run(signal(), timeout=10.0)


class FleetPacer:
    """The pacing of a worker's Willo client (:class:`~connector.http.pacing.Pacing`):
    each request waits for its slot in the account's shared budget."""

    #: (for progress bars, which a worker never shows)
    windows: tuple[Any, ...] = ()

    def __init__(self, budget: Budget):
        self.budget = budget
        self.waited = 0.0
        self.throttles = 0

    def acquire(self) -> None:
        answer = self.budget.reserve()
        if "renews_at" in answer:
            renews = float(answer["renews_at"])
            when = datetime.datetime.fromtimestamp(renews, datetime.UTC).isoformat(timespec="seconds")
            per_day = self.budget.limits[2]
            raise QuotaSpent(
                f"account {self.budget.account}: its daily quota ({per_day:,} requests a UTC day) is spent; "
                f"it renews at {when}",
                retry_after=max(1.0, renews - time.time()),
            )
        delay = float(answer.get("at") or 0.0) - time.time()
        if delay > 0:
            self.waited += delay
            time.sleep(step_timeout.cap(delay))

    def throttled(self, retry_after: float | None = None) -> None:
        self.throttles += 1
        self.budget.throttled(retry_after)

    def describe(self) -> str:
        s, m, d = self.budget.limits
        return f"{s}/s, {m}/min, {d}/day (shared by every worker)"

    def time_for(self, n: int) -> float:
        return 0.0
