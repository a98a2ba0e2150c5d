"""The local engine: units of work on threads of this process.

The workflow runner hands every unit (a step, or one foreach item) to an
:class:`~connector.workflows.runner.Executor`; this one runs them here, with the
run journal in the local state store.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from connector import telemetry

if TYPE_CHECKING:
    from connector.workflows.runner import Unit


def _in_context(fn: Callable[[Unit], Any], unit: Unit) -> Any:
    """``fn(unit)`` with the unit's step and item (a foreach item's index) in the log
    context, on top of the run's."""
    with telemetry.bind(step=unit.step, item=unit.item if unit.item >= 0 else None):
        return fn(unit)


#: Units handed to the pool per thread: a thread that finishes one takes the next at
#: once, instead of idling until this generator (waiting for the GIL among busy
#: threads) has seen the result and handed it another. At most ``concurrency`` units
#: run at a time all the same (the pool has that many threads), and a queued unit that
#: was not started when the step or run stops is not started (``start_unit``).
AHEAD = 2


class LocalExecutor:
    """Runs units of work on in-process threads, at most ``concurrency`` at a time."""

    def run(
        self, units: list[Unit], fn: Callable[[Unit], Any], concurrency: int
    ) -> Iterator[tuple[Unit, Any, BaseException | None]]:
        if concurrency <= 1 or len(units) <= 1:
            for unit in units:
                try:
                    result = _in_context(fn, unit)
                except Exception as exc:
                    yield unit, None, exc
                    continue
                yield unit, result, None
            return
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="willo-step")
        try:
            pending: dict[Future[Any], Unit] = {}
            queue = list(reversed(units))
            while queue or pending:
                while queue and len(pending) < concurrency * AHEAD:
                    unit = queue.pop()
                    # each worker thread runs in a copy of the run's context (run id...)
                    ctx = contextvars.copy_context()
                    pending[pool.submit(ctx.run, _in_context, fn, unit)] = unit
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    unit = pending.pop(fut)
                    error = fut.exception()
                    yield unit, (None if error else fut.result()), error
        finally:  # left early (a failure, Ctrl-C): units queued but not started never start
            pool.shutdown(wait=True, cancel_futures=True)
