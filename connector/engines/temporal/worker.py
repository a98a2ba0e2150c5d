"""``willo-connector worker``: the workflow and activity workers of one process.

Every worker process polls the control task queue (runs and their plans, any
account) and, for each account it is given, that account's unit queue. Several
processes, on as many machines, may poll the same queues: Temporal hands each task
to one of them. The unit queue of an account is rate-limited by the server
(``max_task_queue_activities_per_second``) to the account's budget, so the budget
holds across every worker, however many there are.

Stopping (SIGTERM, Ctrl-C): the workers stop polling at once; units in flight get
``drain`` seconds to finish, then they are cancelled and Temporal gives them to
another worker (they settle what they may have sent before resending anything).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from temporalio.worker import Worker

from connector.engines.temporal import TemporalSettings, accounts
from connector.engines.temporal.activities import plan, poll, settle, unit
from connector.engines.temporal.client import connect
from connector.engines.temporal.workflows import WilloBudget, WilloPoller, WilloRun

log = logging.getLogger(__name__)


@dataclass
class WorkerOptions:
    accounts: list[str] = field(default_factory=lambda: [accounts.DEFAULT])
    #: units one process runs at a time (threads)
    concurrency: int = 16
    #: seconds units in flight may take to finish once asked to stop
    drain: float = 30.0
    #: a fixed units-per-second for every account's queue (None: from its budget)
    unit_rate: float | None = None
    identity: str | None = None


def build_workers(
    client: object,
    settings: TemporalSettings,
    fleet: accounts.Fleet,
    options: WorkerOptions,
    pool: ThreadPoolExecutor,
) -> list[Worker]:
    drain = datetime.timedelta(seconds=options.drain)
    made = [
        Worker(
            client,  # type: ignore[arg-type]
            task_queue=settings.control_queue,
            workflows=[WilloRun, WilloBudget, WilloPoller],
            activities=[plan],
            activity_executor=pool,
            max_concurrent_local_activities=4,
            graceful_shutdown_timeout=drain,
            identity=options.identity,
        )
    ]
    for name in options.accounts:
        rate = options.unit_rate if options.unit_rate is not None else fleet.unit_rate(name)
        made.append(
            Worker(
                client,  # type: ignore[arg-type]
                task_queue=settings.unit_queue(name),
                activities=[unit, poll, settle],
                activity_executor=pool,
                max_concurrent_activities=options.concurrency,
                max_task_queue_activities_per_second=rate,
                graceful_shutdown_timeout=drain,
                identity=options.identity,
            )
        )
    return made


async def serve(
    settings: TemporalSettings,
    fleet: accounts.Fleet,
    options: WorkerOptions,
    stop: asyncio.Event,
    ready: Callable[[list[str]], None] | None = None,
) -> None:
    """Run the workers until ``stop`` is set, then drain them."""
    client = await connect(settings)
    fleet.share_budgets(client, asyncio.get_running_loop(), settings)
    for name in options.accounts:
        fleet.connector(name)  # a missing key or a bad setting: said before polling anything
    accounts.install(fleet)
    pool = ThreadPoolExecutor(max_workers=options.concurrency + 8, thread_name_prefix="willo-activity")
    workers = build_workers(client, settings, fleet, options, pool)
    runs = [asyncio.ensure_future(w.run()) for w in workers]
    try:
        if ready is not None:
            ready([settings.control_queue, *(settings.unit_queue(n) for n in options.accounts)])
        waiter = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([waiter, *runs], return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            for task in done:  # a worker stopped by itself: its error is the worker's error
                task.result()
    finally:
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        for task in runs:
            with contextlib.suppress(BaseException):
                await task
        pool.shutdown(wait=False, cancel_futures=True)
        accounts.install(None)
