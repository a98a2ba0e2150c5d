"""``run``, ``runs`` and ``resume``: workflows, their journal, and resuming."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from connector.cli.common import echo, emit_json, input_option, json_option, parse_inputs

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    envvar="WILLO_STATE_DIR",
    help="Folder of the state store (default: $XDG_STATE_HOME/willo-connector).",
)


def _load_mapping(path: str, what: str) -> Any:
    from connector.errors import InputError
    from connector.yamlio import YamlError, load_file

    try:
        return load_file(path).data
    except YamlError as exc:
        raise InputError(f"{what}: {exc}") from None


def _collect_inputs(inputs: tuple[str, ...], input_file: str | None, schema: Any) -> dict[str, Any]:
    from connector.errors import InputError

    values: dict[str, Any] = {}
    if input_file:
        data = _load_mapping(input_file, "--input-file")
        if not isinstance(data, dict):
            raise InputError(f"{input_file}: --input-file must hold a mapping of inputs")
        values.update(data)
    values.update(parse_inputs(inputs, (schema or {}).get("properties")))
    return values


def _report(result: Any, as_json: bool) -> None:
    from connector.cli.call_cmd import show_requests
    from connector.workflows.runner import summarize

    if as_json:
        emit_json(result.as_dict())
    else:
        head = f"run {result.run_id}" if result.run_id else "dry run"
        click.echo(f"{head}: {result.workflow}")
        for step in result.steps:
            if result.dry_run and step.requests:
                click.echo(f"  step {step.id} ({step.action}) would send:")
                show_requests(step.requests)
            detail = step.error if step.error else summarize(step.output)
            echo(f"  {step.status:<9} {step.id:<16} {step.action:<36} {detail}")
        click.echo(result.status if not result.dry_run else f"{result.status} (dry run: nothing sent)")
    if result.status != "succeeded":
        if not as_json:
            echo(f"error: {result.error}", err=True)
        raise SystemExit(1)


@click.command()
@click.argument("workflow", type=click.Path(dir_okay=False))
@input_option("One workflow input; K=@file.csv loads rows, K=@file.json a value. Repeatable.")
@click.option(
    "--input-file", type=click.Path(exists=True, dir_okay=False), help="A JSON or YAML mapping of inputs."
)
@click.option(
    "--event",
    type=click.Path(exists=True, dir_okay=False),
    help="A JSON or YAML trigger event, for a test run.",
)
@click.option("--dry-run", is_flag=True, help="Send nothing; print each request; use samples as outputs.")
@click.option(
    "--cassette", type=click.Path(dir_okay=False), help="Answer every request from this vcrpy cassette."
)
@click.option(
    "--sandbox",
    "use_sandbox",
    is_flag=True,
    help="Run against the local simulator with demo data (no Willo account needed).",
)
@state_dir_option
@json_option
def run(
    workflow: str,
    inputs: tuple[str, ...],
    input_file: str | None,
    event: str | None,
    dry_run: bool,
    cassette: str | None,
    use_sandbox: bool,
    state_dir: str | None,
    as_json: bool,
) -> None:
    """Validate and run WORKFLOW (a workflow YAML file)."""
    from connector.cli.context import connector_for
    from connector.engines.local import LocalExecutor
    from connector.state.store import StateStore
    from connector.workflows.model import load
    from connector.workflows.runner import Runner, check_event

    with connector_for(dry_run=dry_run, sandbox=use_sandbox, cassette=cassette) as conn:
        wf = load(workflow, conn.catalog)
        values = _collect_inputs(inputs, input_file, wf.data.get("inputs"))
        trigger = None
        if event:
            trigger = _load_mapping(event, "--event")
            check_event(wf, conn, trigger, event)
        if use_sandbox and not as_json:
            click.echo(f"sandbox: {conn.client.settings.base_url}", err=True)
        store = None if dry_run else StateStore(state_dir)
        result = Runner(conn, wf, store=store, progress=not as_json, executor=LocalExecutor()).start(
            values, trigger
        )
    _report(result, as_json)


def _status(row: Any, store: Any) -> str:
    """A run's status; ``running`` only while a live process holds its lease."""
    from connector.workflows.runner import run_is_live

    status = str(row["status"])
    if status == "running" and not run_is_live(store, row["id"]):
        return "interrupted"
    return status


def _find_run(store: Any, run_id: str) -> Any:
    from connector.errors import ConnectorError

    rows = store.find_run(run_id)
    if not rows:
        raise ConnectorError(f"no run {run_id!r} in {store.path} (see willo-connector runs)")
    if len(rows) > 1:
        raise ConnectorError(f"{run_id!r} matches {len(rows)} runs; give more of the id")
    return rows[0]


@click.group(invoke_without_command=True)
@click.option("--limit", default=20, show_default=True, help="How many runs, newest first.")
@state_dir_option
@json_option
@click.pass_context
def runs(ctx: click.Context, limit: int, state_dir: str | None, as_json: bool) -> None:
    """List journaled runs, newest first; `runs resolve` settles a blocked unit."""
    if ctx.invoked_subcommand is not None:
        return
    import datetime

    from connector.redaction import scrub
    from connector.state.store import StateStore

    store = StateStore(state_dir)
    rows = store.runs(limit)
    items = []
    for row in rows:
        units = store.units(row["id"])
        done = sum(1 for u in units.values() if u["status"] == "succeeded")
        items.append(
            {
                "id": row["id"],
                "workflow": row["name"],
                "file": row["workflow"],
                "status": _status(row, store),
                "error": scrub(row["error"]) if row["error"] else row["error"],
                "attempts": row["attempts"],
                "units_succeeded": done,
                "units": len(units),
                "started_at": datetime.datetime.fromtimestamp(row["started_at"], datetime.UTC).isoformat(
                    timespec="seconds"
                ),
            }
        )
    if as_json:
        emit_json(items)
        return
    if not items:
        click.echo("no runs yet")
    for it in items:
        click.echo(
            f"{it['id']}  {it['status']:<11} {it['workflow']:<24} "
            f"{it['units_succeeded']}/{it['units']} units  {it['started_at']}"
            + (f"  {it['error']}" if it["error"] else "")
        )


@runs.command("resolve")
@click.argument("run_id")
@click.option("--step", required=True, help="The step id of the unit to settle.")
@click.option("--item", type=int, help="The foreach item (0-based) of the unit, for a foreach step.")
@click.option("--sent", "sent", flag_value=True, default=None, help="It landed in Willo (you checked).")
@click.option("--not-sent", "sent", flag_value=False, help="It is not in Willo: resume sends it again.")
@click.option(
    "--output-json",
    metavar="JSON",
    help="With --sent: the unit's output, the resource as Willo shows it (checked against the "
    "action's output schema). Default: the 2xx body kept when it was sent, else the action's "
    "reconcile lookup.",
)
@state_dir_option
@json_option
def resolve(
    run_id: str,
    step: str,
    item: int | None,
    sent: bool | None,
    output_json: str | None,
    state_dir: str | None,
    as_json: bool,
) -> None:
    """Settle a unit that may have been sent (after checking Willo), so `resume` can go on."""
    import json

    from connector.cli.context import connector_for
    from connector.errors import InputError
    from connector.state.store import StateStore
    from connector.triggers.dispatch import requeue_event_of
    from connector.workflows.runner import settle

    if sent is None:
        raise InputError("runs resolve: say --sent or --not-sent")
    output = None
    if output_json is not None:
        if not sent:
            raise InputError("runs resolve: --output-json goes with --sent")
        try:
            output = json.loads(output_json)
        except (ValueError, RecursionError) as exc:
            raise InputError(f"--output-json: not JSON ({str(exc)[:80]})") from None
    store = StateStore(state_dir)
    row = _find_run(store, run_id)
    with connector_for() as conn:
        done = settle(store, lambda: conn, conn.catalog, row["id"], step, item, sent=sent, output=output)
    event = requeue_event_of(store, row)
    done = {"run_id": row["id"], **done, "event_requeued": event}
    if as_json:
        emit_json(done)
        return
    where = f"step {step}" + (f" item {done['item']}" if done["item"] != -1 else "")
    click.echo(f"run {row['id']}: {where} settled as {done['status']}")
    if event is not None:
        click.echo(f"event {event} requeued: the listener or poller resumes the run")
    else:
        click.echo(f"continue with: willo-connector resume {row['id']}")


@click.command()
@click.argument("run_id")
@state_dir_option
@json_option
def resume(run_id: str, state_dir: str | None, as_json: bool) -> None:
    """Continue RUN_ID without resending any step or item that completed."""
    import json

    from connector.cli.context import connector_for
    from connector.engines.local import LocalExecutor
    from connector.errors import ConnectorError
    from connector.state.store import StateStore
    from connector.triggers.dispatch import requeue_event_of
    from connector.workflows.model import load
    from connector.workflows.runner import Runner

    store = StateStore(state_dir)
    row = _find_run(store, run_id)
    if row["status"] == "succeeded":
        raise ConnectorError(f"run {row['id']} already succeeded; nothing to resume")
    with connector_for() as conn:
        wf = load(Path(row["workflow"]), conn.catalog, text=row["source"])
        runner = Runner(conn, wf, store=store, progress=not as_json, executor=LocalExecutor())
        settings = json.loads(row["settings"] or "{}")
        settings.update(pid=os.getpid(), owner=store.leases.owner)
        with store.tx() as db:
            db.execute("UPDATE runs SET settings = ? WHERE id = ?", (json.dumps(settings), row["id"]))
        result = runner.resume(row["id"], json.loads(row["inputs"]), json.loads(row["trigger"]))
    if result.status == "succeeded":
        requeue_event_of(store, row)  # its parked event: redispatched, it finds the run done
    _report(result, as_json)
