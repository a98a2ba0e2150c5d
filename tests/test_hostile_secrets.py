"""Issue 9, items 8-10: the API key never leaks, a cassette is data, built-in filters stay.

Each test drives the symptom the issue reports (through the CLI where it is a CLI
symptom, and as a real subprocess for the key and the cassette) and checks the fix.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from connector.catalog import plugins
from connector.catalog.index import get_catalog
from connector.cli import main
from connector.http.cassettes import record, replay
from connector.http.client import Settings, WilloClient
from connector.workflows import expressions
from connector.workflows.runtime import Connector
from tests.conftest import CASSETTES, EXAMPLES, script, script_env
from tests.test_plugins import ACTION_YAML, make_plugin

KEY = "sk_live_hostile_key_0123456789"


def invoke(*args: str, **env: str):
    return CliRunner().invoke(main, list(args), env=env or None)


def assert_one_line_error(result, *needles: str) -> str:
    assert result.exit_code not in (0, 70), (result.exit_code, result.output)
    err = result.stderr.strip()
    assert "Traceback" not in result.output and "internal error" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err
    return err


# --------------------------------------------------------------------------- 9.8 the key


@pytest.mark.parametrize("raw", [KEY + "\n", " " + KEY, KEY + "\r\n", "\t" + KEY + " \n"])
def test_a_key_with_surrounding_whitespace_is_stripped_and_works(sandbox, raw: str) -> None:
    key = sandbox.api_key
    r = invoke("call", "willo.list_departments", "--json", WILLO_API_KEY=raw.replace(KEY, key))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["count"] == 3
    assert key not in r.output


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WILLO_API_KEY": "sk_live_hostile\nkey_0123456789"}, "WILLO_API_KEY"),
        ({"WILLO_API_KEY": "sk_live_hostile\x1bkey_0123456789"}, "WILLO_API_KEY"),
        ({"WILLO_API_KEY": KEY, "WILLO_AUTH_SCHEME": "Bea\r\nrer"}, "WILLO_AUTH_SCHEME"),
        ({"WILLO_API_KEY": KEY, "WILLO_AUTH_SCHEME": "Bear er"}, "WILLO_AUTH_SCHEME"),
    ],
)
def test_a_control_character_in_the_key_or_scheme_is_refused_without_echoing_it(
    env: dict[str, str], named: str
) -> None:
    r = invoke("call", "willo.list_departments", **{"WILLO_BASE_URL": "http://127.0.0.1:9", **env})
    err = assert_one_line_error(r, named)
    for fragment in ("sk_live_hostile", "key_0123456789", "Bea", "rer"):
        assert fragment not in err


def test_scheme_with_surrounding_whitespace_is_stripped(sandbox) -> None:
    r = invoke(
        "call",
        "willo.list_departments",
        "--json",
        WILLO_API_KEY=sandbox.api_key + "\n",
        WILLO_AUTH_SCHEME=" Bearer\r\n",
    )
    assert r.exit_code == 0, r.output


def test_the_key_with_a_newline_as_a_real_subprocess(sandbox, tmp_path: Path) -> None:
    env = script_env(
        WILLO_BASE_URL=sandbox.base_url,
        WILLO_RATE_LIMIT="0",
        XDG_CACHE_HOME=str(tmp_path),
        WILLO_STATE_DIR=str(tmp_path / "state"),
    )
    ok = subprocess.run(
        [*script(), "call", "willo.list_departments", "--json"],
        env={**env, "WILLO_API_KEY": sandbox.api_key + "\n"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert sandbox.api_key not in ok.stdout + ok.stderr
    bad = subprocess.run(
        [*script(), "call", "willo.list_departments"],
        env={**env, "WILLO_API_KEY": "sk_live_a\nsk_live_b_secret_half"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1, bad.stderr
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert "sk_live_a" not in bad.stderr and "secret_half" not in bad.stderr


LEAKY_MODULE = """
from pathlib import Path
from connector import hookimpl

@hookimpl
def manifest_paths():
    return [Path(__file__).parent]

@hookimpl
def action_handlers():
    def leak(inputs, client):
        # a careless plugin: its error quotes the key (as requests' InvalidHeader did)
        raise RuntimeError("rejected header value " + repr(client.settings.api_key))
    return {"acme.leak": leak}
"""


@pytest.fixture
def leaky(tmp_path: Path):
    ep = make_plugin(
        tmp_path,
        "leakyplugin",
        LEAKY_MODULE,
        {"leak.yaml": ACTION_YAML.format(id="acme.leak", tail="handler: acme.leak")},
    )
    plugins.set_host(plugins.build_host([ep]))
    return ep


def test_a_key_quoted_in_an_error_is_scrubbed_from_the_journal_runs_and_output(
    sandbox, leaky, tmp_path: Path
) -> None:
    wf = tmp_path / "leak.yaml"
    wf.write_text("workflow: 1\nname: leak\nsteps:\n  - id: leak\n    use: acme.leak\n")
    state = tmp_path / "st"
    r = invoke("run", str(wf), "--state-dir", str(state))
    key = sandbox.api_key
    assert r.exit_code == 1
    assert key not in r.output and "***" in r.output
    db = sqlite3.connect(state / "state.sqlite3")
    stored = [row for row in db.execute("SELECT error FROM runs UNION ALL SELECT error FROM units")]
    assert stored and all(key not in (e or "") for (e,) in stored)
    assert any("***" in (e or "") for (e,) in stored)
    for args in (["runs"], ["runs", "--json"]):
        listed = invoke(*args, "--state-dir", str(state))
        assert listed.exit_code == 0 and key not in listed.output and "***" in listed.output
    as_json = invoke("run", str(wf), "--state-dir", str(state), "--json")
    assert key not in as_json.output and "***" in as_json.output


def test_the_state_store_scrubs_error_and_output_columns(tmp_path: Path) -> None:
    from connector.state.store import StateStore
    from connector.triggers.dispatch import finish

    Settings.from_env({"WILLO_API_KEY": KEY})
    store = StateStore(tmp_path / "st")
    run = store.new_run("wf.yaml", "wf", "", {}, None, {})
    store.mark_unit(run, "s", -1, "a", "succeeded", output={"echo": f"key={KEY}", KEY: [KEY]})
    store.mark_unit(run, "t", -1, "a", "failed", error=f"bad {KEY}")
    store.set_run(run, "failed", f"step t: bad {KEY}")
    with store.tx() as db:
        event = db.execute(
            "INSERT INTO events (source, trigger, dedupe, payload, status, received_at)"
            " VALUES ('webhook', 't', 'd', '{}', 'dispatching', 0)"
        ).lastrowid
    finish(store, event, "parked", f"workflow wf: {KEY}")
    db = sqlite3.connect(store.path)
    text = json.dumps(
        [
            list(r)
            for q in ("SELECT * FROM runs", "SELECT * FROM units", "SELECT * FROM events")
            for r in db.execute(q)
        ]
    )
    assert KEY not in text and text.count("***") == 6


def test_an_internal_error_quoting_the_key_is_scrubbed(monkeypatch) -> None:
    def explode(self, *args, **kwargs):
        raise RuntimeError(f"bad value {KEY!r}")

    monkeypatch.setattr(WilloClient, "request", explode)
    r = invoke("call", "willo.list_departments", WILLO_API_KEY=KEY)
    assert r.exit_code == 70
    assert KEY not in r.output and "***" in r.stderr


def test_a_dry_run_never_shows_the_key_a_plugin_put_in_a_header(tmp_path: Path) -> None:
    from connector import hookimpl

    class CopiesTheKey:
        @hookimpl
        def prepare_request(self, manifest, request):
            request["headers"]["X-Upstream-Token"] = KEY  # a careless plugin
            request["url"] += f"?token={KEY}"

    plugins.set_host(plugins.build_host([], extra=[("copier", CopiesTheKey())]))
    for args in (
        ["call", "willo.list_departments", "--dry-run"],
        ["run", str(EXAMPLES / "screening.yaml"), "--dry-run"],
    ):
        r = invoke(*args, WILLO_API_KEY=KEY)
        assert r.exit_code == 0, r.output
        assert KEY not in r.output and "X-Upstream-Token: ***" in r.output
        r = invoke(*args, "--json", WILLO_API_KEY=KEY)
        assert r.exit_code == 0 and KEY not in r.output


def test_log_records_are_scrubbed(caplog) -> None:
    Settings.from_env({"WILLO_API_KEY": KEY})
    with caplog.at_level(logging.INFO):
        logging.getLogger("connector.test").warning("sending with %s", KEY)
        try:
            raise ValueError(KEY)
        except ValueError:
            logging.getLogger("connector.test").exception("failed")
    text = caplog.text
    assert KEY not in text and "***" in text


def test_the_registry_is_the_one_mechanism() -> None:
    from connector import redaction

    secret = "a-workflow-secret-42"
    assert redaction.scrub(f"x {secret} y") == f"x {secret} y"
    redaction.register(secret)
    assert redaction.scrub(f"x {secret} y") == "x *** y"
    # the forms a secret takes in URLs, JSON and reprs are covered too
    assert redaction.scrub("a-workflow-secret-42%21") == "***%21"
    assert redaction.scrub_value({"k": [secret, {"n": f"<{secret}>"}], secret: 1}) == {
        "k": ["***", {"n": "<***>"}],
        "***": 1,
    }
    # and in any case (as a filter gives it), and base64-encoded whole
    for shown in (
        secret.upper(),
        secret.title(),
        "A-Workflow-Secret-42",
        "a-WORKFLOW-sEcReT-42",
        base64.b64encode(secret.encode()).decode(),
    ):
        assert redaction.scrub(f"<{shown}>") == "<***>", shown
    assert redaction.contains_secret(f"Authorization: Basic {base64.b64encode(secret.encode()).decode()}")
    redaction.register("abc")  # too short to be a secret: scrubbing it would garble output
    assert redaction.scrub("abc") == "abc"


# --------------------------------------------------------------------------- 9.9 cassettes

EVIL = """\
interactions:
- request:
    body: null
    headers: {}
    method: GET
    uri: http://127.0.0.1:1/api/integrations/v2/departments/
  response:
    body:
      string: !!python/object/apply:os.system ["touch {marker}"]
    headers: {{}}
    status: {{code: 200, message: OK}}
version: 1
"""


def _evil(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    cassette = tmp_path / "evil.yaml"
    cassette.write_text(EVIL.replace("{marker}", str(marker)).replace("{{", "{").replace("}}", "}"))
    return cassette, marker


def test_a_cassette_cannot_run_code_through_the_cli(tmp_path: Path) -> None:
    cassette, marker = _evil(tmp_path)
    r = invoke("run", str(EXAMPLES / "screening.yaml"), "--cassette", str(cassette))
    assert not marker.exists(), "the cassette ran a command"
    assert_one_line_error(r, str(cassette))


def test_a_cassette_cannot_run_code_as_a_subprocess(tmp_path: Path) -> None:
    cassette, marker = _evil(tmp_path)
    out = subprocess.run(
        [*script(), "run", str(EXAMPLES / "screening.yaml"), "--cassette", str(cassette)],
        env=script_env(XDG_CACHE_HOME=str(tmp_path), WILLO_STATE_DIR=str(tmp_path / "state")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert not marker.exists(), "the cassette ran a command"
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.stderr and "evil.yaml" in out.stderr


def test_a_cassette_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb(levels=9) + "interactions: []\nversion: 1\n")
    with pytest.raises(Exception, match="alias"), replay(bomb):
        pass


def test_shipped_cassettes_replay_and_recordings_are_plain_yaml(sandbox, tmp_path: Path) -> None:
    for path in sorted(CASSETTES.glob("willo.*.yaml")):  # (scenarios.yaml says how they were made)
        data = yaml.safe_load(path.read_text())
        assert data["interactions"], path
    conn = Connector(settings=Settings.from_env())
    out = tmp_path / "rec.yaml"
    with record(out):
        conn.call("willo.list_departments", {})
    text = out.read_text()
    assert "!!python" not in text and sandbox.api_key not in text
    assert yaml.safe_load(text)["interactions"]
    offline = Connector(settings=Settings.from_env(api_key="replay-key-123"))
    with replay(out):
        assert offline.call("willo.list_departments", {}).output["count"] == 3


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A "billion laughs" YAML: ``width ** levels`` scalars once aliases are expanded."""
    lines = ["l0: &l0 [" + ",".join(["lol"] * width) + "]"]
    for n in range(1, levels):
        lines.append(f"l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- 9.10 filters

FILTER_MODULE = """
from connector import hookimpl

@hookimpl
def template_filters():
    return {FILTERS}
"""


def _filter_plugin(tmp_path: Path, name: str, filters: str):
    return make_plugin(tmp_path, name, FILTER_MODULE.replace("{FILTERS}", filters), {})


def test_a_plugin_cannot_replace_a_built_in_filter(tmp_path: Path) -> None:
    ep = _filter_plugin(tmp_path, "hijack", "{'length': lambda v: 99, 'shout': lambda v: str(v).upper()}")
    host = plugins.build_host([ep])
    plugins.set_host(host)
    Connector(host)
    assert expressions.evaluate("{{ [1, 2] | length }}", {}) == 2
    assert expressions.evaluate("{{ 'a' | shout }}", {}) == "A"  # its own filter still works
    errors = host.plugins["hijack"].errors
    assert len(errors) == 1 and "length" in errors[0] and "built-in" in errors[0]
    r = invoke("plugins")
    assert r.exit_code == 1 and "[FAILED]" in r.output and "length" in r.output  # a failure fails it


def test_the_shipped_example_is_unchanged_by_a_hijacking_plugin(tmp_path: Path) -> None:
    clean = invoke("run", str(EXAMPLES / "screening.yaml"), "--dry-run", "--json")
    ep = _filter_plugin(tmp_path, "hijack2", "{'length': lambda v: 0, 'first': lambda v: None}")
    plugins.set_host(plugins.build_host([ep]))
    hijacked = invoke("run", str(EXAMPLES / "screening.yaml"), "--dry-run", "--json")
    assert clean.exit_code == hijacked.exit_code == 0, hijacked.output
    assert json.loads(clean.stdout) == json.loads(hijacked.stdout)


def test_two_plugins_with_one_filter_is_a_problem_naming_both(tmp_path: Path, monkeypatch) -> None:
    one = _filter_plugin(tmp_path, "alpha", "{'slug': lambda v: 'alpha'}")
    two = _filter_plugin(tmp_path, "beta", "{'slug': lambda v: 'beta'}")
    host = plugins.build_host([one, two])
    plugins.set_host(host)
    get_catalog(host)
    Connector(host)
    assert expressions.evaluate("{{ 'x' | slug }}", {}) == "alpha"  # the first keeps it
    (problem,) = host.plugins["beta"].errors
    assert "slug" in problem and "alpha" in problem
    monkeypatch.setenv("WILLO_CONNECTOR_STRICT_PLUGINS", "1")
    plugins.set_host(plugins.build_host([one, two]))
    r = invoke("actions")
    assert_one_line_error(r, "slug", "alpha")
