"""``willo-connector export docs`` and ``export manifest-reference``: Markdown from the
catalog and from the manifest schema (subcommands of the ``export`` group)."""

from __future__ import annotations

import click


@click.command("docs")
@click.argument("ids", nargs=-1)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the pages.")
@click.option("--plugin", metavar="NAME", help="Only the actions and triggers of this plugin.")
def docs(ids: tuple[str, ...], out: str, plugin: str | None) -> None:
    """Write a Markdown page per action and trigger (all, those of --plugin, or IDS),
    and an index.md, into OUT: for a plugin's README or site."""
    from connector.catalog.index import get_catalog
    from connector.catalog.plugins import get_host
    from connector.errors import ConnectorError
    from connector.kit.docs import export_docs

    if plugin is not None and plugin not in get_host().plugins:
        raise ConnectorError(f"no plugin {plugin!r} is installed (see willo-connector plugins)")
    written = export_docs(get_catalog(), out, plugin=plugin, ids=ids)
    click.echo(f"wrote {len(written) - 1} pages and {written[-1]}")


@click.command("manifest-reference")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to this file, not stdout.")
def manifest_reference(output: str | None) -> None:
    """The manifest reference (docs/manifest-reference.md), generated from the manifest
    JSON Schema's descriptions."""
    from pathlib import Path

    from connector.kit.docs import manifest_reference as reference

    text = reference()
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
