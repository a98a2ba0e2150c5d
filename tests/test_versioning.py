"""Manifest versions and deprecation: shown by ``show``, warned by ``validate``,
``call`` and ``run``, and checked by the manifest schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.catalog import plugins, schemas
from connector.catalog.index import get_catalog
from connector.cli import main
from connector.yamlio import load_text
from tests.test_plugins import ACTION_YAML, make_plugin

OLD = ACTION_YAML.format(
    id="acme.count_old",
    tail="request: {method: GET, path: /departments/, query: {page_size: 1}}\n"
    "version: 1.4.0\n"
    "deprecated: {message: 'counts departments, not interviews', replacement: acme.count_new, since: 1.4.0}",
)
NEW = ACTION_YAML.format(
    id="acme.count_new", tail="request: {method: GET, path: /interviews/}\nversion: 2.0.0"
)
WORKFLOW = """\
workflow: 1
name: counting
steps:
  - id: fresh
    use: acme.count_new
  - id: stale
    use: acme.count_old
"""


@pytest.fixture
def acme(tmp_path: Path) -> Path:
    ep = make_plugin(
        tmp_path,
        "acmever",
        "from pathlib import Path\nfrom connector import hookimpl\n"
        "@hookimpl\ndef manifest_paths():\n    return [Path(__file__).parent]\n",
        {"old.yaml": OLD, "new.yaml": NEW},
    )
    plugins.set_host(plugins.build_host([ep]))
    wf = tmp_path / "counting.yaml"
    wf.write_text(WORKFLOW)
    return wf


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_show_prints_the_version_and_the_deprecation(acme: Path) -> None:
    out = invoke("show", "acme.count_old").stdout
    assert (
        "DEPRECATED: acme.count_old is deprecated since 1.4.0: counts departments, not interviews; "
        "use acme.count_new instead" in out
    )
    assert "version: 1.4.0" in out
    assert "version: 1.0.0" in invoke("show", "willo.get_user").stdout
    data = json.loads(invoke("show", "acme.count_old", "--json").stdout)
    assert data["deprecated"]["replacement"] == "acme.count_new"
    listed = {a["id"]: a for a in json.loads(invoke("actions", "--json").stdout)}
    assert listed["acme.count_old"]["deprecated"]["since"] == "1.4.0"
    assert listed["acme.count_new"]["version"] == "2.0.0"


def test_validate_warns_naming_file_line_and_step_but_passes(acme: Path) -> None:
    r = invoke("validate", str(acme))
    assert r.exit_code == 0, r.output
    assert r.stderr.strip() == (
        f"warning: {acme}:7: /steps/1/use: step stale: acme.count_old is deprecated since 1.4.0: "
        "counts departments, not interviews; use acme.count_new instead"
    )
    manifest = Path(get_catalog().get("acme.count_old").path)
    r = invoke("validate", str(manifest))
    assert (
        r.exit_code == 0 and f"warning: {manifest}:15: /deprecated: acme.count_old is deprecated" in r.stderr
    )
    r = invoke("validate", "--json", str(acme))
    assert json.loads(r.stdout)["files"][0]["warnings"][0].endswith("use acme.count_new instead")


def test_run_and_call_warn(acme: Path, sandbox) -> None:
    r = invoke("run", str(acme), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["status"] == "succeeded"  # stdout stays pure JSON
    # a log line: time, level, logger, message, and the run's context
    assert " warning connector.workflows." in r.stderr
    assert "step stale: acme.count_old is deprecated" in r.stderr and "step=stale" in r.stderr
    r = invoke("call", "acme.count_old")
    assert r.exit_code == 0 and r.stderr.startswith("warning: acme.count_old is deprecated")
    assert "deprecated" not in invoke("call", "acme.count_new").stderr


def test_the_schema_checks_version_and_deprecated() -> None:
    def errors(tail: str) -> list[tuple[str, str]]:
        return schemas.errors(load_text(ACTION_YAML.format(id="a.b", tail=tail), "t").data, "manifest")

    base = "request: {method: GET, path: /x/}\n"
    assert errors(base + "version: 1.0.0") == []
    assert errors(base + "version: 1.0.0-beta.1") == []
    assert errors(base + "version: v1")[0][0] == "/version"
    assert errors(base + "deprecated: {replacement: a.c}")[0] == (
        "/deprecated",
        "'message' is a required property",
    )
    assert (
        errors(base + "deprecated: {message: old, replacement: Not An Id}")[0][0] == "/deprecated/replacement"
    )


def test_every_built_in_manifest_declares_a_version() -> None:
    for m in get_catalog().manifests.values():
        assert m.version == "1.0.0", m.id
