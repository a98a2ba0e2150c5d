"""``willo-connector serve DIR``: every workflow of a folder, in one process."""

from __future__ import annotations

import signal
from typing import Any

import click

from connector.cli.common import connection_option, say
from connector.cli.run_cmd import engine_option, state_dir_option


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address of the webhook receiver.")
@click.option("--port", default=8780, show_default=True, type=click.IntRange(0, 65535))
@click.option("--public-url", help="Base URL Willo can reach the receiver at (default http://HOST:PORT).")
@click.option(
    "--no-subscribe", is_flag=True, help="Do not manage webhook subscriptions (they exist already)."
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve /health, /ready and /metrics on this port (they are on the receiver's port as well).",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address of --metrics-port.")
@engine_option
@connection_option
@state_dir_option
def serve(
    directory: str,
    host: str,
    port: int,
    public_url: str | None,
    no_subscribe: bool,
    metrics_port: int | None,
    metrics_host: str,
    engine: str,
    connection: str | None,
    state_dir: str | None,
) -> None:
    """Serve every workflow in DIRECTORY until SIGTERM or Ctrl-C: schedules, polling
    triggers at their interval, and the webhook receiver for webhook triggers.

    A stop lets the running unit finish; the run resumes at the next start. A
    schedule missed while serve was down runs once at start (catch_up: false skips it).
    /health, /ready and /metrics answer on the receiver's port and on --metrics-port;
    WILLO_RETENTION_DAYS prunes finished work; under systemd (Type=notify) it reports
    READY and pings the watchdog from its own probes. --connection names the account
    polled and whose webhooks are received (and the workflows' connection unless they
    name one).

    With --engine temporal, schedules are Temporal Schedules and polling triggers
    Temporal pollers (one per account and workflow, however many serve processes
    run, here or on other machines: a time or an item never starts two runs); serve
    creates or updates them at start, and each webhook delivery starts a Temporal run.
    `willo-connector worker` processes run them all. Stopping serve leaves them on
    Temporal.
    """
    from connector.cli.context import connector_for
    from connector.errors import ConnectorError
    from connector.observe import SystemdNotifier
    from connector.serve import Receiver, Service, load_folder, webhook_secret
    from connector.state.store import StateStore

    store = StateStore(state_dir)
    with connector_for(connection=connection, store=store) as conn:
        workflows, notes = load_folder(directory, conn)
        for note in notes:
            say(note)
        if not workflows:
            raise ConnectorError(f"{directory}: no workflow with a trigger to serve")
        receiver = Receiver(
            host, port, public_url, not no_subscribe, webhook_secret(), metrics_port, metrics_host
        )
        starter = None
        handler = None
        if engine == "temporal":
            starter, handler, workflows = _on_temporal(conn, workflows, directory)
        service = Service(conn, store, workflows, receiver=receiver, say=say, handler=handler)

        def stop(signum: int, _frame: Any) -> None:
            say("serve: stopping")
            service.stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop)
        notifier = None
        try:
            service.start()
            for line in service.describe():
                say(f"serve: {line}")
            if service.probe_server is not None:
                say(f"serve: metrics on {service.probe_url()}/metrics")
            say(f"serve: {len(workflows)} workflows from {directory}; SIGTERM or Ctrl-C stops")
            notifier = SystemdNotifier(service.probe_url()).start()
            service.loop()
        finally:
            if notifier is not None:
                notifier.stop()
            service.shutdown()
            if starter is not None:
                starter.close()
        say("serve: stopped")


def _on_temporal(conn: Any, workflows: list[Any], directory: str) -> tuple[Any, Any, list[Any]]:
    """Create or update the folder's schedules and pollers on Temporal; ``(starter, the
    webhook handler that starts Temporal runs, the workflows left to serve here: the
    webhook ones)``."""
    from connector.cli.temporal_cmd import temporal_settings

    settings = temporal_settings()
    from connector.engines.temporal import client as tc
    from connector.engines.temporal.events import Starter, event_handler
    from connector.serve import DEFAULT_INTERVAL

    account = conn.connection_name
    starter = Starter(settings)
    folder = str(directory)
    hooks = []
    try:
        for wf in workflows:
            trig = wf.trigger or {}
            strategy = conn.catalog.get(trig["use"], "trigger").data["strategy"]
            if strategy == "schedule":

                def ensure(client: Any, wf: Any = wf) -> Any:
                    return tc.ensure_schedule(client, settings, wf, account, folder)

                sid, created = starter.call(ensure)
                opts = trig.get("with") or {}
                what = "created" if created else "updated"
                zone = opts.get("timezone") or "UTC"
                say(f"serve: schedule {opts['cron']!r} ({zone}): {wf.name} on Temporal ({sid}, {what})")
            elif strategy == "polling":
                interval = float(trig.get("interval", DEFAULT_INTERVAL))

                def poller(client: Any, wf: Any = wf, trig: Any = trig, interval: float = interval) -> Any:
                    return tc.start_poller(
                        client,
                        settings,
                        wf,
                        trig["use"],
                        trig.get("with") or {},
                        interval=interval,
                        account=account,
                        update=True,
                        folder=folder,
                    )

                pid, started = starter.call(poller)
                what = "started" if started else "polling already; updated"
                say(f"serve: poll {trig['use']} every {interval:g}s: {wf.name} on Temporal ({pid}, {what})")
            else:
                hooks.append(wf)
    except BaseException:
        starter.close()
        raise
    return starter, (lambda wfs: event_handler(starter, wfs, account)), hooks
