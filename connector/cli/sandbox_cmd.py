"""``willo-connector sandbox``: the local Willo simulator in the foreground."""

from __future__ import annotations

import signal
import sys
from typing import Any

import click


def _rate(_ctx: Any, _param: Any, value: str) -> tuple[int, int]:
    from connector.errors import ConfigError
    from connector.http.pacing import parse_rate

    try:
        return parse_rate(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0 picks a free one).",
)
@click.option("--api-key", envvar="WILLO_SANDBOX_API_KEY", help="The owner's API key (default: random).")
@click.option(
    "--seed",
    type=click.Choice(["demo", "none"]),
    default="demo",
    show_default=True,
    help="demo: a small believable account; none: only the owner and reference data.",
)
@click.option(
    "--participants",
    default=0,
    type=click.IntRange(0, 10_000_000),
    show_default=True,
    help="Add N participants (a third completed) in one more interview, 'Bulk hiring' (benchmarks).",
)
@click.option(
    "--rate-limit",
    default="10/100",
    show_default=True,
    callback=_rate,
    help="Throttle per key: PER_SECOND/PER_MINUTE; 0 turns throttling off.",
)
@click.option(
    "--fail-rate",
    default=0.0,
    type=click.FloatRange(0, 1),
    show_default=True,
    help="Share of API requests answered with a fault (5xx or dropped connection).",
)
@click.option(
    "--latency-ms",
    default=0,
    type=click.IntRange(0, 60000),
    show_default=True,
    help="Delay added to every API request.",
)
@click.option("--allow-remote-webhooks", is_flag=True, help="Deliver webhooks to non-loopback targets too.")
def sandbox(
    host: str,
    port: int,
    api_key: str | None,
    seed: str,
    participants: int,
    rate_limit: tuple[int, int],
    fail_rate: float,
    latency_ms: int,
    allow_remote_webhooks: bool,
) -> None:
    """Run the local Willo simulator until Ctrl-C or SIGTERM."""
    from connector.sandbox import Sandbox, SandboxOptions

    box = Sandbox(
        SandboxOptions(
            host=host,
            port=port,
            api_key=api_key,
            seed=None if seed == "none" else seed,
            participants=participants,
            rate_limit=rate_limit,
            fail_rate=fail_rate,
            latency_ms=latency_ms,
            allow_remote_webhooks=allow_remote_webhooks,
        )
    )
    try:
        box.bind()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    click.echo(f"Willo sandbox listening on {box.base_url}", err=True)
    click.echo(f"WILLO_BASE_URL={box.base_url}")
    click.echo(f"WILLO_API_KEY={box.api_key}")
    for role, key in sorted(box.keys.items()):
        if role != "owner":
            click.echo(f"# {role} user's key: {key}")
    rate = "off" if rate_limit == (0, 0) else f"{rate_limit[0]}/s, {rate_limit[1]}/min"
    click.echo(f"throttling {rate}; Ctrl-C stops", err=True)
    sys.stdout.flush()
    try:
        box.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        box.stop()
        click.echo("sandbox stopped", err=True)
