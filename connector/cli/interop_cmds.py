"""``mcp`` and ``export openapi``: the catalog for other engines (connector.interop).

Nothing here imports the MCP SDK at module level: ``--help`` and the listing commands
stay as fast as before; the SDK is loaded when a server starts.
"""

from __future__ import annotations

import click

from connector.cli.common import connection_option
from connector.cli.run_cmd import state_dir_option


@click.command()
@click.option(
    "--http",
    "http_addr",
    metavar="HOST:PORT",
    help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio (port 0 picks a free one).",
)
@click.option(
    "--token",
    envvar="WILLO_MCP_TOKEN",
    show_envvar=True,
    help="Bearer token HTTP clients must send; required on a non-loopback HOST (prefer the variable).",
)
@click.option("--dry-run", is_flag=True, help="Send nothing: every call returns the action's sample.")
@click.option("--read-only", "only_read", is_flag=True, help="Serve only actions that change nothing (GET).")
@click.option(
    "--actions",
    "patterns",
    multiple=True,
    metavar="GLOB",
    help="Serve only actions whose id matches (e.g. 'willo.list_*'); repeatable or comma-separated.",
)
@click.option(
    "--workflows",
    type=click.Path(exists=True, file_okay=False),
    help="Also serve each workflow in this folder as a tool (journaled like run).",
)
@click.option(
    "--tool-names",
    "naming",
    type=click.Choice(["id", "safe"]),
    default="id",
    show_default=True,
    envvar="WILLO_MCP_TOOL_NAMES",
    show_envvar=True,
    help="id: willo.get_interview; safe: willo-get_interview, for clients that refuse dots "
    "(Claude Desktop, OpenAI-backed agents).",
)
@click.option(
    "--sandbox",
    "use_sandbox",
    is_flag=True,
    help="Start the local simulator (demo data) and serve it instead of Willo.",
)
@connection_option
@state_dir_option
def mcp(
    http_addr: str | None,
    token: str | None,
    dry_run: bool,
    only_read: bool,
    patterns: tuple[str, ...],
    workflows: str | None,
    naming: str,
    use_sandbox: bool,
    connection: str | None,
    state_dir: str | None,
) -> None:
    """Serve the catalog as Model Context Protocol tools (stdio by default)."""
    from connector.cli.context import connector_for
    from connector.interop import mcp as interop

    interop.require_sdk()
    address = interop.parse_address(http_addr) if http_addr else None
    if address is not None:
        interop.check_token(address[0], token or None)
    with connector_for(
        dry_run=dry_run, sandbox=use_sandbox, connection=connection, state_dir=state_dir
    ) as conn:
        if not dry_run:
            conn.client.settings.authorization()  # no key: say so now, not on every call
        tools = interop.build_tools(
            conn, patterns=patterns, only_read=only_read, workflows=workflows, naming=naming
        )
        store = None
        if workflows and not dry_run:
            from connector.state.store import StateStore

            store = StateStore(state_dir)
        box = interop.Toolbox(conn, tools, store)
        server = interop.build_server(box)
        announce = interop.announcer(len(tools))
        if use_sandbox:
            click.echo(f"sandbox: {conn.client.settings.base_url}", err=True)
        if address is None:
            interop.serve_stdio(server, announce)
        else:
            interop.serve_http(server, address[0], address[1], token or None, announce)


@click.group()
def export() -> None:
    """Export the catalog in formats other tools import."""


@export.command("openapi")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="Output format (Power Automate imports JSON).",
)
@click.option(
    "--swagger2",
    is_flag=True,
    help="Swagger 2.0 with Power Automate's x-ms-* extensions, instead of OpenAPI 3.1.",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to this file, not stdout.")
@connection_option
def openapi(fmt: str, swagger2: bool, output: str | None, connection: str | None) -> None:
    """OpenAPI 3.1 of every request-backed action (servers and security scheme from the
    connection: `-c NAME`, else WILLO_BASE_URL and WILLO_AUTH_SCHEME); no API key is
    needed, and none is read."""
    import json
    from pathlib import Path

    from connector import connections
    from connector.catalog.index import get_catalog
    from connector.http.client import check_url
    from connector.interop import openapi as oas

    settings = connections.load().get(connection).settings(key=False, api_key=None)
    check_url(settings.base_url)
    catalog = get_catalog()
    doc = oas.swagger2(catalog, settings) if swagger2 else oas.document(catalog, settings)
    if fmt == "json":
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def _add_doc_exports() -> None:
    """``export docs`` and ``export manifest-reference`` live in their own module."""
    from connector.cli.export_docs import docs, manifest_reference

    export.add_command(docs)
    export.add_command(manifest_reference)


_add_doc_exports()
