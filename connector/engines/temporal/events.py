"""Trigger events on Temporal: each accepted delivery starts one ``WilloRun`` per
matching workflow, with the account, the workflow and the event's id in the workflow
id, so a delivery received twice (a retry by Willo, two listeners behind a load
balancer) is refused by the server: the first start is the run, the others are
successes that start nothing.

The listener keeps accepting and queueing deliveries in its own state store as a
local one does (a delivery is durable before it is answered 2xx); its dispatcher
hands each event to :func:`event_handler`, which only starts the run and returns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from connector.engines.temporal import TemporalSettings, accounts
from connector.engines.temporal import client as tc
from connector.errors import ConnectorError
from connector.triggers.dispatch import RunFailed, matches_workflow
from connector.workflows.runner import prepare_inputs

log = logging.getLogger(__name__)
T = TypeVar("T")


class Starter:
    """A Temporal client on an event loop of its own thread, for synchronous callers
    (the dispatcher's thread); connects on first use, and again after a failure."""

    def __init__(self, settings: TemporalSettings):
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="willo-temporal")
        self._thread.start()
        self._client: Any = None

    def call(self, make: Callable[[Any], Coroutine[Any, Any, T]], timeout: float = 60.0) -> T:
        async def go() -> T:
            if self._client is None:
                self._client = await tc.connect(self.settings)
            try:
                return await make(self._client)
            except ConnectorError:
                raise
            except Exception:
                self._client = None  # connect again next time
                raise

        return asyncio.run_coroutine_threadsafe(go(), self._loop).result(timeout)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def event_handler(
    starter: Starter, workflows: list[Any], account: str = accounts.DEFAULT
) -> Callable[[str, dict[str, Any], dict[str, Any]], str | None]:
    """A dispatch handler that starts (never waits for) one Temporal run per matching
    workflow; returns the last workflow id. Temporal unreachable: a transient failure,
    so the dispatcher tries the event again later."""
    settings = starter.settings

    def handle(trigger_id: str, payload: dict[str, Any], event: dict[str, Any]) -> str | None:
        last = None
        for wf in workflows:
            if not matches_workflow(wf, trigger_id, payload):
                continue
            wf_id = settings.event_workflow_id(account, f"{wf.name}.{trigger_id}", str(event["dedupe"]))
            req = tc.run_request(settings, wf, prepare_inputs(wf, {}), payload, None, account)

            def start(
                client: Any, r: dict[str, Any] = req, i: str = wf_id
            ) -> Coroutine[Any, Any, tuple[str, bool]]:
                return tc.start_once(client, settings, r, i)

            try:
                last, started = starter.call(start)
            except ConnectorError as exc:
                raise RunFailed(f"workflow {wf.name}: {exc}", None, "transient") from None
            except Exception as exc:
                raise RunFailed(
                    f"workflow {wf.name}: Temporal did not take the run: {type(exc).__name__}: {exc}",
                    None,
                    "transient",
                ) from None
            log.info("%s: %s %s", trigger_id, "started" if started else "already started", wf_id)
        return last

    return handle
