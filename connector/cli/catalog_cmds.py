"""Catalog commands: plugins, actions, triggers, show, catalog, options, validate."""

from __future__ import annotations

from typing import Any

import click

from connector.cli.common import LazySubcommands, emit_json, json_option, parse_inputs


def _catalog() -> Any:
    from connector.catalog.index import get_catalog

    return get_catalog()


PLUGINS_SUBCOMMANDS = {
    "verify": ("connector.cli.verify_cmd", "verify", "Check a plugin's conformance; list every problem."),
}


@click.group(
    cls=LazySubcommands,
    subcommands=PLUGINS_SUBCOMMANDS,
    invoke_without_command=True,
    no_args_is_help=False,
)
@json_option
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """Loaded plugins, their versions and sources, and any load errors.

    Exits 1 when a plugin failed to load or one of its manifests was rejected (the
    listing is printed in full first), so scripts and CI can tell a broken install.
    `plugins verify NAME` checks one plugin's conformance.
    """
    if ctx.invoked_subcommand is not None:
        return
    from connector.catalog.plugins import get_host

    host = get_host()
    cat = _catalog()
    infos = [info.as_dict() for info in host.plugins.values()]
    for info in infos:
        info["manifests"] = sorted(m.id for m in cat.manifests.values() if m.plugin == info["name"])
    if as_json:
        emit_json({"plugins": infos, "manifest_problems": cat.problems})
    else:
        for info in infos:
            state = "FAILED" if info["errors"] else "ok"
            click.echo(
                f"{info['name']} {info['version']}  [{state}]  {info['source']}  "
                f"({len(info['manifests'])} manifests)"
            )
            for err in info["errors"]:
                click.echo(f"  error: {err}")
        for problem in cat.problems:
            click.echo(f"manifest error: {problem}")
    if host.failures or cat.problems:
        ctx.exit(1)


def _listing(kind: str, as_json: bool) -> None:
    items = _catalog().of_kind(kind)
    if as_json:
        emit_json([m.summary() for m in items])
        return
    width = max((len(m.id) for m in items), default=0)
    for m in items:
        click.echo(f"{m.id:<{width}}  {m.title}")


@click.command()
@json_option
def actions(as_json: bool) -> None:
    """List the actions in the catalog."""
    _listing("action", as_json)


@click.command()
@json_option
def triggers(as_json: bool) -> None:
    """List the triggers in the catalog."""
    _listing("trigger", as_json)


def _type_of(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "|".join(str(v) for v in schema["enum"])
    t = schema.get("type", "any")
    text = "/".join(t) if isinstance(t, list) else str(t)
    if "format" in schema:
        text += f" ({schema['format']})"
    return text


@click.command()
@click.argument("manifest_id")
@json_option
def show(manifest_id: str, as_json: bool) -> None:
    """Show one manifest: description, inputs, output schema, sample."""
    import json

    m = _catalog().get(manifest_id)
    if as_json:
        emit_json({**m.data, "_source": {"path": m.path, "plugin": m.plugin}})
        return
    click.echo(f"{m.id} ({m.kind}): {m.title}")
    if m.deprecation():
        click.echo(f"  DEPRECATED: {m.deprecation()}")
    click.echo(f"  {m.data['description']}")
    click.echo(f"  version: {m.version or 'not declared'}")
    click.echo(f"  source: {m.path} (plugin {m.plugin})")
    if m.request:
        click.echo(f"  request: {m.request['method']} {m.request['path']}")
    elif m.handler:
        click.echo(f"  handler: {m.handler}")
    if m.kind == "trigger":
        click.echo(f"  strategy: {m.data['strategy']}")
    props = m.input_schema.get("properties", {})
    required = set(m.input_schema.get("required", []))
    click.echo("inputs:" if props else "inputs: none")
    for name, schema in props.items():
        star = "*" if name in required else " "
        click.echo(f"  {star}{name}: {_type_of(schema)}  {schema.get('description', '')}")
    click.echo("sample output:")
    click.echo("  " + json.dumps(m.data["sample"], indent=2).replace("\n", "\n  "))


@click.command()
@json_option
def catalog(as_json: bool) -> None:
    """Every action and trigger with its schemas, sample and dynamic options (for UI builders)."""
    from connector import __version__

    cat = _catalog()

    def entry(m: Any) -> dict[str, Any]:
        props = m.input_schema.get("properties", {})
        options = {k: s["x-options"] for k, s in props.items() if "x-options" in s}
        return {
            **m.summary(),
            "input": m.input_schema,
            "output": m.output_schema,
            "sample": m.data["sample"],
            "options": options,
            "strategy": m.data.get("strategy"),
            "idempotent": m.idempotent,
        }

    doc = {
        "version": __version__,
        "actions": [entry(m) for m in cat.of_kind("action")],
        "triggers": [entry(m) for m in cat.of_kind("trigger")],
    }
    if as_json:
        emit_json(doc)
        return
    click.echo(
        f"{len(doc['actions'])} actions, {len(doc['triggers'])} triggers (use --json for the full export)"
    )


@click.command()
@click.argument("action_id")
@click.argument("field")
@click.option("--with", "with_", multiple=True, metavar="K=V", help="Extra inputs of the list action.")
@json_option
def options(action_id: str, field: str, with_: tuple[str, ...], as_json: bool) -> None:
    """List the live choices of an input FIELD of ACTION_ID (value and label)."""
    from connector.catalog.options import list_options
    from connector.workflows.runtime import Connector

    conn = Connector()
    choices = list_options(conn, action_id, field, parse_inputs(with_, flag="--with"))
    if as_json:
        emit_json(choices)
        return
    for choice in choices:
        click.echo(f"{choice['value']}  {choice['label']}")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--skip-secrets",
    is_flag=True,
    help="Do not require each secrets.NAME to be set (CI without the secrets); names are still checked.",
)
@json_option
def validate(paths: tuple[str, ...], skip_secrets: bool, as_json: bool) -> None:
    """Validate manifests and workflows; print FILE:LINE: /pointer: message per problem."""
    import functools
    import sys

    from connector.catalog.validation import validate_paths
    from connector.workflows.model import check_document, deprecations

    check = functools.partial(check_document, check_secrets=not skip_secrets)
    results = validate_paths(paths, check, deprecations)
    if as_json:
        emit_json({"ok": all(r["ok"] for r in results), "files": results})
    else:
        for r in results:
            if r["ok"]:
                click.echo(f"{r['path']}: ok ({r['kind']})")
            for problem in r["problems"]:
                click.echo(problem, err=True)
            for warning in r["warnings"]:
                click.echo(f"warning: {warning}", err=True)
    if not all(r["ok"] for r in results):
        sys.exit(1)
