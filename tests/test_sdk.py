"""The handler SDK (``connector.sdk``): the Client protocol, errors attributed to the
plugin and action that raised them, return types enforced, and poll handlers."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector import sdk
from connector.catalog import plugins
from connector.catalog.index import get_catalog
from connector.cli import main
from connector.errors import ActionError, InputError, NotFound, PluginError
from connector.state.store import StateStore
from connector.triggers.polling import Poller
from connector.workflows.runtime import ActionContext, Connector
from tests.test_plugins import ACTION_YAML, make_plugin

MODULE = """
from pathlib import Path
from connector import hookimpl
from connector.sdk import ActionError

@hookimpl
def manifest_paths():
    return [Path(__file__).parent]

def keyerror(inputs, client):
    page = client.call("willo.list_interviews", {})
    return {"count": page["no_such_field"]}

def wrong_type(inputs, client):
    return [1, 2, 3]

def not_json(inputs, client):
    import datetime
    return {"count": datetime.date(2026, 1, 1)}

def refuses(inputs, client):
    raise ActionError("no interview has a score yet")

def outer(inputs, client):
    return client.call("acme.keyerror", {})

def paged(inputs, client):
    items = client.paginate("GET", "/interviews/", params={"page_size": 1})
    return {"count": len(items)}

@hookimpl
def action_handlers():
    return {
        "acme.keyerror": keyerror,
        "acme.wrong_type": wrong_type,
        "acme.not_json": not_json,
        "acme.refuses": refuses,
        "acme.outer": outer,
        "acme.paged": paged,
    }
"""

HANDLERS = ["keyerror", "wrong_type", "not_json", "refuses", "outer", "paged"]


@pytest.fixture
def acme(tmp_path: Path) -> md.EntryPoint:
    files = {f"{h}.yaml": ACTION_YAML.format(id=f"acme.{h}", tail=f"handler: acme.{h}") for h in HANDLERS}
    return make_plugin(tmp_path, "acme", MODULE, files)


@pytest.fixture
def conn(acme: md.EntryPoint, sandbox) -> Connector:
    host = plugins.build_host([acme])
    plugins.set_host(host)
    return Connector(host)


def test_the_action_context_is_an_sdk_client(conn: Connector) -> None:
    client = ActionContext(conn, conn.catalog.get("acme.paged"))
    assert isinstance(client, sdk.Client)
    assert conn.call("acme.paged", {}).output == {"count": 2}  # both demo interviews, page by page


def test_an_exception_in_a_handler_is_the_plugins_and_the_actions_error(conn: Connector) -> None:
    with pytest.raises(PluginError) as err:
        conn.call("acme.keyerror", {})
    msg = str(err.value)
    assert msg.startswith(
        "acme.keyerror (plugin acme): handler raised KeyError: 'no_such_field' (at __init__.py:"
    )
    assert (err.value.action, err.value.plugin) == ("acme.keyerror", "acme")
    assert isinstance(err.value.__cause__, KeyError)


def test_a_nested_failure_names_the_innermost_action(conn: Connector) -> None:
    with pytest.raises(PluginError, match=r"^acme.keyerror \(plugin acme\)"):
        conn.call("acme.outer", {})


def test_a_handler_returning_the_wrong_type_is_an_error_even_in_warn_mode(conn: Connector) -> None:
    assert conn.schema_mode == "warn"
    with pytest.raises(
        PluginError, match=r"^acme.wrong_type \(plugin acme\): handler returned array, not object"
    ):
        conn.call("acme.wrong_type", {})
    with pytest.raises(PluginError, match="not JSON: Object of type date"):
        conn.call("acme.not_json", {})


def test_an_action_error_carries_the_plugins_message(conn: Connector) -> None:
    with pytest.raises(ActionError, match=r"^acme.refuses \(plugin acme\): no interview has a score yet$"):
        conn.call("acme.refuses", {})


def test_the_cli_reports_a_handler_bug_in_one_line_naming_plugin_and_action(acme, sandbox) -> None:
    plugins.set_host(plugins.build_host([acme]))
    result = CliRunner().invoke(main, ["call", "acme.keyerror"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: acme.keyerror (plugin acme): handler raised KeyError: 'no_such_field'"
    )


def test_a_step_failure_in_a_workflow_names_the_plugin(conn: Connector, tmp_path: Path) -> None:
    from connector.engines.local import LocalExecutor
    from connector.workflows.model import load
    from connector.workflows.runner import Runner

    path = tmp_path / "wf.yaml"
    path.write_text("workflow: 1\nname: t\nsteps:\n  - {id: a, use: acme.keyerror}\n")
    result = Runner(conn, load(path, conn.catalog), executor=LocalExecutor(), progress=False).start({})
    assert result.status == "failed"
    assert result.error.startswith("step a: acme.keyerror (plugin acme): handler raised KeyError")


def test_typed_errors_pass_through_unchanged(conn: Connector) -> None:
    with pytest.raises(NotFound):
        conn.call("willo.get_interview", {"interview": "0" * 32})
    with pytest.raises(InputError, match="is not a stage"):
        conn.call("willo.move_participant_stage", {"participant": _participant(conn), "stage": "Nowhere"})


def _participant(conn: Connector) -> str:
    return str(conn.call("willo.list_participants", {"page_size": 1}).output["results"][0]["key"])


def test_sdk_exports_hookimpl_and_the_errors() -> None:
    import connector

    assert sdk.hookimpl is connector.hookimpl
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None, name


# ------------------------------------------------------------------ poll handlers

TRIGGER_YAML = """\
manifest: 1
id: acme.new_scored
kind: trigger
title: New scored participant
description: A participant got a score (a poll handler reads every interview's list).
input:
  type: object
  additionalProperties: false
  properties:
    min_score: {type: integer, description: Only scores at least this high.}
output:
  type: object
  required: [key, score, scored_at]
  properties:
    key: {type: string, description: The participant.}
    score: {type: integer, description: The score.}
    scored_at: {type: string, description: When.}
sample: {key: abc, score: 4, scored_at: '2026-01-01T00:00:00Z'}
strategy: polling
polling: {handler: acme.scored, id: key, order: scored_at}
"""

POLL_MODULE = """
from pathlib import Path
from connector import hookimpl

CALLS = []
ITEMS = []

@hookimpl
def manifest_paths():
    return [Path(__file__).parent]

def scored(options, client, cursor):
    CALLS.append((dict(options), cursor))
    if options.get("explode"):
        raise ZeroDivisionError("division by zero")
    client.request("GET", "/interviews/", params={"page_size": 1})
    return [i for i in ITEMS if i["score"] >= options.get("min_score", 0)]

@hookimpl
def poll_handlers():
    return {"acme.scored": scored}
"""


@pytest.fixture
def poll_plugin(tmp_path: Path, sandbox) -> tuple[Connector, object]:
    ep = make_plugin(tmp_path, "pollacme", POLL_MODULE, {"scored.yaml": TRIGGER_YAML})
    host = plugins.build_host([ep])
    plugins.set_host(host)
    import pollacme_pkg

    pollacme_pkg.CALLS.clear()
    pollacme_pkg.ITEMS.clear()
    return Connector(host), pollacme_pkg


def test_a_poll_handler_feeds_a_trigger_with_cursor_and_dedupe(poll_plugin, tmp_path: Path) -> None:
    conn, mod = poll_plugin
    items = mod.ITEMS
    items.append({"key": "a", "score": 3, "scored_at": "2026-01-01T00:00:00Z"})
    poller = Poller(conn, StateStore(tmp_path / "s"), "acme.new_scored", {"min_score": 2})
    first = poller.poll()
    assert (first.first, first.events, first.requests) == (True, [], 1)
    items.append({"key": "b", "score": 5, "scored_at": "2026-01-02T00:00:00Z"})
    items.append({"key": "c", "score": 1, "scored_at": "2026-01-03T00:00:00Z"})  # below min_score
    items.append({"key": "z", "score": 5, "scored_at": "2025-12-01T00:00:00Z"})  # older than the cursor
    second = poller.poll()
    assert [e["key"] for e in second.events] == ["b"]
    assert poller.poll().events == []  # each item once
    assert mod.CALLS == [
        ({"min_score": 2}, None),
        ({"min_score": 2}, "2026-01-01T00:00:00.000000Z"),  # timestamps come back as UTC with microseconds
        ({"min_score": 2}, "2026-01-02T00:00:00.000000Z"),
    ]


def test_a_poll_handler_that_raises_is_the_plugins_error(poll_plugin, tmp_path: Path) -> None:
    conn, _ = poll_plugin
    with pytest.raises(InputError):  # options are validated before the handler sees them
        Poller(conn, StateStore(tmp_path / "s"), "acme.new_scored", {"explode": True})
    poller = Poller(conn, StateStore(tmp_path / "s"), "acme.new_scored", {})
    poller.options["explode"] = True
    with pytest.raises(
        PluginError, match=r"^acme.new_scored \(plugin pollacme\): poll handler raised ZeroDiv"
    ):
        poller.poll()


def test_a_trigger_naming_an_unregistered_poll_handler_is_rejected(tmp_path: Path) -> None:
    ep = make_plugin(
        tmp_path,
        "nopoll",
        "from connector import hookimpl\nfrom pathlib import Path\n"
        "@hookimpl\ndef manifest_paths():\n    return [Path(__file__).parent]\n",
        {"scored.yaml": TRIGGER_YAML.replace("acme.", "nopoll.")},
    )
    cat = get_catalog(plugins.build_host([ep]))
    assert "nopoll.new_scored" not in cat.manifests
    assert any("/polling/handler: no plugin registers poll handler nopoll.scored" in p for p in cat.problems)


def test_a_polling_block_takes_an_action_or_a_handler_not_both(tmp_path: Path) -> None:
    from connector.catalog import schemas
    from connector.yamlio import load_text

    doc = load_text(
        TRIGGER_YAML.replace("{handler: acme.scored,", "{handler: acme.scored, action: x.y,"), "t"
    )
    assert schemas.errors(doc.data, "manifest")
