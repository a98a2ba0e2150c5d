"""``willo-connector record``: cassettes of a call, a run or every scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from connector.cli.common import emit_json, input_option, json_option, parse_inputs, parse_json_object

MODES = ("rewrite", "all", "new_episodes", "once", "none")

sandbox_option = click.option(
    "--sandbox",
    "use_sandbox",
    is_flag=True,
    help="Record against a fresh local simulator (demo data). Without it: the live account of "
    "WILLO_API_KEY/WILLO_BASE_URL, where setups create (and leave) test resources.",
)
mode_option = click.option(
    "--record-mode",
    "mode",
    type=click.Choice(MODES),
    default="rewrite",
    show_default=True,
    help="pytest-recording's modes: rewrite starts the cassette afresh; all appends; "
    "new_episodes records only requests the cassette lacks.",
)


def _warn_live(use_sandbox: bool) -> None:
    if not use_sandbox:
        click.echo("recording against the live account of WILLO_BASE_URL (key scrubbed)", err=True)


@click.group()
def record() -> None:
    """Record vcrpy cassettes (credentials filtered, the key scrubbed everywhere).

    Replay one with `willo-connector run WORKFLOW --cassette FILE`, the pytest plugin's
    willo_cassette fixture, or `willo-connector plugins verify NAME --cassettes DIR`.
    """


@record.command("call")
@click.argument("action_id")
@input_option("One input; K=@file.json / @file.csv loads a file. Repeatable.")
@click.option("--input-json", metavar="JSON", help="All inputs as one JSON object.")
@click.option(
    "-o", "--output", "cassette", required=True, type=click.Path(dir_okay=False), help="Cassette file."
)
@sandbox_option
@mode_option
@json_option
def record_call(
    action_id: str,
    inputs: tuple[str, ...],
    input_json: str | None,
    cassette: str,
    use_sandbox: bool,
    mode: str,
    as_json: bool,
) -> None:
    """Call ACTION_ID once and record every request it makes into a cassette.

    A cassette named ACTION_ID.yaml also has its inputs saved in inputs.json beside it,
    where `plugins verify` and the replay tests look for them."""
    from connector.kit.recording import record_call as do_record
    from connector.kit.recording import save_inputs, target

    _warn_live(use_sandbox)
    with target(sandbox=use_sandbox) as t:
        manifest = t.conn.catalog.get(action_id, "action")
        values = parse_json_object(input_json, "--input-json") if input_json else {}
        values.update(parse_inputs(inputs, manifest.input_schema.get("properties")))
        result = do_record(t, action_id, values, cassette, mode)
    if Path(cassette).name == f"{action_id}.yaml":  # the layout verify and replays read
        save_inputs(Path(cassette).parent, {action_id: values})
    _done(as_json, {"cassette": cassette, "action": action_id, "inputs": values, "output": result.output})


@record.command("run")
@click.argument("workflow", type=click.Path(exists=True, dir_okay=False))
@input_option("One workflow input; K=@file.csv loads rows, K=@file.json a value. Repeatable.")
@click.option("--input-file", type=click.Path(exists=True, dir_okay=False), help="A JSON or YAML mapping.")
@click.option("--event", type=click.Path(exists=True, dir_okay=False), help="A trigger event for the run.")
@click.option(
    "-o", "--output", "cassette", required=True, type=click.Path(dir_okay=False), help="Cassette file."
)
@sandbox_option
@mode_option
@json_option
def record_run(
    workflow: str,
    inputs: tuple[str, ...],
    input_file: str | None,
    event: str | None,
    cassette: str,
    use_sandbox: bool,
    mode: str,
    as_json: bool,
) -> None:
    """Run WORKFLOW once and record every request of every step into a cassette."""
    from connector.cli.run_cmd import _collect_inputs, _load_mapping
    from connector.kit.recording import record_run as do_record
    from connector.kit.recording import target
    from connector.workflows.model import load

    _warn_live(use_sandbox)
    with target(sandbox=use_sandbox) as t:
        wf = load(workflow, t.conn.catalog)
        values = _collect_inputs(inputs, input_file, wf.data.get("inputs"))
        trigger = _load_mapping(event, "--event") if event else None
        result = do_record(t, workflow, values, cassette, event=trigger, mode=mode)
    summary = {"cassette": cassette, "workflow": workflow, "status": result.status, "error": result.error}
    _done(as_json, summary)
    if result.status != "succeeded":
        raise SystemExit(1)


@record.command("scenarios")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Folder of the cassettes and inputs.json (default: the scenario file's folder).",
)
@click.option("--only", multiple=True, metavar="ID", help="Record only this scenario (repeatable).")
@sandbox_option
@mode_option
@json_option
def record_scenarios(
    file: str, out: str | None, only: tuple[str, ...], use_sandbox: bool, mode: str, as_json: bool
) -> None:
    """Record one cassette per scenario of FILE (a scenarios.yaml) as OUT/<id>.yaml."""
    from connector.kit.recording import record_scenarios as do_record
    from connector.kit.recording import target

    _warn_live(use_sandbox)
    with target(sandbox=use_sandbox) as t:
        done = do_record(t, file, out or Path(file).parent, only=only, mode=mode)
    if as_json:
        emit_json([{"id": r.id, "cassette": str(r.cassette), "inputs": r.inputs} for r in done])
        return
    for r in done:
        click.echo(f"recorded {r.cassette}")


def _done(as_json: bool, summary: dict[str, Any]) -> None:
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"recorded {summary['cassette']}")
