"""Plugin discovery through entry points (fake distributions), failures and hooks."""

from __future__ import annotations

import importlib.metadata as md
import inspect
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector import hookimpl
from connector.catalog import hookspecs, plugins
from connector.catalog.index import get_catalog
from connector.cli import main
from connector.errors import UnknownIdError
from connector.workflows.runtime import Connector

ACTION_YAML = """\
manifest: 1
id: {id}
kind: action
title: Count interviews
description: How many interviews the account has.
input: {{type: object, additionalProperties: false, properties: {{}}}}
output:
  type: object
  required: [count]
  properties:
    count: {{type: integer, description: How many}}
sample: {{count: 3}}
{tail}
"""


def make_plugin(tmp_path: Path, name: str, module_body: str, manifests: dict[str, str]) -> md.EntryPoint:
    """A fake installed distribution with one entry point in the willo_connector group."""
    pkg = tmp_path / f"{name}_pkg"
    pkg.mkdir()
    for fname, text in manifests.items():
        (pkg / fname).write_text(text)
    (pkg / "__init__.py").write_text(textwrap.dedent(module_body))
    dist = tmp_path / f"{name}-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(f"[willo_connector]\n{name} = {name}_pkg\n")
    if str(tmp_path) not in sys.path:
        sys.path.insert(0, str(tmp_path))
    (ep,) = md.PathDistribution(dist).entry_points
    return ep


GOOD_MODULE = """
from pathlib import Path
from connector import hookimpl

@hookimpl
def manifest_paths():
    return [Path(__file__).parent]

@hookimpl
def action_handlers():
    def count(inputs, client):
        return {"count": client.call("willo.list_interviews", {}).get("count")}
    return {"acme.count_interviews": count}

@hookimpl
def template_filters():
    return {"shout": lambda s: str(s).upper() + "!"}
"""


@pytest.fixture
def good(tmp_path: Path) -> md.EntryPoint:
    return make_plugin(
        tmp_path,
        "acmeplugin",
        GOOD_MODULE,
        {
            "count.yaml": ACTION_YAML.format(
                id="acme.count_interviews", tail="handler: acme.count_interviews"
            ),
            "declarative.yaml": ACTION_YAML.format(
                id="acme.count_departments",
                tail="request: {method: GET, path: /departments/, query: {page_size: 1}}",
            ),
        },
    )


@pytest.fixture
def broken(tmp_path: Path) -> md.EntryPoint:
    return make_plugin(tmp_path, "brokenplugin", "raise RuntimeError('boom at import')\n", {})


def use(host: plugins.PluginHost) -> plugins.PluginHost:
    plugins.set_host(host)
    return host


def test_entry_point_plugin_adds_yaml_and_handler_actions(good: md.EntryPoint, sandbox) -> None:
    host = use(plugins.build_host([good]))
    info = host.plugins["acmeplugin"]
    assert (info.version, info.errors) == ("1.2.3", [])
    assert "acmeplugin" in info.source
    conn = Connector(host)
    assert conn.call("acme.count_interviews", {}).output == {"count": 2}
    assert conn.call("acme.count_departments", {}).output["count"] == 3


def test_plugin_that_fails_to_import_is_recorded_and_the_rest_work(
    good: md.EntryPoint, broken: md.EntryPoint
) -> None:
    host = use(plugins.build_host([broken, good]))
    assert host.plugins["brokenplugin"].errors == ["failed to import: RuntimeError: boom at import"]
    cat = get_catalog(host)
    assert "acme.count_interviews" in cat.manifests
    assert "willo.invite_participant" in cat.manifests
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 1  # the listing in full, then a failing exit for scripts
    assert "[FAILED]" in result.output and "boom at import" in result.output


def test_invalid_manifest_is_reported_and_others_still_load(tmp_path: Path) -> None:
    ep = make_plugin(
        tmp_path,
        "halfplugin",
        GOOD_MODULE.split("@hookimpl\ndef action_handlers")[0],
        {
            "ok.yaml": ACTION_YAML.format(
                id="acme.count_departments", tail="request: {method: GET, path: /departments/}"
            ),
            "bad.yaml": ACTION_YAML.format(id="acme.bad", tail="request: {method: FETCH, path: /x/}"),
        },
    )
    cat = get_catalog(use(plugins.build_host([ep])))
    assert "acme.count_departments" in cat.manifests and "acme.bad" not in cat.manifests
    assert any("bad.yaml:13: /request/method:" in p for p in cat.problems)


def test_two_plugins_claiming_one_id_is_an_error_naming_both(tmp_path: Path) -> None:
    ep = make_plugin(
        tmp_path,
        "clashplugin",
        GOOD_MODULE.split("@hookimpl\ndef action_handlers")[0],
        {
            "clash.yaml": ACTION_YAML.format(
                id="willo.list_interviews", tail="request: {method: GET, path: /interviews/}"
            ),
        },
    )
    cat = get_catalog(use(plugins.build_host([ep])))
    problem = next(p for p in cat.problems if "willo.list_interviews" in p)
    assert "plugin willo_actions" in problem and "plugin clashplugin" in problem
    with pytest.raises(
        UnknownIdError, match="claimed by both plugin willo_actions .* and plugin clashplugin"
    ):
        cat.get("willo.list_interviews")


def test_block_list_skips_named_plugins(good: md.EntryPoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WILLO_CONNECTOR_BLOCK_PLUGINS", "acmeplugin, willo_triggers")
    host = use(plugins.build_host([good]))
    assert "acmeplugin" not in host.plugins and "willo_triggers" not in host.plugins
    assert get_catalog(host).of_kind("trigger") == []


def test_strict_mode_turns_failures_into_errors(
    broken: md.EntryPoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WILLO_CONNECTOR_STRICT_PLUGINS", "1")
    with pytest.raises(plugins.PluginLoadError, match="brokenplugin: failed to import"):
        plugins.build_host([broken])


def test_a_hook_that_raises_is_recorded(tmp_path: Path) -> None:
    ep = make_plugin(
        tmp_path,
        "raiser",
        """
        from connector import hookimpl

        @hookimpl
        def manifest_paths():
            raise ValueError("no manifests today")
    """,
        {},
    )
    host = use(plugins.build_host([ep]))
    cat = get_catalog(host)
    assert "willo.create_interview" in cat.manifests
    assert host.plugins["raiser"].errors == ["hook manifest_paths raised ValueError: no manifests today"]


def test_prepare_request_and_template_filters_hooks(good: md.EntryPoint, tmp_path: Path) -> None:
    class Tracing:
        @hookimpl
        def prepare_request(self, manifest, request):
            request["headers"]["X-Trace"] = manifest.get("id", "")

    host = plugins.build_host([good], extra=[("tracing", Tracing())])
    use(host)
    conn = Connector(host, dry_run=True)
    call = conn.call("willo.get_interview", {"interview": "a" * 32})
    assert call.requests[0]["headers"]["X-Trace"] == "willo.get_interview"
    from connector.workflows import expressions

    assert expressions.evaluate("{{ 'hi' | shout }}", {}) == "HI!"


HOOKS = sorted(
    name
    for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(f, "willo_connector_spec")
)


def test_every_hook_is_typed_and_documented() -> None:
    specs = [
        f
        for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(f, "willo_connector_spec")
    ]
    assert {f.__name__ for f in specs} == {
        "manifest_paths",
        "action_handlers",
        "poll_handlers",
        "prepare_request",
        "template_filters",
        "event_received",
    }
    for f in specs:
        assert f.__doc__ and len(f.__doc__.strip()) > 40, f.__name__
        assert ":return:" in f.__doc__, f.__name__
        assert "return" in f.__annotations__, f.__name__


def test_readme_documents_every_hook() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name in HOOKS:
        assert f"| `{name}(" in readme, name
