"""``willo-connector new plugin|action|trigger``: the plugin scaffold."""

from __future__ import annotations

import click


@click.group()
def new() -> None:
    """Start a plugin, or add an action or a trigger to one."""


@new.command("plugin")
@click.argument("name")
@click.option(
    "--dir", "directory", type=click.Path(file_okay=False), help="Folder to create (default: ./willo-NAME)."
)
@click.option("--no-record", is_flag=True, help="Do not record the cassettes now (record them later).")
def new_plugin(name: str, directory: str | None, no_record: bool) -> None:
    """Write a pip-installable plugin NAME (the namespace of its ids) that works as
    written: a YAML action, a handler action, a polling trigger, a workflow, tests and
    their cassettes (recorded now against an in-process sandbox), a README."""
    from connector.kit.scaffold import new_plugin as make

    plugin = make(name, directory, record=not no_record)
    root = plugin.root
    click.echo(f"created {root}/ (plugin {plugin.name}, package {plugin.package})")
    click.echo("next:")
    click.echo(f"  cd {root} && python -m pip install -e '.[test]'")
    click.echo("  python -m pytest                         # the sandbox and the recorded cassettes")
    click.echo(f"  willo-connector plugins verify {plugin.name}")


def _part(kind: str) -> click.Command:
    @click.command(kind)
    @click.argument("name")
    @click.option(
        "--dir",
        "directory",
        type=click.Path(exists=True, file_okay=False),
        help="The plugin's folder (default: the one holding the current folder).",
    )
    @click.option(
        "--handler",
        is_flag=True,
        help="With a Python handler in handlers.py (a poll handler for a trigger) instead of YAML only.",
    )
    @click.option("--no-record", is_flag=True, help="Do not record its cassette now.")
    def command(name: str, directory: str | None, handler: bool, no_record: bool) -> None:
        from connector.kit.scaffold import new_part

        for path in new_part(kind, name, directory, handler=handler, record=not no_record):
            click.echo(f"wrote {path}")

    command.__doc__ = (
        f"Add a working {'polling trigger' if kind == 'trigger' else 'action'} NAME to the plugin, "
        "with a scenario that exercises it and its cassette (recorded against an in-process sandbox)."
    )
    return command


new.add_command(_part("action"))
new.add_command(_part("trigger"))
