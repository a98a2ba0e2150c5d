"""Trigger commands: ``poll``, ``listen`` and ``state``."""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Any

import click

from connector.cli.common import emit_json, json_option, parse_inputs
from connector.cli.run_cmd import engine_option, state_dir_option


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _print_event(trigger: str, event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(event, separators=(",", ":")))
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
@state_dir_option
@json_option
def poll(
    trigger_id: str,
    with_: tuple[str, ...],
    once: bool,
    interval: float,
    backfill: bool,
    workflow: str | None,
    state_dir: str | None,
    as_json: bool,
) -> None:
    """Poll TRIGGER_ID; print new items (one JSON object per line with --json)."""
    from connector.cli.context import connector_for
    from connector.state.store import StateStore
    from connector.triggers.dispatch import Dispatcher, requeue_interrupted, requeue_parked, workflow_handler
    from connector.triggers.polling import Poller
    from connector.workflows.model import load

    store = StateStore(state_dir)
    stop = _stop_on_signals()
    with connector_for() as conn:
        manifest = conn.catalog.get(trigger_id, "trigger")
        options = parse_inputs(with_, manifest.input_schema.get("properties"), flag="--with")
        poller = Poller(conn, store, trigger_id, options)
        workflows = [load(workflow, conn.catalog)] if workflow else []
        run_handler = workflow_handler(conn, store, workflows) if workflows else None

        def handle(trigger: str, payload: dict[str, Any], event: dict[str, Any]) -> str | None:
            _print_event(trigger, payload, as_json)
            return run_handler(trigger, payload, event) if run_handler else None

        dispatcher = Dispatcher(conn, store, "poll", handle)
        requeue_interrupted(store, "poll")
        requeue_parked(store, "poll")  # parked by an outage: tried again at each start
        dispatcher.drain(poller.name)  # events queued before a crash go first
        while True:
            result = poller.poll(backfill=backfill)
            if result.first and not backfill and not as_json:
                click.echo(f"{trigger_id}: first poll recorded what exists; new items from now on", err=True)
            dispatcher.drain(poller.name)
            if once or stop.wait(interval):
                break


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
@state_dir_option
def listen(
    workflows: tuple[str, ...],
    host: str,
    port: int,
    public_url: str | None,
    no_subscribe: bool,
    engine: str,
    state_dir: str | None,
) -> None:
    """Receive Willo webhooks and run each workflow whose trigger matches.

    SIGTERM or SIGINT stops it at once: no new run or unit starts, a unit in flight
    gets a second to finish (else it is looked up, never blindly resent, at the next
    start), and the subscription is removed unless another live listener serves it.

    With --engine temporal, each delivery starts one Temporal run per matching
    workflow (the event id in its workflow id: a duplicate delivery starts nothing),
    and the workers run it.
    """
    import time

    from connector.cli.context import connector_for
    from connector.errors import ConnectorError
    from connector.state.store import StateStore
    from connector.triggers.dispatch import Dispatcher, requeue_interrupted, requeue_parked, workflow_handler
    from connector.triggers.receiver import PATH, Inbox, Listener, make_app
    from connector.triggers.subscriptions import Subscription
    from connector.workflows.model import load

    store = StateStore(state_dir)
    secret = os.environ.get("WILLO_WEBHOOK_SECRET") or None
    with connector_for() as conn:
        wfs = [load(path, conn.catalog) for path in workflows]
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
        requeue_interrupted(store, "webhook")
        requeue_parked(store, "webhook")  # parked by an outage: tried again at each start
        listener: Listener | None = None
        sub: Subscription | None = None

        def health() -> dict[str, Any]:
            if sub is None:
                return {"subscription": {"managed": False}}
            info = sub.status()
            return {"subscription": info, **({} if info["live"] else {"status": "no_subscription"})}

        inbox = Inbox(store, secret, on_queued=lambda: listener.wake.set() if listener else None)
        try:
            listener = Listener(make_app(inbox, health), host, port, dispatcher.one, stopping)
        except OSError as exc:
            raise ConnectorError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        url = (public_url or f"http://{host}:{listener.port}").rstrip("/") + PATH
        if not no_subscribe:
            sub = Subscription(conn, store, url, events, secret)
        stop = _stop_on_signals()
        listener.start()
        click.echo(f"listening on http://{host}:{listener.port}{PATH}", err=True)
        try:
            if sub is not None:
                hook = sub.start()
                click.echo(f"subscribed {hook['key']} to {', '.join(sorted(events))}", err=True)
                while not stop.wait(store.leases.ttl / 3):
                    sub.check()
            else:
                stop.wait()
        finally:
            began = time.monotonic()
            listener.stop()
            if sub is not None:
                _, account = sub.stop(deadline=began + 1.5)
                click.echo(account, err=True)
            if not listener.join(timeout=1.0 - (time.monotonic() - began)):
                click.echo("stopped with a request in flight: the next start looks it up", err=True)
            store.leases.release_all(keep=sub.lingering if sub is not None else ())
            if starter is not None:
                starter.close()


@click.group()
def state() -> None:
    """Inspect or rewind a trigger's ledger in the state store."""


@state.command("show")
@click.argument("trigger_id")
@click.option("--with", "with_", multiple=True, metavar="K=V", help="The trigger's options.")
@state_dir_option
@json_option
def state_show(trigger_id: str, with_: tuple[str, ...], state_dir: str | None, as_json: bool) -> None:
    """Show TRIGGER_ID's cursor, seen items, polls and queued events."""
    from connector.errors import ConnectorError
    from connector.state.store import StateStore
    from connector.triggers.polling import ledger_name

    store = StateStore(state_dir)
    if trigger_id.startswith("willo.") and trigger_id.split(".")[1] in (
        "new_response",
        "stage_change",
        "new_comment",
        "new_score",
    ):
        rows = store.query(
            "SELECT status, COUNT(*) AS n FROM events WHERE source = 'webhook'"
            " AND trigger = ? GROUP BY status",
            (trigger_id,),
        )
        info: dict[str, Any] = {"trigger": trigger_id, "events": {r["status"]: r["n"] for r in rows}}
    else:
        name = ledger_name(trigger_id, parse_inputs(with_, flag="--with"))
        row = store.query("SELECT * FROM triggers WHERE name = ?", (name,))
        if not row:
            raise ConnectorError(f"no state for {name} in {store.path} (it has not been polled)")
        info = dict(row[0])
        info["options"] = json.loads(info["options"])
        info["seen"] = store.query("SELECT COUNT(*) AS n FROM seen WHERE name = ?", (name,))[0]["n"]
        events = store.query(
            "SELECT status, COUNT(*) AS n FROM events WHERE source = 'poll' AND trigger = ? GROUP BY status",
            (name,),
        )
        info["events"] = {r["status"]: r["n"] for r in events}
    if as_json:
        emit_json(info)
        return
    for k, val in info.items():
        click.echo(f"{k}: {val}")


@state.command("reset")
@click.argument("trigger_id")
@click.option("--with", "with_", multiple=True, metavar="K=V", help="The trigger's options.")
@state_dir_option
def state_reset(trigger_id: str, with_: tuple[str, ...], state_dir: str | None) -> None:
    """Forget TRIGGER_ID's ledger: the next poll starts afresh."""
    from connector.state.store import StateStore
    from connector.triggers.polling import ledger_name, reset_ledger

    store = StateStore(state_dir)
    name = ledger_name(trigger_id, parse_inputs(with_, flag="--with"))
    reset_ledger(store, name)
    click.echo(f"{name}: reset")
