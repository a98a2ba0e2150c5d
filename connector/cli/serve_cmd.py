"""``willo-connector serve DIR``: every workflow of a folder, in one process."""

from __future__ import annotations

import signal
from typing import Any

import click

from connector.cli.run_cmd import state_dir_option


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address of the webhook receiver.")
@click.option("--port", default=8780, show_default=True, type=click.IntRange(0, 65535))
@click.option("--public-url", help="Base URL Willo can reach the receiver at (default http://HOST:PORT).")
@click.option(
    "--no-subscribe", is_flag=True, help="Do not manage webhook subscriptions (they exist already)."
)
@state_dir_option
def serve(
    directory: str, host: str, port: int, public_url: str | None, no_subscribe: bool, state_dir: str | None
) -> None:
    """Serve every workflow in DIRECTORY until SIGTERM or Ctrl-C: schedules, polling
    triggers at their interval, and the webhook receiver for webhook triggers.

    A stop lets the running unit finish; the run resumes at the next start. A
    schedule missed while serve was down runs once at start (catch_up: false skips it).
    """
    from connector.cli.context import connector_for
    from connector.errors import ConnectorError
    from connector.serve import Receiver, Service, load_folder, webhook_secret
    from connector.state.store import StateStore

    store = StateStore(state_dir)
    with connector_for() as conn:
        workflows, notes = load_folder(directory, conn)
        for note in notes:
            click.echo(note, err=True)
        if not workflows:
            raise ConnectorError(f"{directory}: no workflow with a trigger to serve")
        receiver = Receiver(host, port, public_url, not no_subscribe, webhook_secret())
        service = Service(conn, store, workflows, receiver=receiver, say=lambda t: click.echo(t, err=True))

        def stop(signum: int, _frame: Any) -> None:
            click.echo("serve: stopping", err=True)
            service.stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop)
        try:
            service.start()
            for line in service.describe():
                click.echo(f"serve: {line}", err=True)
            click.echo(
                f"serve: {len(workflows)} workflows from {directory}; SIGTERM or Ctrl-C stops", err=True
            )
            service.loop()
        finally:
            service.shutdown()
        click.echo("serve: stopped", err=True)
