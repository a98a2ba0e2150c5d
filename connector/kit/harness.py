"""Run a workflow, or poll a trigger, and inspect what happened: for tests.

::

    report = run_workflow(conn, "workflows/screening.yaml", {"candidates": [...]})
    report.assert_succeeded()
    assert report.output("invite")[0]["created"] is True
    assert report.step("shortlist").status == "skipped"

The pytest plugin wraps these as the ``willo_run`` and ``willo_poll`` fixtures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.engines.local import LocalExecutor
from connector.state.store import StateStore
from connector.triggers.polling import Poller, PollResult
from connector.workflows.model import Workflow, load
from connector.workflows.runner import Runner, RunResult, StepResult, check_event
from connector.workflows.runtime import Connector


@dataclass
class RunReport:
    """A finished run, with its steps by id."""

    result: RunResult

    @property
    def status(self) -> str:
        return self.result.status

    @property
    def error(self) -> str | None:
        return self.result.error

    @property
    def steps(self) -> dict[str, StepResult]:
        return {s.id: s for s in self.result.steps}

    def step(self, step_id: str) -> StepResult:
        """One step's result; an unknown id (or one the run never reached) fails,
        naming the steps that ran."""
        found = self.steps.get(step_id)
        if found is None:
            ran = ", ".join(self.steps) or "none"
            raise AssertionError(f"no step {step_id!r} in this run (steps that ran: {ran})")
        return found

    def output(self, step_id: str) -> Any:
        return self.step(step_id).output

    def requests(self, step_id: str) -> list[dict[str, Any]]:
        """What a dry run would have sent for the step."""
        return self.step(step_id).requests

    def assert_succeeded(self) -> RunReport:
        if self.status != "succeeded":
            failed = [f"{s.id}: {s.error}" for s in self.result.steps if s.status == "failed"]
            raise AssertionError(f"run {self.status}: " + ("; ".join(failed) or str(self.error)))
        return self


def _workflow(conn: Connector, workflow: str | Path) -> Workflow:
    if isinstance(workflow, Path) or "\n" not in workflow:
        return load(workflow, conn.catalog)
    return load("<workflow>", conn.catalog, text=workflow)


def run_workflow(
    conn: Connector,
    workflow: str | Path,
    inputs: Mapping[str, Any] | None = None,
    *,
    event: Any = None,
    store: StateStore | None = None,
    check_only: bool = False,
) -> RunReport:
    """Validate and run ``workflow`` (a path, or YAML text) with ``conn``; ``event`` is
    the trigger event of a test run. Journaled only when ``store`` is given."""
    wf = _workflow(conn, workflow)
    if event is not None:
        check_event(wf, conn, event, "event")
    if check_only:
        return RunReport(RunResult(None, wf.name, "checked", []))
    runner = Runner(conn, wf, store=store, progress=False, executor=LocalExecutor())
    return RunReport(runner.start(dict(inputs or {}), event))


class TriggerProbe:
    """One polling trigger with its options and its own ledger, polled on demand."""

    def __init__(self, conn: Connector, store: StateStore, trigger_id: str, options: Mapping[str, Any]):
        self.poller = Poller(conn, store, trigger_id, options)

    def poll(self, *, backfill: bool = False) -> PollResult:
        return self.poller.poll(backfill=backfill)

    def events(self, *, backfill: bool = False) -> list[dict[str, Any]]:
        """The new events of one poll (the first poll only records what exists,
        unless ``backfill``)."""
        return self.poll(backfill=backfill).events
