"""``worker``: Temporal workers for the accounts given; and the settings every command
on the Temporal engine shares (``run --engine temporal``, ``runs --engine temporal``,
``listen --engine temporal``). ``temporalio`` is imported only from here on."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import click

from connector.cli.common import echo


def temporal_settings() -> Any:
    """The cluster's settings from the environment; one-line errors for a missing extra
    or setting."""
    from connector.engines.temporal import TemporalSettings, require

    require()
    return TemporalSettings.from_env()


@click.command()
@click.option(
    "-c",
    "--connection",
    "names",
    multiple=True,
    metavar="NAME",
    help="An account (connection: `default` or the config file's) whose units this worker runs; "
    "repeatable (default: default).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 512),
    default=16,
    show_default=True,
    help="Units this process runs at a time.",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(0, 3600),
    default=30.0,
    show_default=True,
    help="On SIGTERM or Ctrl-C: seconds units in flight may take to finish before they are handed back.",
)
@click.option(
    "--unit-rate",
    type=click.FloatRange(0.001, 100000, min_open=False),
    help="Units per second each account's task queue hands out, across all workers (default: the "
    "account's WILLO_RATE_LIMIT, within its per-second and per-minute limits).",
)
def worker(names: tuple[str, ...], concurrency: int, drain_timeout: float, unit_rate: float | None) -> None:
    """Run Temporal workers: workflows of any account, and the units of the accounts
    given. Start as many as you like, on any machines (docs/temporal.md)."""
    from connector import connections as named

    known = named.load()
    for name in names:
        known.get(name, "--connection: ")  # unknown: the closest names, before anything starts
    settings = temporal_settings()
    from connector.engines.temporal import accounts
    from connector.engines.temporal.worker import WorkerOptions, serve

    options = WorkerOptions(
        accounts=list(dict.fromkeys(names)) or [accounts.DEFAULT],
        concurrency=concurrency,
        drain=drain_timeout,
        unit_rate=unit_rate,
    )
    fleet = accounts.fleet_of(known, options.accounts)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if not stop.is_set():
                echo(f"stopping: no new work; units in flight have {drain_timeout:g}s to finish", err=True)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)

        def ready(queues: list[str]) -> None:
            rates = ", ".join(
                f"{n}: {r:g} units/s" if (r := unit_rate or fleet.unit_rate(n)) else f"{n}: no limit"
                for n in options.accounts
            )
            where = f"{settings.address} ({settings.namespace})"
            echo(f"worker on {where}, task queues {', '.join(queues)}; {rates}", err=True)

        await serve(settings, fleet, options, stop, ready)

    try:
        asyncio.run(main())
    finally:
        fleet.close()
    echo("worker stopped", err=True)
