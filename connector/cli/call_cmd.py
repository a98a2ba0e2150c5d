"""``willo-connector call``: one action, live or as a dry run."""

from __future__ import annotations

from typing import Any

import click

from connector.cli.common import (
    connection_option,
    echo,
    emit_json,
    emit_list,
    emit_records,
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
@connection_option
@json_option
@click.option(
    "--jsonl",
    is_flag=True,
    help="JSON Lines on stdout: a list's records one a line (every page with all=true, "
    "as they arrive); any other output on one line.",
)
def call(
    action_id: str,
    inputs: tuple[str, ...],
    input_json: str | None,
    dry_run: bool,
    use_sandbox: bool,
    cassette: str | None,
    connection: str | None,
    as_json: bool,
    jsonl: bool,
) -> None:
    """Call the action ACTION_ID with the given inputs and print its output.

    A list read with all=true is printed as its pages arrive, never held whole: one
    record a line with --jsonl; with --json (or without), indented on a terminal and on
    one line elsewhere, with "count" last.
    """
    from connector.cli.context import connector_for
    from connector.workflows.runtime import Stream

    if as_json and jsonl:
        raise click.UsageError("use --json or --jsonl, not both")
    with connector_for(
        dry_run=dry_run, sandbox=use_sandbox, cassette=cassette, connection=connection
    ) as conn:
        manifest = conn.catalog.get(action_id, "action")
        if manifest.deprecation():
            say(f"warning: {manifest.deprecation()}", "warning")
        values = parse_json_object(input_json, "--input-json") if input_json else {}
        values.update(parse_inputs(inputs, manifest.input_schema.get("properties")))
        result = conn.stream(action_id, values)
        if isinstance(result, Stream):
            if jsonl:
                emit_records(result.batches)
            else:
                head = {k: v for k, v in result.envelope().items() if k != "count"}
                emit_list(head, result.items, result.batches, lambda: {"count": result.count})
            return
    if dry_run and (as_json or jsonl):
        out = {"action": result.action, "dry_run": True, "requests": result.requests, "output": result.output}
        if jsonl:
            emit_records([[out]])
        else:
            emit_json(out)
        return
    if jsonl:
        items = ((manifest.request or {}).get("pagination") or {}).get("items")
        records = result.output.get(items) if items and isinstance(result.output, dict) else None
        emit_records([records if isinstance(records, list) else [result.output]])
        return
    if as_json:
        emit_json(result.output)
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
