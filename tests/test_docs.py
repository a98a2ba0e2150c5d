"""Docs that are generated or that promise behaviour: the manifest reference is up to
date, every hook is in the plugin guide, the README's plugin example is clean in
strict mode, and ``export docs`` writes a page per action."""

from __future__ import annotations

import importlib.metadata as md
import inspect
import logging
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.catalog import hookspecs, plugins
from connector.cli import main
from connector.kit import docs
from connector.workflows.runtime import Connector
from tests.conftest import ROOT

GUIDE = ROOT / "docs" / "plugin-guide.md"
REFERENCE = ROOT / "docs" / "manifest-reference.md"


def test_the_manifest_reference_is_generated_from_the_schema_and_up_to_date() -> None:
    assert REFERENCE.read_text() == docs.manifest_reference(), (
        "docs/manifest-reference.md is stale: run "
        "`willo-connector export manifest-reference -o docs/manifest-reference.md`"
    )


def test_the_reference_covers_every_field_of_the_schema() -> None:
    from connector.catalog.schemas import shipped_schema

    schema, text = shipped_schema("manifest"), REFERENCE.read_text()
    for name in schema["properties"]:
        assert f"| `{name}` |" in text, name
    for name, sub in schema["$defs"].items():
        assert f"## {name}\n" in text, name
        for prop in sub.get("properties", {}):
            assert f"| `{prop}` |" in text, f"{name}/{prop}"
    assert "## Rules" in text and "exactly one of `request`" in text


def test_the_cli_prints_the_same_reference(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["export", "manifest-reference"])
    assert r.exit_code == 0 and r.stdout == docs.manifest_reference()


def test_every_hook_is_documented_in_the_plugin_guide() -> None:
    guide = GUIDE.read_text()
    hooks = [
        n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "willo_connector_spec")
    ]
    assert len(hooks) == 6
    for name in hooks:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"### `{name}({params})`" in guide, name


def test_the_guide_and_the_readme_link_the_references() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/plugin-guide.md" in readme and "docs/manifest-reference.md" in readme
    assert "(manifest-reference.md)" in GUIDE.read_text()


# ------------------------------------------------------------------ the README's example


def readme_plugin(tmp_path: Path) -> md.EntryPoint:
    """The README's plugin, from its own code blocks, as an installed distribution."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Writing a plugin") : text.index("The hooks (documented in")]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    manifests = [body for lang, body in blocks if lang == "yaml" and body.startswith("manifest: 1")]
    (code,) = [body for lang, body in blocks if lang == "python"]
    assert len(manifests) == 2
    pkg = tmp_path / "acme_willo"
    (pkg / "manifests").mkdir(parents=True)
    for i, body in enumerate(manifests):
        (pkg / "manifests" / f"m{i}.yaml").write_text(body)
    (pkg / "__init__.py").write_text(code)
    dist = tmp_path / "acme_willo-1.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-willo\nVersion: 1.0.0\n")
    (dist / "entry_points.txt").write_text("[willo_connector]\nacme = acme_willo\n")
    sys.path.insert(0, str(tmp_path))
    (ep,) = md.PathDistribution(dist).entry_points
    return ep


def test_the_readme_plugin_example_is_clean_in_strict_mode(
    tmp_path: Path, sandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ep = readme_plugin(tmp_path)
    try:
        host = plugins.build_host([ep])
        assert host.failures == []
        conn = Connector(host, schema_mode="strict")
        assert conn.catalog.problems == []
        count = conn.call("acme.count_interviews", {}).output
        assert count["count"] == 2
        backend = conn.call("willo.list_interviews", {"search": "Backend"}).output["results"][0]["key"]
        best = conn.call("acme.shortlist_best", {"interview": backend}).output
        assert (best["email"], best["stage"]) == ("katherine@example.com", "Shortlisted")
        caplog.set_level(logging.WARNING, logger="connector.drift")
        warn = Connector(host, schema_mode="warn")
        warn.call("acme.count_interviews", {})
        warn.call("acme.shortlist_best", {"interview": backend})
        assert caplog.records == []  # the three drift warnings of old are gone
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("acme_willo", None)


# ------------------------------------------------------------------ export docs


def test_export_docs_writes_a_page_per_action_and_an_index(tmp_path: Path) -> None:
    out = tmp_path / "pages"
    r = CliRunner().invoke(main, ["export", "docs", "--plugin", "willo_triggers", "--out", str(out)])
    assert r.exit_code == 0, r.output
    pages = sorted(p.name for p in out.iterdir())
    assert len(pages) == 9 and "index.md" in pages and "willo.new_participant.md" in pages
    assert "`schedule.cron`: schedule trigger" in (out / "schedule.cron.md").read_text()
    page = (out / "willo.new_participant.md").read_text()
    assert page.startswith("# New participant\n\n`willo.new_participant`: polling trigger, version 1.0.0")
    assert "## Options" in page and "| `interview` | string |" in page
    assert "willo-connector poll willo.new_participant" in page
    assert (
        "| [`willo.stage_change`](willo.stage_change.md) | trigger | Stage change | 1.0.0 |"
        in (out / "index.md").read_text()
    )


def test_export_docs_of_chosen_actions(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["export", "docs", "willo.invite_participant", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "willo.invite_participant.md").read_text()
    assert "Sends `POST /participants/`." in page and "Idempotent (safe to retry): no." in page
    assert "| `interview` | string | yes |" in page and "| `email` | string (email) | yes |" in page
    assert "willo-connector call willo.invite_participant -i interview=<interview> -i email=<email>" in page
    assert '```json\n{\n  "key": "33333333333333333333333333333333"' in page
    r = CliRunner().invoke(main, ["export", "docs", "willo.invite_participnt", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "did you mean willo.invite_participant" in r.stderr
    r = CliRunner().invoke(main, ["export", "docs", "--plugin", "nosuch", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "no plugin 'nosuch' is installed" in r.stderr


def test_a_deprecated_action_says_so_in_its_page() -> None:
    from connector.catalog.types import Manifest

    data = {
        "id": "acme.old",
        "kind": "action",
        "title": "Old",
        "description": "Old thing.",
        "version": "2.1.0",
        "input": {"type": "object", "properties": {}},
        "output": {"type": "object"},
        "sample": {},
        "handler": "acme.old",
        "deprecated": {"message": "use the new one", "replacement": "acme.new"},
    }
    page = docs.manifest_page(Manifest(data, "x.yaml", "acme"))
    assert "> **Deprecated.** acme.old is deprecated: use the new one; use acme.new instead" in page
    assert "Runs the Python handler `acme.old`." in page and "## Inputs\n\nNone." in page
