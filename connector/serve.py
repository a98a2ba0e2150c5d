"""``willo-connector serve DIR``: one long-lived process for every workflow in a folder.

Schedules (``schedule.cron``), polling triggers at their ``interval`` (one poller per
trigger and options, shared by the workflows that use it), and the webhook receiver
for webhook triggers (subscribed at start, unsubscribed at stop) all feed the state
store's event queue; one loop dispatches it, one run at a time, oldest first. The
loop sleeps until the next schedule slot, poll or retry is due, or a delivery
arrives, so an idle serve costs next to nothing.

Events are dispatched as ``listen`` and ``poll`` dispatch them
(:class:`~connector.triggers.dispatch.Dispatcher`): a transient failure is retried
with backoff over ``WILLO_EVENT_RETRY_HORIZON`` (at most
``WILLO_EVENT_RETRY_MAX_DELAY`` apart), what cannot succeed or needs an operator is
parked at once, and at start the events of a dead process and those parked by an
outage are queued again. :meth:`Service.stop` (SIGTERM, Ctrl-C) stops the running run
at its next unit: the run is journaled ``interrupted``, its event goes back to the
queue uncounted, and the run resumes at the next start. The webhook receiver holds a
share of its subscription (a lease), removed at stop only when no other live
receiver serves the same URL.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from connector import observe
from connector.connections import DEFAULT
from connector.errors import ConnectorError, ManifestError
from connector.state.store import StateStore
from connector.triggers.dispatch import (
    ACCOUNT_SOURCES,
    Dispatcher,
    accounts_of,
    adopt_events,
    requeue_interrupted,
    requeue_parked,
    workflow_handler,
)
from connector.triggers.polling import Poller
from connector.triggers.receiver import PATH, Inbox, Listener, make_app
from connector.triggers.schedule import SOURCE as SCHEDULE_SOURCE
from connector.triggers.schedule import TRIGGER as SCHEDULE
from connector.triggers.schedule import Schedule, Scheduler, utc_now
from connector.triggers.subscriptions import Subscription
from connector.workflows.model import Workflow, load
from connector.workflows.runtime import Connector

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0
SOURCES = (SCHEDULE_SOURCE, "poll", "webhook")
#: the longest the loop sleeps without a reason (a safety net, not a poll)
MAX_SLEEP = 300.0


def load_folder(directory: str | Path, conn: Connector) -> tuple[list[Workflow], list[str]]:
    """Every workflow file (``*.yaml``, ``*.yml``) directly in ``directory``, checked;
    notes on files that are not served. Raises :class:`ManifestError` with every
    problem of every file."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ConnectorError(f"{folder}: not a folder of workflows")
    problems: list[str] = []
    found: list[Workflow] = []
    notes: list[str] = []
    names: dict[str, str] = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            wf = load(path, conn.catalog, connections=conn.pool_names())
        except ManifestError as exc:
            problems.extend(exc.problems)
            continue
        if wf.name in names:
            problems.append(f"{path}:1: /name: workflow name {wf.name!r} is also used by {names[wf.name]}")
            continue
        names[wf.name] = str(path)
        if wf.trigger is None:
            notes.append(f"{path}: no trigger; not served (run it with `willo-connector run {path}`)")
            continue
        found.append(wf)
    if problems:
        raise ManifestError(problems)
    return found, notes


@dataclass
class _Poll:
    poller: Poller
    interval: float
    workflows: list[Workflow] = field(default_factory=list)
    due: float = 0.0


@dataclass
class Receiver:
    """Where the webhook receiver listens, and how it subscribes."""

    host: str = "127.0.0.1"
    port: int = 8780
    public_url: str | None = None
    subscribe: bool = True
    secret: str | None = None
    #: serve /health, /ready and /metrics on this port too (without webhooks: only there)
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"


class Service:
    """The workflows of one folder, served until :meth:`stop`."""

    def __init__(
        self,
        conn: Connector,
        store: StateStore,
        workflows: list[Workflow],
        *,
        receiver: Receiver | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
        say: Callable[[str], None] = lambda text: log.info("%s", text),
        handler: Callable[[list[Workflow]], Callable[..., str | None]] | None = None,
    ):
        self.conn = conn
        #: what runs an event's workflows: here (the default), or another engine's starter
        self.handler = handler
        self.store = store
        self.clock = clock
        self.say = say
        self.stopping = threading.Event()  # asked to stop: runs stop at the next unit
        self.wake = threading.Event()
        self.receiver = receiver or Receiver()
        self.listener: Listener | None = None
        self.subscription: Subscription | None = None
        self.url: str | None = None
        self.schedules: dict[str, Workflow] = {}
        self.polls: dict[str, _Poll] = {}
        self.hooks: list[Workflow] = []
        for wf in workflows:
            self._add(wf)
        self.scheduler = Scheduler(
            store, [Schedule.of(wf.name, _options(wf)) for wf in self.schedules.values()], now
        )
        self.dispatchers = [
            Dispatcher(conn, store, source, self._route(pick), cancel=self.stopping)
            for source, pick in (
                (SCHEDULE_SOURCE, lambda e: [self.schedules[_owner(e)]]),
                ("poll", lambda e: self.polls[e["trigger"]].workflows),
                ("webhook", lambda e: self.hooks),
            )
        ]
        self._next_check = 0.0
        self.probes = observe.Probes(
            store,
            health=self._health,
            checks=[
                observe.store_writable(store),
                self._subscribed,
                observe.inbox_below(store, observe.max_inbox()),
                *(observe.polled_recently(store, name, e.interval) for name, e in self.polls.items()),
            ],
            ledgers=lambda: list(self.polls),
            with_metrics=observe.metrics_enabled(),
        )
        self.upkeep = observe.Upkeep(store)  # WILLO_RETENTION_DAYS
        self.probe_server: Listener | None = None

    # ------------------------------------------------------------------ setting up

    def _add(self, wf: Workflow) -> None:
        trig = wf.trigger or {}
        manifest = self.conn.catalog.get(trig["use"], "trigger")
        strategy = manifest.data["strategy"]
        if strategy == "schedule":
            self.schedules[wf.name] = wf
        elif strategy == "polling":
            poller = Poller(self.conn, self.store, manifest.id, trig.get("with") or {})
            interval = float(trig.get("interval", DEFAULT_INTERVAL))
            entry = self.polls.setdefault(poller.name, _Poll(poller, interval))
            entry.interval = min(entry.interval, interval)
            entry.workflows.append(wf)
        else:
            self.hooks.append(wf)

    def _route(self, pick: Callable[[dict[str, Any]], list[Workflow]]) -> Callable[..., str | None]:
        def handle(trigger_id: str, payload: dict[str, Any], event: dict[str, Any]) -> str | None:
            try:
                workflows = pick(event)
            except KeyError:
                log.warning(
                    "event %s: no workflow of this folder takes %s; left done", event["id"], event["trigger"]
                )
                return None
            if self.handler is not None:
                return self.handler(workflows)(trigger_id, payload, event)
            run = workflow_handler(self.conn, self.store, workflows, cancel=self.stopping)
            return run(trigger_id, payload, event)

        return handle

    def describe(self) -> list[str]:
        """One line per thing served, for the start-up message."""
        lines = []
        for s in self.scheduler.schedules:
            nxt = s.next_after(self.scheduler.clock())
            lines.append(f"schedule {s.cron!r} ({s.timezone}): {s.workflow}; next {nxt.isoformat()}")
        for name, entry in self.polls.items():
            wfs = ", ".join(wf.name for wf in entry.workflows)
            lines.append(f"poll {name} every {entry.interval:g}s: {wfs}")
        if self.hooks:
            events = ", ".join(sorted({wf.trigger["use"] for wf in self.hooks if wf.trigger}))
            lines.append(f"webhooks ({events}) at {self.url}: {', '.join(wf.name for wf in self.hooks)}")
        return lines

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        """Requeue what a dead process left dispatching and what an outage parked, catch
        up schedules, open the receiver."""
        if self.conn.connection_name == DEFAULT:
            for source in ACCOUNT_SOURCES:  # received before accounts: the default connection's
                adopt_events(self.store, source, self.conn.account.id)
        for source in SOURCES:
            requeue_interrupted(self.store, source, self._accounts(source))
            requeue_parked(self.store, source, self._accounts(source))
        self.scheduler.start()
        r = self.receiver
        if r.metrics_port is not None:
            try:
                self.probe_server = observe.serve_probes(self.probes, r.metrics_host, r.metrics_port)
            except OSError as exc:
                raise ConnectorError(
                    f"cannot serve metrics on {r.metrics_host}:{r.metrics_port}: {exc.strerror}"
                ) from None
        self.upkeep.start()
        if self.hooks:
            self._listen()

    def probe_url(self) -> str | None:
        """Where this process's own /health and /ready answer (None: nowhere)."""
        if self.probe_server is not None:
            return observe.local_url(self.receiver.metrics_host, self.probe_server.port)
        if self.listener is not None:
            return observe.local_url(self.receiver.host, self.listener.port)
        return None

    def _accounts(self, source: str) -> tuple[str, ...] | None:
        """The accounts whose events of ``source`` this service takes (None: any)."""
        return accounts_of(self.conn) if source in ACCOUNT_SOURCES else None

    def _listen(self) -> None:
        r = self.receiver
        inbox = Inbox(self.store, r.secret, on_queued=self.wake.set, account=self.conn.account.id)
        try:
            app = observe.wsgi(self.probes, make_app(inbox, self._health))
            self.listener = Listener(app, r.host, r.port, None, self.stopping)
        except OSError as exc:
            raise ConnectorError(f"cannot listen on {r.host}:{r.port}: {exc.strerror}") from None
        self.listener.start()
        self.url = (r.public_url or f"http://{r.host}:{self.listener.port}").rstrip("/") + PATH
        if r.subscribe:
            events = set()
            for wf in self.hooks:
                m = self.conn.catalog.get((wf.trigger or {})["use"], "trigger")
                events.add(m.data["webhook"]["event"])
            self.subscription = Subscription(self.conn, self.store, self.url, events, r.secret)
            hook = self.subscription.start()
            self.say(f"subscribed {hook['key']} to {', '.join(sorted(events))}")

    def _subscribed(self) -> str | None:
        """For /ready: the subscription this process manages is live."""
        if not (self.hooks and self.receiver.subscribe):
            return None
        if self.subscription is None:
            return "not subscribed yet"
        info = self.subscription.status()
        return None if info["live"] else f"no live subscription: {info.get('reason')}"

    def _health(self) -> dict[str, Any]:
        if self.subscription is None:
            return {"subscription": {"managed": False}}
        info = self.subscription.status()
        return {"subscription": info, **({} if info["live"] else {"status": "no_subscription"})}

    def tick(self) -> float:
        """Do what is due (schedules, polls, queued events); seconds until the next thing."""
        self.scheduler.tick()
        self._check_subscription()
        now = self.clock()
        for entry in self.polls.values():
            if now >= entry.due and not self.stopping.is_set():
                try:
                    entry.poller.poll()
                except ConnectorError as exc:  # Willo unreachable: try at the next interval
                    log.warning("poll %s: %s", entry.poller.name, exc)
                entry.due = now + entry.interval
        self._take_back()
        self._dispatch()
        return self._sleep_for()

    def _take_back(self) -> None:
        """Events a killed process was dispatching go back to the queue once its lease
        has expired (this loop dispatches on its own thread: none of them is ours)."""
        for source in SOURCES:
            if n := requeue_interrupted(self.store, source, self._accounts(source)):
                log.warning("%d %s event(s) of a stopped process queued again", n, source)

    def _dispatch(self) -> None:
        busy = True
        while busy and not self.stopping.is_set():
            busy = False
            for dispatcher in self.dispatchers:
                if self.stopping.is_set():
                    return
                busy = bool(dispatcher.one()) or busy

    def _check_subscription(self) -> None:
        """Every third of a lease period: is the subscription still there (else
        subscribe again)? Keeps this receiver's share of it alive."""
        if self.subscription is None or time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + self.store.leases.ttl / 3
        self.subscription.check()

    def _sleep_for(self) -> float:
        now = self.clock()
        waits = [MAX_SLEEP]
        if self.subscription is not None:
            waits.append(self.store.leases.ttl / 3)
        due = self.scheduler.next_due()
        if due is not None:
            waits.append((due - self.scheduler.clock()).total_seconds())
        waits.extend(entry.due - now for entry in self.polls.values())
        rows = self.store.query("SELECT MIN(next_at) AS at FROM events WHERE status = 'queued'")
        if rows and rows[0]["at"] is not None:
            waits.append(rows[0]["at"] - time.time())
        # another process's events: when its lease runs out (it died), take them back
        rows = self.store.query(
            "SELECT MIN(l.expires_at) AS at FROM events e JOIN leases l ON l.resource = 'event:' || e.id"
            " WHERE e.status = 'dispatching'"
        )
        if rows and rows[0]["at"] is not None:
            waits.append(rows[0]["at"] - time.time() + 0.05)
        return max(0.05, min(waits))

    def run(self) -> None:
        """Start, serve until :meth:`stop`, then close the receiver and unsubscribe."""
        try:
            self.start()
            self.loop()
        finally:
            self.shutdown()

    def loop(self) -> None:
        while not self.stopping.is_set():
            wait = self.tick()
            self.wake.wait(wait)
            self.wake.clear()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def shutdown(self) -> None:
        """Close the receiver, give back this process's share of the subscription
        (removed when no other live receiver holds one) and every lease."""
        began = time.monotonic()
        self.stopping.set()
        self.upkeep.stop()
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        if self.probe_server is not None:
            self.probe_server.stop()
            self.probe_server = None
        lingering: set[str] = set()
        if self.subscription is not None:
            _, account = self.subscription.stop(deadline=began + 1.5)
            lingering = self.subscription.lingering
            self.subscription = None
            self.say(account)
        self.store.leases.release_all(keep=lingering)


def _options(wf: Workflow) -> dict[str, Any]:
    return dict((wf.trigger or {}).get("with") or {})


def _owner(event: dict[str, Any]) -> str:
    name = str(event["trigger"])
    if not name.startswith(SCHEDULE + "#"):
        raise KeyError(name)
    return name.split("#", 1)[1]


def webhook_secret() -> str | None:
    return os.environ.get("WILLO_WEBHOOK_SECRET") or None
