"""``willo-connector plugins verify NAME``: one plugin's conformance."""

from __future__ import annotations

import click

from connector.cli.common import emit_json, json_option


@click.command()
@click.argument("name")
@click.option(
    "--cassettes",
    type=click.Path(file_okay=False),
    help="Folder of the plugin's cassettes, inputs.json and scenarios.yaml "
    "(default: tests/cassettes, when it exists).",
)
@json_option
def verify(name: str, cassettes: str | None, as_json: bool) -> None:
    """Check plugin NAME: manifests, ids, docs, versions, samples, handler signatures,
    filters, and every action exercised (its cassette, or its scenario against the
    sandbox) in strict drift mode. Lists every problem; exits 1 if there is one."""
    from connector.kit.verify import verify as check

    report = check(name, cassettes=cassettes)
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo(f"plugin {report.plugin} {report.version} ({report.source})")
        for line in report.checked:
            click.echo(f"  ok: {line}")
        for problem in report.problems:
            click.echo(problem, err=True)
        verdict = "conforms" if report.ok else f"{len(report.problems)} problem(s)"
        click.echo(f"plugin {report.plugin}: {verdict}", err=not report.ok)
    if not report.ok:
        raise SystemExit(1)
