"""Trigger commands: ``poll``, ``listen`` and ``state``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import click

from connector.cli.common import clean_json, connection_option, emit_json, json_option, parse_inputs, say
from connector.cli.run_cmd import engine_option, state_dir_option

log = logging.getLogger("connector.cli")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


class _Service:
    """What a long-lived command runs beside its work: probes and metrics (imported
    only here: one-shot commands never load prometheus_client) and retention."""

    def __init__(self, store: Any):
        from connector.observe import Upkeep

        self.store = store
        self.upkeep = Upkeep(store)  # reads WILLO_RETENTION_DAYS: a bad value fails at start
        self.server: Any = None
        self.notifier: Any = None

    def notify(self, host: str | None, port: int | None) -> None:
        """Under systemd (Type=notify, WatchdogSec): READY and WATCHDOG from the probes
        served at host:port (without any: READY at once)."""
        from connector.observe import SystemdNotifier, local_url

        base = local_url(host, port) if host is not None and port is not None else None
        self.notifier = SystemdNotifier(base).start()

    def probes(
        self,
        *,
        health: Any = None,
        checks: list[Any] | None = None,
        ledgers: Any = None,
        sources: list[str] | None = None,
    ) -> Any:
        from connector.observe import Probes, inbox_below, max_inbox, metrics_enabled, store_writable

        every = [store_writable(self.store), *(checks or []), inbox_below(self.store, max_inbox(), sources)]
        return Probes(
            self.store, health=health, checks=every, ledgers=ledgers, with_metrics=metrics_enabled()
        )

    def start(
        self, host: str, port: int | None, *, ledgers: Any, checks: list[Any], sources: list[str]
    ) -> None:
        """Start the upkeep, and the probes' own server when a port is given."""
        from connector.errors import ConnectorError
        from connector.observe import serve_probes

        if port is not None:
            probes = self.probes(checks=checks, ledgers=ledgers, sources=sources)
            try:
                self.server = serve_probes(probes, host, port)
            except OSError as exc:
                raise ConnectorError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
            say(f"metrics on http://{host}:{self.server.port}/metrics")
        self.upkeep.start()
        self.notify(host if self.server else None, self.server.port if self.server else None)

    def stop(self) -> None:
        if self.notifier is not None:
            self.notifier.stop()
        self.upkeep.stop()
        if self.server is not None:
            self.server.stop()
            self.server = None


@contextlib.contextmanager
def _stopped(service: _Service | None) -> Iterator[None]:
    try:
        yield
    finally:
        if service is not None:
            service.stop()


def _polled_recently(store: Any, ledger: str, interval: float) -> Any:
    from connector.observe import polled_recently

    return polled_recently(store, ledger, interval)


def _print_event(trigger: str, event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(clean_json(json.dumps(event, separators=(",", ":"))))
        return
    data = event.get("data") if isinstance(event.get("data"), dict) else event
    who = data.get("participant", data) if isinstance(data, dict) else {}
    label = who.get("email") or who.get("title") or who.get("key") if isinstance(who, dict) else ""
    click.echo(f"{trigger}: {label}")


@click.command()
@click.argument("trigger_id")
@click.option("--with", "with_", multiple=True, metavar="K=V", help="Trigger option (e.g. interview=KEY).")
@click.option("--once", is_flag=True, help="Poll once and exit.")
@click.option(
    "--interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Seconds between polls (Willo asks clients not to poll hard).",
)
@click.option("--backfill", is_flag=True, help="On the first poll, emit what already exists.")
@click.option(
    "--run",
    "workflow",
    type=click.Path(exists=True, dir_okay=False),
    help="Run this workflow for each event (the event is `trigger`).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve /health, /ready and /metrics on this port while polling (not with --once).",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address of --metrics-port.")
@engine_option
@connection_option
@state_dir_option
@json_option
def poll(
    trigger_id: str,
    with_: tuple[str, ...],
    once: bool,
    interval: float,
    backfill: bool,
    workflow: str | None,
    metrics_port: int | None,
    metrics_host: str,
    engine: str,
    connection: str | None,
    state_dir: str | None,
    as_json: bool,
) -> None:
    """Poll TRIGGER_ID; print new items (one JSON object per line with --json).

    Without --once it polls every --interval seconds until SIGTERM or Ctrl-C; a poll
    that fails for a reason that passes (429, 5xx, Willo unreachable) is logged and
    tried again at the next interval. WILLO_RETENTION_DAYS prunes finished work.

    With --engine temporal (and --run), the poller is a workflow on Temporal: its
    cursor lives in its history, there is one per trigger, options and workflow (a
    second `poll` finds it running), and each new item starts a run there. The
    command returns once the poller has started (with --once: once it has polled).

    --connection names the account polled (and the workflows' connection unless they
    name one); each account has its own ledger.
    """
    if engine == "temporal":
        _poll_on_temporal(trigger_id, with_, once, interval, backfill, workflow, as_json, connection)
        return
    from connector.cli.context import connector_for
    from connector.errors import ConnectorError
    from connector.state.store import StateStore
    from connector.triggers.dispatch import Dispatcher, requeue_interrupted, requeue_parked, workflow_handler
    from connector.triggers.polling import Poller
    from connector.workflows.model import load
    from connector.workflows.runner import failure_kind

    if once and metrics_port is not None:
        raise click.UsageError("--metrics-port serves a long-lived poller: leave out --once")
    store = StateStore(state_dir)
    stop = _stop_on_signals()
    service = None if once else _Service(store)
    with connector_for(connection=connection, store=store) as conn, _stopped(service):
        manifest = conn.catalog.get(trigger_id, "trigger")
        options = parse_inputs(with_, manifest.input_schema.get("properties"), flag="--with")
        poller = Poller(conn, store, trigger_id, options)
        workflows = [load(workflow, conn.catalog, connections=conn.pool_names())] if workflow else []
        run_handler = workflow_handler(conn, store, workflows) if workflows else None

        printed: list[str] = []  # events only printed: written a batch at a time

        def handle(trigger: str, payload: dict[str, Any], event: dict[str, Any]) -> str | None:
            if run_handler is None and as_json and "payload_json" in event:
                printed.append(clean_json(event["payload_json"]) + "\n")  # stored compact: as is
                return None
            if as_json and "payload_json" in event:
                sys.stdout.write(clean_json(event["payload_json"]) + "\n")
            else:
                _print_event(trigger, payload, as_json)
            return run_handler(trigger, payload, event) if run_handler else None

        def flush() -> None:
            """What was printed reaches stdout (one write a batch, not one a line: a
            reader is woken once) before its events are marked dispatched."""
            if printed:
                text = "".join(printed)
                printed.clear()
                sys.stdout.write(text)
            sys.stdout.flush()

        # events only printed are quick, and claimed (and settled) in larger batches
        dispatcher = Dispatcher(
            conn, store, "poll", handle, before_settle=flush, batch=32 if workflows else 256
        )
        requeue_interrupted(store, "poll", dispatcher.accounts)
        requeue_parked(store, "poll", dispatcher.accounts)  # parked by an outage: tried again at start
        if service is not None:
            service.start(
                metrics_host,
                metrics_port,
                ledgers=lambda: [poller.name],
                checks=[_polled_recently(store, poller.name, interval)],
                sources=["poll"],
            )
        dispatcher.drain(poller.name)  # events queued before a crash go first
        while True:
            try:
                # events only printed are taken as they are queued (one transaction, not a
                # claim reading them back); a workflow's are claimed a batch at a time
                result = poller.poll(backfill=backfill, take=not workflows)
            except ConnectorError as exc:
                if once or failure_kind(exc) != "transient":
                    raise
                log.warning("poll of %s failed (%s); trying again in %gs", trigger_id, exc, interval)
            else:
                if result.first and not backfill and not as_json:
                    say(f"{trigger_id}: first poll recorded what exists; new items from now on")
                dispatcher.deliver(result.taken)
            dispatcher.drain(poller.name)
            if once or stop.wait(interval):
                break


def _poll_on_temporal(
    trigger_id: str,
    with_: tuple[str, ...],
    once: bool,
    interval: float,
    backfill: bool,
    workflow: str | None,
    as_json: bool,
    connection: str | None = None,
) -> None:
    import asyncio

    from connector import connections as named
    from connector.cli.temporal_cmd import temporal_settings
    from connector.errors import InputError
    from connector.workflows.model import load
    from connector.workflows.runtime import Connector

    if workflow is None:
        raise InputError(
            "poll --engine temporal needs --run WORKFLOW: on Temporal each new item starts a run"
        )
    account = named.load().get(connection, "--connection: ").name  # the account polled
    settings = temporal_settings()
    from connector.engines.temporal import client as tc
    from connector.triggers.polling import check_options

    conn = Connector(dry_run=True)
    manifest = conn.catalog.get(trigger_id, "trigger")
    if manifest.data["strategy"] != "polling":
        raise InputError(f"{trigger_id} is a webhook trigger; use `willo-connector listen`")
    options = parse_inputs(with_, manifest.input_schema.get("properties"), flag="--with")
    check_options(manifest, options)
    wf = load(workflow, conn.catalog)

    async def go() -> dict[str, Any]:
        client = await tc.connect(settings)
        wf_id, started = await tc.start_poller(
            client,
            settings,
            wf,
            trigger_id,
            options,
            interval=interval,
            once=once,
            backfill=backfill,
            account=account,
        )
        out: dict[str, Any] = {"poller": wf_id, "started": started, "engine": "temporal"}
        if once and started:
            done = await client.get_workflow_handle(wf_id).result()
            out["runs_started"] = done.get("started", 0)
        return out

    out = asyncio.run(go())
    if as_json:
        emit_json(out)
        return
    if not out["started"]:
        say(f"{trigger_id}: already polling on Temporal ({out['poller']}); not started twice")
    elif once:
        say(f"{trigger_id}: polled once on Temporal ({out['poller']}): {out['runs_started']} runs started")
    else:
        say(f"{trigger_id}: polling on Temporal every {interval:g}s ({out['poller']})")


@click.command()
@click.option(
    "--workflow",
    "workflows",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A workflow with a webhook trigger. Repeatable.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8780, show_default=True, type=click.IntRange(0, 65535))
@click.option("--public-url", help="Base URL Willo can reach this receiver at (default http://HOST:PORT).")
@click.option("--no-subscribe", is_flag=True, help="Do not manage subscriptions (they exist already).")
@engine_option
@connection_option
@state_dir_option
def listen(
    workflows: tuple[str, ...],
    host: str,
    port: int,
    public_url: str | None,
    no_subscribe: bool,
    engine: str,
    connection: str | None,
    state_dir: str | None,
) -> None:
    """Receive Willo webhooks and run each workflow whose trigger matches.

    SIGTERM or SIGINT stops it at once: no new run or unit starts, a unit in flight
    gets a second to finish (else it is looked up, never blindly resent, at the next
    start), and the subscription is removed unless another live listener serves it.

    With --engine temporal, each delivery starts one Temporal run per matching
    workflow (the event id in its workflow id: a duplicate delivery starts nothing),
    and the workers run it.

    --connection names the account whose webhooks these are (and the workflows'
    connection unless they name one).
    """
    import time

    from connector.cli.context import connector_for
    from connector.connections import DEFAULT
    from connector.errors import ConnectorError
    from connector.observe import wsgi
    from connector.state.store import StateStore
    from connector.triggers.dispatch import (
        Dispatcher,
        adopt_events,
        requeue_interrupted,
        requeue_parked,
        workflow_handler,
    )
    from connector.triggers.receiver import PATH, Inbox, Listener, make_app
    from connector.triggers.subscriptions import Subscription
    from connector.workflows.model import load

    store = StateStore(state_dir)
    secret = os.environ.get("WILLO_WEBHOOK_SECRET") or None
    with connector_for(connection=connection, store=store) as conn:
        wfs = [load(path, conn.catalog, connections=conn.pool_names()) for path in workflows]
        events = set()
        for wf in wfs:
            trig = wf.trigger
            m = conn.catalog.get(trig["use"], "trigger") if trig else None
            if m is None or m.data["strategy"] != "webhook":
                raise ConnectorError(
                    f"{wf.path}: /trigger: listen needs a webhook trigger "
                    "(willo.new_response, stage_change, new_comment, new_score)"
                )
            events.add(m.data["webhook"]["event"])
        stopping = threading.Event()
        starter = None
        if engine == "temporal":
            from connector.cli.temporal_cmd import temporal_settings

            settings = temporal_settings()
            from connector.engines.temporal.events import Starter, event_handler

            starter = Starter(settings)
            handler = event_handler(starter, wfs)
        else:
            handler = workflow_handler(conn, store, wfs, cancel=stopping)
        dispatcher = Dispatcher(conn, store, "webhook", handler, cancel=stopping)
        account = dispatcher.account
        if conn.connection_name == DEFAULT:
            adopt_events(store, "webhook", account)  # received before accounts: the default's
        requeue_interrupted(store, "webhook", dispatcher.accounts)
        requeue_parked(store, "webhook", dispatcher.accounts)  # parked by an outage: tried again at start
        listener: Listener | None = None
        sub: Subscription | None = None

        def health() -> dict[str, Any]:
            if sub is None:
                return {"subscription": {"managed": False}}
            info = sub.status()
            return {"subscription": info, **({} if info["live"] else {"status": "no_subscription"})}

        def subscribed() -> str | None:
            if no_subscribe:
                return None
            if sub is None:
                return "not subscribed yet"
            info = sub.status()
            return None if info["live"] else f"no live subscription: {info.get('reason')}"

        inbox = Inbox(
            store, secret, on_queued=lambda: listener.wake.set() if listener else None, account=account
        )
        service = _Service(store)
        probes = service.probes(health=health, checks=[subscribed], sources=["webhook"])
        try:
            listener = Listener(wsgi(probes, make_app(inbox, health)), host, port, dispatcher.one, stopping)
        except OSError as exc:
            raise ConnectorError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        service.upkeep.start()
        url = (public_url or f"http://{host}:{listener.port}").rstrip("/") + PATH
        if not no_subscribe:
            sub = Subscription(conn, store, url, events, secret)
        stop = _stop_on_signals()
        listener.start()
        say(f"listening on http://{host}:{listener.port}{PATH}")
        service.notify(host, listener.port)
        try:
            if sub is not None:
                hook = sub.start()
                say(f"subscribed {hook['key']} to {', '.join(sorted(events))}")
                while not stop.wait(store.leases.ttl / 3):
                    sub.check()
            else:
                stop.wait()
        finally:
            began = time.monotonic()
            listener.stop()
            if sub is not None:
                _, account = sub.stop(deadline=began + 1.5)
                say(account)
            if not listener.join(timeout=1.0 - (time.monotonic() - began)):
                say("stopped with a request in flight: the next start looks it up", "warning")
            service.stop()
            store.leases.release_all(keep=sub.lingering if sub is not None else ())
            if starter is not None:
                starter.close()


@click.group()
def state() -> None:
    """Inspect, rewind, prune, back up or vacuum the state store."""


def _ledger(store: Any, trigger_id: str, options: dict[str, Any], connection: str | None) -> tuple[str, str]:
    """``(ledger name, account id)`` of a polling trigger's ledger for ``connection``
    (its key is read for its fingerprint; nothing is sent). The ``default``
    connection's ledger may still have its name from before accounts."""
    from connector import connections
    from connector.triggers.polling import ledger_name

    conn = connections.load().get(connection, "--connection: ")
    account = conn.account().id
    name = ledger_name(trigger_id, options, account)
    if conn.name == connections.DEFAULT and not store.query("SELECT 1 FROM triggers WHERE name = ?", (name,)):
        legacy = ledger_name(trigger_id, options)
        if store.query("SELECT 1 FROM triggers WHERE name = ? AND account IS NULL", (legacy,)):
            return legacy, ""
    return name, account


def _webhook_account(connection: str | None) -> str:
    from connector import connections

    return connections.load().get(connection, "--connection: ").account().id


@state.command("show")
@click.argument("trigger_id", required=False)
@click.option("--with", "with_", multiple=True, metavar="K=V", help="The trigger's options.")
@connection_option
@state_dir_option
@json_option
def state_show(
    trigger_id: str | None,
    with_: tuple[str, ...],
    connection: str | None,
    state_dir: str | None,
    as_json: bool,
) -> None:
    """The store (its files' sizes, runs and events by status); or TRIGGER_ID's
    cursor, seen items, polls and events (of the account of --connection)."""
    from connector.errors import ConnectorError
    from connector.state.store import StateStore
    from connector.triggers.events import shown

    store = StateStore(state_dir)
    if trigger_id is None:
        info = _store_info(store, _webhook_account(connection) if connection else None)
    elif trigger_id.startswith("willo.") and trigger_id.split(".")[1] in (
        "new_response",
        "stage_change",
        "new_comment",
        "new_score",
    ):
        account = _webhook_account(connection)
        rows = store.query(
            "SELECT status, COUNT(*) AS n FROM events WHERE source = 'webhook'"
            " AND trigger = ? AND account IN (?, '') GROUP BY status",
            (trigger_id, account),
        )
        info = {
            "trigger": trigger_id,
            "account": account,
            "events": {shown(r["status"]): r["n"] for r in rows},
        }
    else:
        name, account = _ledger(store, trigger_id, parse_inputs(with_, flag="--with"), connection)
        row = store.query("SELECT * FROM triggers WHERE name = ?", (name,))
        if not row:
            raise ConnectorError(
                f"no state for {trigger_id} of account {account} in {store.path} (it has not been polled)"
            )
        info = dict(row[0])
        info["options"] = json.loads(info["options"])
        info["seen"] = store.query("SELECT COUNT(*) AS n FROM seen WHERE name = ?", (name,))[0]["n"]
        events = store.query(
            "SELECT status, COUNT(*) AS n FROM events WHERE source = 'poll' AND trigger = ? GROUP BY status",
            (name,),
        )
        info["events"] = {shown(r["status"]): r["n"] for r in events}
    if as_json:
        emit_json(info)
        return
    for k, val in info.items():
        if isinstance(val, dict) and k == "sizes":
            from connector.state.upkeep import human

            val = ", ".join(f"{part} {human(n)}" for part, n in val.items())
        click.echo(f"{k}: {val}")


def _store_info(store: Any, account: str | None = None) -> dict[str, Any]:
    """The store's sizes and counts; with ``account`` (-c), the counts of that
    account's runs, units, events and ledgers (those before accounts were the
    default connection's)."""
    from connector.connections import DEFAULT
    from connector.state.upkeep import retention_seconds, sizes
    from connector.triggers.events import shown

    args: tuple[str, ...] = ()
    where = ""  # the whole store
    if account is not None:
        adopted = account.startswith(f"{DEFAULT}/")  # rows from before accounts: '' or NULL
        where = " WHERE (account = ? OR IFNULL(account, '') = '')" if adopted else " WHERE account = ?"
        args = (account,)

    def count(table: str) -> int:
        return int(store.query(f"SELECT COUNT(*) FROM {table}{where}", args)[0][0])

    def by_status(table: str) -> dict[str, int]:
        rows = store.query(f"SELECT status, COUNT(*) AS n FROM {table}{where} GROUP BY status", args)
        return {shown(r["status"]) if table == "events" else r["status"]: r["n"] for r in rows}

    retention = retention_seconds()
    info: dict[str, Any] = {"path": str(store.path), "sizes": sizes(store)}
    if account is not None:
        info["account"] = account
    info.update(
        runs=by_status("runs"),
        units=count("units"),
        events=by_status("events"),
        ledgers=count("triggers"),
    )
    if account is None:  # seen items belong to a ledger, not to an account
        info["seen"] = store.query("SELECT COUNT(*) FROM seen")[0][0]
    info["retention_days"] = None if retention is None else retention / 86400
    return info


@state.command("prune")
@click.option(
    "--older-than",
    "older_than",
    metavar="AGE",
    help="Prune what finished before this age: 30d, 12h, 2w (default: WILLO_RETENTION_DAYS).",
)
@state_dir_option
@json_option
def state_prune(older_than: str | None, state_dir: str | None, as_json: bool) -> None:
    """Delete finished runs (succeeded, failed), their units, and done or dropped
    events older than AGE. Nothing unfinished is touched: running, interrupted,
    blocked or parked runs, queued, running or parked events, a run whose event is
    not done, a unit that may have been sent. `state vacuum` then gives the space
    back to the disk."""
    from connector.errors import ConfigError
    from connector.state.store import StateStore
    from connector.state.upkeep import parse_age, prune, retention_seconds

    seconds = parse_age(older_than) if older_than else retention_seconds()
    if seconds is None:
        raise ConfigError("state prune: give --older-than AGE (e.g. 30d) or set WILLO_RETENTION_DAYS")
    store = StateStore(state_dir)
    done = prune(store, seconds)
    if as_json:
        emit_json(done.as_dict())
        return
    click.echo(
        f"pruned {done.runs} runs ({done.units} units), {done.events} events and {done.leases} stale leases "
        f"older than {seconds / 86400:g} days"
    )
    kept = {k: n for k, n in done.kept.items() if n}
    if kept:
        click.echo(
            "kept as unfinished (or tied to unfinished work): "
            + ", ".join(f"{n} {k}" for k, n in kept.items())
        )


@state.command("backup")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@state_dir_option
@json_option
def state_backup(file: str, force: bool, state_dir: str | None, as_json: bool) -> None:
    """Copy the state store to FILE with SQLite's online backup API: a consistent
    copy, safe while listen, poll or serve keep writing. Restore by stopping them and
    putting FILE in place of state.sqlite3 (removing its -wal and -shm files)."""
    from connector.state.store import StateStore
    from connector.state.upkeep import backup, human

    info = backup(StateStore(state_dir), file, overwrite=force)
    if as_json:
        emit_json(info)
        return
    click.echo(f"backed up {info['source']} to {info['backup']} ({human(info['bytes'])}, {info['seconds']}s)")


@state.command("vacuum")
@state_dir_option
@json_option
def state_vacuum(state_dir: str | None, as_json: bool) -> None:
    """Rewrite the store without the space prune freed, and truncate its WAL."""
    from connector.state.store import StateStore
    from connector.state.upkeep import human, vacuum

    info = vacuum(StateStore(state_dir))
    if as_json:
        emit_json(info)
        return
    b, a = info["before"], info["after"]
    click.echo(
        f"vacuumed: file {human(b['file'])} -> {human(a['file'])}, WAL {human(b['wal'])} -> {human(a['wal'])}"
    )


@state.command("reset")
@click.argument("trigger_id")
@click.option("--with", "with_", multiple=True, metavar="K=V", help="The trigger's options.")
@connection_option
@state_dir_option
def state_reset(
    trigger_id: str, with_: tuple[str, ...], connection: str | None, state_dir: str | None
) -> None:
    """Forget TRIGGER_ID's ledger (of the account of --connection): the next poll starts afresh."""
    from connector.state.store import StateStore
    from connector.triggers.polling import reset_ledger

    store = StateStore(state_dir)
    name, _ = _ledger(store, trigger_id, parse_inputs(with_, flag="--with"), connection)
    reset_ledger(store, name)
    click.echo(f"{name}: reset")
