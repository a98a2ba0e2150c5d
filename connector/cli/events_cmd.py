"""``willo-connector events``: the trigger event queue, as an operator sees it."""

from __future__ import annotations

import json
from typing import Any

import click

from connector.cli.common import emit_json, json_option
from connector.cli.run_cmd import state_dir_option

STATUS_HELP = "queued, running, parked, done or dropped"


@click.group()
def events() -> None:
    """List, show, retry or drop trigger events (webhook deliveries, polled items).

    Statuses: queued (waiting, or retrying after a failure that passes), running (a
    dispatcher has it), parked (failed for good, or past the retry horizon: see
    `events show ID` for why), done, dropped (set aside with `events drop`).
    """


@events.command("list")
@click.option(
    "--status", type=click.Choice(["queued", "running", "parked", "done", "dropped"]), help=STATUS_HELP
)
@click.option("--trigger", help="Only this trigger (an id such as willo.new_response, or a ledger name).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(0), help="Newest first; 0: all.")
@state_dir_option
@json_option
def events_list(
    status: str | None, trigger: str | None, limit: int, state_dir: str | None, as_json: bool
) -> None:
    """Events, newest first, with why each parked event failed."""
    from connector.redaction import scrub
    from connector.state.store import StateStore
    from connector.triggers.events import list_events

    found = list_events(StateStore(state_dir), status, trigger, limit)
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no events" + (f" {status}" if status else ""))
        return
    for e in found:
        click.echo(
            f"{e['id']:>6}  {e['status']:<8} {e['trigger']:<28} {e['attempts']:>2} tries  "
            f"{e['received_at']}"
            + (f"  run {e['run_id']}" if e["run_id"] else "")
            + (f"\n        {scrub(e['reason'])}" if e["reason"] else "")
        )


@events.command("show")
@click.argument("event_id", type=int)
@state_dir_option
@json_option
def events_show(event_id: int, state_dir: str | None, as_json: bool) -> None:
    """One event: status and why, attempts, its run, the payload."""
    from connector.redaction import scrub
    from connector.state.store import StateStore
    from connector.triggers.events import show

    info = show(StateStore(state_dir), event_id)
    if as_json:
        emit_json(info)
        return
    order = (
        "id", "status", "source", "trigger", "attempts", "received_at", "next_at", "failing_since",
        "why_parked", "error", "next", "owner", "run",
    )  # fmt: skip
    for key in order:
        val = info.get(key)
        if val is None or key == "reason":
            continue
        if key == "run":
            val = f"{val['id']} ({val['workflow']}: {val['status']})"
        click.echo(f"{key}: {scrub(str(val))}")
    click.echo("payload: " + scrub(json.dumps(info["payload"], indent=2, default=str)))


def _report(done: list[dict[str, Any]], failed: dict[int, str], as_json: bool, verb: str) -> None:
    if as_json:
        emit_json({verb: done, "refused": {str(k): v for k, v in failed.items()}})
    else:
        for d in done:
            click.echo(f"event {d['id']}: {d['was']} -> {d['status']}")
        for eid, why in failed.items():
            click.echo(f"error: event {eid}: {why}", err=True)
    if failed:
        raise SystemExit(1)


@events.command("retry")
@click.argument("event_ids", nargs=-1, metavar="[ID]...")
@click.option("--parked", is_flag=True, help="Every parked event (of --trigger, if given).")
@click.option("--trigger", help="With --parked: only this trigger's.")
@state_dir_option
@json_option
def events_retry(
    event_ids: tuple[str, ...], parked: bool, trigger: str | None, state_dir: str | None, as_json: bool
) -> None:
    """Queue events again, now, with a fresh retry horizon: the running listener,
    poller or serve picks them up (or the next one to start). An event a live
    process holds is left alone; a done or dropped one is refused."""
    from connector.errors import ConnectorError
    from connector.state.store import StateStore
    from connector.triggers.events import parse_ids, retry, retry_parked

    if bool(event_ids) == parked:
        raise click.UsageError("give event ids, or --parked (not both)")
    if trigger and not parked:
        raise click.UsageError("--trigger goes with --parked")
    store = StateStore(state_dir)
    done: list[dict[str, Any]] = []
    failed: dict[int, str] = {}
    if parked:
        result = retry_parked(store, trigger)
        done = [{"id": i, "was": "parked", "status": "queued"} for i in result["queued"]]
        failed = result["skipped"]
        if not done and not failed and not as_json:
            click.echo("no parked events")
    else:
        for eid in parse_ids(event_ids):
            try:
                done.append(retry(store, eid))
            except ConnectorError as exc:
                failed[eid] = str(exc)
    _report(done, failed, as_json, "queued")


@events.command("drop")
@click.argument("event_ids", nargs=-1, required=True, metavar="ID...")
@click.option("--reason", help="Why (kept with the event).")
@state_dir_option
@json_option
def events_drop(event_ids: tuple[str, ...], reason: str | None, state_dir: str | None, as_json: bool) -> None:
    """Set queued or parked events aside for good (status dropped). They stay in
    the store, so a redelivery is still a duplicate, until retention prunes them;
    a parked run of theirs is marked failed. An event a live process holds is left
    alone."""
    from connector.errors import ConnectorError
    from connector.state.store import StateStore
    from connector.triggers.events import drop, parse_ids

    store = StateStore(state_dir)
    done: list[dict[str, Any]] = []
    failed: dict[int, str] = {}
    for eid in parse_ids(event_ids):
        try:
            done.append(drop(store, eid, reason))
        except ConnectorError as exc:
            failed[eid] = str(exc)
    _report(done, failed, as_json, "dropped")
