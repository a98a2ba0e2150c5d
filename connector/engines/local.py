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
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="willo-step") as pool:
            pending: dict[Future[Any], Unit] = {}
            queue = list(reversed(units))
            while queue or pending:
                while queue and len(pending) < concurrency:
                    unit = queue.pop()
                    # each worker thread runs in a copy of the run's context (run id...)
                    ctx = contextvars.copy_context()
                    pending[pool.submit(ctx.run, _in_context, fn, unit)] = unit
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    unit = pending.pop(fut)
                    error = fut.exception()
                    yield unit, (None if error else fut.result()), error
