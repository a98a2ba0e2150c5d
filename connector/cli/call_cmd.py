"""``willo-connector call``: one action, live or as a dry run."""

from __future__ import annotations

from typing import Any

import click

from connector.cli.common import (
    echo,
    emit_json,
    input_option,
    json_option,
    parse_inputs,
    parse_json_object,
    say,
)


@click.command()
@click.argument("action_id")
@input_option("One input; K=@file.json / @file.csv loads a file. Repeatable.")
@click.option("--input-json", metavar="JSON", help="All inputs as one JSON object.")
@click.option("--dry-run", is_flag=True, help="Send nothing: show the request and the sample output.")
@click.option(
    "--sandbox",
    "use_sandbox",
    is_flag=True,
    help="Start the local simulator (demo data) and call it instead of Willo.",
)
@click.option(
    "--cassette",
    type=click.Path(dir_okay=False),
    help="Answer every request from this vcrpy cassette (see `willo-connector record call`).",
)
@json_option
def call(
    action_id: str,
    inputs: tuple[str, ...],
    input_json: str | None,
    dry_run: bool,
    use_sandbox: bool,
    cassette: str | None,
    as_json: bool,
) -> None:
    """Call the action ACTION_ID with the given inputs and print its output."""
    from connector.cli.context import connector_for

    with connector_for(dry_run=dry_run, sandbox=use_sandbox, cassette=cassette) as conn:
        manifest = conn.catalog.get(action_id, "action")
        if manifest.deprecation():
            say(f"warning: {manifest.deprecation()}", "warning")
        values = parse_json_object(input_json, "--input-json") if input_json else {}
        values.update(parse_inputs(inputs, manifest.input_schema.get("properties")))
        result = conn.call(action_id, values)
    if as_json:
        emit_json(
            {"action": result.action, "dry_run": True, "requests": result.requests, "output": result.output}
            if dry_run
            else result.output
        )
        return
    if dry_run:
        show_requests(result.requests)
        click.echo("sample output (nothing was sent):")
    emit_json(result.output)


def show_requests(requests: list[dict[str, Any]]) -> None:
    """Each request as it would be sent: the URL with its query encoded as on the wire."""
    import json

    from connector.http.client import full_url

    for req in requests:
        if "handler" in req:
            echo(f"  would call handler {req['handler']} with {json.dumps(req['inputs'])}")
            continue
        echo(f"{req['method']} {full_url(req['url'], req['params'])}")
        for name, value in req["headers"].items():
            echo(f"  {name}: {value}")
        if req.get("json") is not None:
            echo("  " + json.dumps(req["json"], indent=2).replace("\n", "\n  "))
