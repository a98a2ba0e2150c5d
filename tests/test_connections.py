"""Named connections and the config file (issue 10 items 1-2, issue 15 item 5): the
file's schema and one-line errors, keys from variables and files (never from the
file, never shown), precedence flag > environment > file > default, ``--connection``
on the commands, ``connection:`` in workflows, ``connections [test]`` and
``config show``."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from connector import config as configfile
from connector import connections, redaction
from connector.cli import main
from connector.errors import ConfigError
from connector.sandbox import Sandbox, SandboxOptions
from connector.state.store import StateStore
from tests.conftest import script, script_env

KEY_A = "sk_sandbox_parent_0123456789abcdef"
KEY_B = "sk_sandbox_child_fedcba9876543210"


@pytest.fixture(scope="module")
def boxes() -> Iterator[tuple[Sandbox, Sandbox]]:
    """Two Willo organisations: a parent (A) and a child (B), each with its own key."""
    a = Sandbox(SandboxOptions(api_key=KEY_A, rate_limit=(0, 0))).start()
    b = Sandbox(SandboxOptions(api_key=KEY_B, rate_limit=(0, 0))).start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def two(boxes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Sandbox, Sandbox]:
    """A config file naming both as ``parent`` and ``child``; their keys in the
    environment and in a key file."""
    a, b = boxes
    a.reset()
    b.reset()
    (tmp_path / "child.key").write_text(KEY_B + "\n")
    write_config(
        tmp_path,
        f"""
        connections:
          parent:
            base_url: {a.base_url}
            api_key_env: KEY_PARENT
            description: The parent organisation
          child:
            base_url: {b.base_url}
            api_key_file: {tmp_path / "child.key"}
            daily_quota: 1000
        """,
    )
    monkeypatch.setenv("KEY_PARENT", KEY_A)
    return a, b


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config" / "willo-connector" / "connections.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def invoke(*args: str, **env: str):
    return CliRunner().invoke(main, list(args), env=env or None)


def one_line(result, *needles: str) -> str:
    assert result.exit_code != 0, result.output
    err = result.stderr.strip()
    assert "Traceback" not in result.output, result.output
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def titles(box: Sandbox) -> list[str]:
    r = requests.get(
        box.base_url + "/interviews/", params={"page_size": 30}, headers={"Authorization": box.api_key}
    )
    return [i["title"] for i in r.json()["results"]]


# ---------------------------------------------------------------------- the file and its errors


def test_connections_lists_both_with_fingerprints_never_keys(two) -> None:
    r = invoke("connections", "--json")
    assert r.exit_code == 0, r.output
    rows = {c["name"]: c for c in json.loads(r.stdout)}
    assert set(rows) == {"default", "parent", "child"}
    assert rows["parent"]["key"] == connections.fingerprint(KEY_A)
    assert rows["parent"]["key_from"] == "environment variable KEY_PARENT"
    assert rows["child"]["key_from"].startswith("file ") and rows["child"]["key_from"].endswith("child.key")
    assert rows["child"]["today"]["quota"] == 1000 and rows["child"]["today"]["used"] == 0
    assert rows["parent"]["description"] == "The parent organisation"
    assert rows["default"]["key_problem"] == "not set"
    human = invoke("connections")
    for out in (r.output, human.output):
        assert KEY_A not in out and KEY_B not in out
    assert "sha256:" in human.output


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        (
            "connections:\n  x:\n    api_key_env: X\n    rate: 10/100\n",
            ["connections.yaml:4: /connections/x/rate: unknown field", "'rate' was unexpected"],
        ),
        (
            "connections:\n  x:\n    base_url: https://a.example\n",
            ["connections.yaml:2: /connections/x: where is its key?"],
        ),
        (
            "connections:\n  x:\n    api_key_env: X\n    api_key_file: /k\n",
            ["connections.yaml:4: /connections/x/api_key_file: give api_key_env or api_key_file, not both"],
        ),
        (
            "connections:\n  x:\n    api_key_env: X\n    daily_quota: lots\n",
            ["connections.yaml:4: /connections/x/daily_quota: 'lots' is not of type 'integer'"],
        ),
        (
            "connections:\n  x:\n    api_key_env: X\n    base_url: http://willo.example\n",
            ["connections.yaml:4: /connections/x/base_url: refusing plain http:// to willo.example"],
        ),
        (
            "settings:\n  WILLO_RATE_LIMT: 5/50\n",
            ["connections.yaml:2: /settings/WILLO_RATE_LIMT: unknown field", "config show"],
        ),
        (
            "settings:\n  WILLO_BASE_URL: https://a.example\n",
            ["connections.yaml:2: /settings/WILLO_BASE_URL: WILLO_BASE_URL is the default connection's"],
        ),
        ("connections: [a, b]\n", ["connections.yaml:1: /connections: ['a', 'b'] is not of type 'object'"]),
        ("connections:\n  x: {api_key_env: X\n", ["connections.yaml:", "invalid YAML"]),
    ],
)
def test_a_bad_file_is_one_line_naming_file_line_and_pointer(
    tmp_path: Path, body: str, needles: list[str]
) -> None:
    write_config(tmp_path, body)
    err = one_line(invoke("connections"), *needles)
    assert err.startswith("error: ") and str(tmp_path) in err


def test_a_key_written_in_the_file_is_refused_and_never_shown(tmp_path: Path) -> None:
    secret_key = "sk_live_written_in_the_file_0001"
    setting = "sk_live_written_as_a_setting_02"
    inline = "sk_live_written_as_a_secret_003"
    looks = "sk_live_in_the_variable_name_004"
    write_config(
        tmp_path,
        f"""
        connections:
          prod:
            api_key: {secret_key}
          other:
            api_key_env: {looks}
        settings:
          WILLO_API_KEY: {setting}
        secrets:
          CRM: {inline}
        """,
    )
    for args in (
        ["connections"],
        ["config", "show"],
        ["call", "willo.list_languages", "-c", "prod"],
        ["validate", "."],
    ):
        r = invoke(*args)
        assert r.exit_code == 1, r.output
        for value in (secret_key, setting, inline, looks):
            assert value not in r.output
        assert "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 4, lines
    assert (
        "connections.yaml:3: /connections/prod/api_key: an API key is never read from this file" in lines[0]
    )
    assert "api_key_env: VARIABLE" in lines[0] and "api_key_file: PATH" in lines[0]
    assert (
        "connections.yaml:5: /connections/other/api_key_env: api_key_env names an environment variable"
        in lines[1]
    )
    assert "connections.yaml:7: /settings/WILLO_API_KEY: WILLO_API_KEY is a secret" in lines[2]
    assert "connections.yaml:9: /secrets/CRM: a secret is written here as where it is" in lines[3]


def test_key_problems_are_one_line_each_and_never_show_the_key(two, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("KEY_PARENT")
    err = one_line(invoke("call", "willo.list_languages", "-c", "parent"))
    assert (
        "connections.yaml:4: /connections/parent/api_key_env: connection parent: KEY_PARENT is not set" in err
    )
    spaced = "sk_sandbox_has a_space_in_it_00"
    monkeypatch.setenv("KEY_PARENT", spaced)
    err = one_line(invoke("call", "willo.list_languages", "-c", "parent"), "holds a space inside it")
    assert spaced not in err and "has a_space" not in err
    monkeypatch.setenv("KEY_PARENT", "sk_sandbox_control\x07char_00000")
    one_line(invoke("call", "willo.list_languages", "-c", "parent"), "a control character (U+0007)")
    (tmp_path / "child.key").unlink()
    err = one_line(
        invoke("call", "willo.list_languages", "-c", "child"),
        "connections.yaml:8: /connections/child/api_key_file",
    )
    assert "child.key: no such file" in err
    (tmp_path / "child.key").mkdir()
    one_line(invoke("call", "willo.list_languages", "-c", "child"), "child.key: is a folder, not a file")
    (tmp_path / "child.key").rmdir()
    (tmp_path / "child.key").write_bytes(b"\xff\xfe\x00key")
    one_line(invoke("call", "willo.list_languages", "-c", "child"), "child.key: not UTF-8 text")
    (tmp_path / "child.key").write_text(f"{KEY_B}\nsecond line\n")
    err = one_line(invoke("call", "willo.list_languages", "-c", "child"), "a control character (U+000A)")
    assert KEY_B not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_file_is_one_line(two, tmp_path: Path) -> None:
    (tmp_path / "child.key").chmod(0)
    one_line(invoke("call", "willo.list_languages", "-c", "child"), "child.key: permission denied")


def test_an_unknown_connection_names_the_closest(two) -> None:
    err = one_line(invoke("call", "willo.list_languages", "-c", "chlid"))
    assert "unknown connection 'chlid' (did you mean child?)" in err
    assert "connections: default, child, parent" in err
    for args in (
        ["run", "x.yaml", "-c", "prant"],
        ["poll", "willo.new_participant", "-c", "prant", "--once"],
    ):
        one_line(invoke(*args), "did you mean parent?")


def test_the_default_connection_reads_willo_api_key_file(sandbox, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WILLO_API_KEY")
    key_file = tmp_path / "secret"
    key_file.write_text("  " + sandbox.api_key + "\n\n")  # what a Kubernetes secret may leave
    r = invoke("call", "willo.list_languages", "--json", WILLO_API_KEY_FILE=str(key_file))
    assert r.exit_code == 0, r.output
    err = one_line(
        invoke(
            "call", "willo.list_languages", WILLO_API_KEY_FILE=str(key_file), WILLO_API_KEY=sandbox.api_key
        )
    )
    assert "WILLO_API_KEY and WILLO_API_KEY_FILE are both set" in err
    one_line(
        invoke("call", "willo.list_languages", WILLO_API_KEY_FILE=str(tmp_path / "nope")),
        "nope: no such file",
    )


def test_the_environment_overrides_the_files_default_connection(sandbox, tmp_path: Path, monkeypatch) -> None:
    write_config(
        tmp_path,
        """
        connections:
          default:
            base_url: https://api.willotalent.com/api/integrations/v2
            api_key_env: WILLO_PROD_KEY
            daily_quota: 7
        """,
    )
    info = json.loads(invoke("config", "show", "--json").stdout)
    default = next(c for c in info["connections"] if c["name"] == "default")
    assert default["base_url"] == sandbox.base_url  # WILLO_BASE_URL (the sandbox fixture's) wins
    assert default["daily_quota"] == 7 and default["key_from"] == "environment variable WILLO_API_KEY"
    assert invoke("call", "willo.list_languages").exit_code == 0


# ---------------------------------------------------------------------- settings: flag > environment > file > default


def test_settings_precedence_flag_environment_file_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WILLO_STATE_DIR")
    path = write_config(
        tmp_path,
        """
        settings:
          WILLO_STATE_DIR: from-file
          WILLO_SCHEMA_MODE: strict
          WILLO_MAX_RETRIES: 2
        """,
    )
    info = json.loads(invoke("config", "show", "--json").stdout)
    got = {s["name"]: (s["value"], s["source"]) for s in info["settings"]}
    assert got["WILLO_STATE_DIR"] == (str(tmp_path / "config" / "willo-connector" / "from-file"), f"{path}:2")
    assert got["WILLO_SCHEMA_MODE"] == ("strict", f"{path}:3")
    assert got["WILLO_MAX_RETRIES"] == ("2", f"{path}:4")
    assert got["WILLO_TIMEOUT"] == ("30", "default")
    env = json.loads(invoke("config", "show", "--json", WILLO_SCHEMA_MODE="off").stdout)
    assert {s["name"]: s["source"] for s in env["settings"]}["WILLO_SCHEMA_MODE"] == "environment"

    def store_of(*args: str, **env: str) -> str:  # `state show` names its store in its error
        r = invoke("state", "show", "willo.new_participant", *args, **env)
        assert r.exit_code == 1, r.output
        return r.stderr

    assert str(tmp_path / "config" / "willo-connector" / "from-file") in store_of()
    assert str(tmp_path / "env-dir") in store_of(WILLO_STATE_DIR=str(tmp_path / "env-dir"))
    flagged = store_of("--state-dir", str(tmp_path / "flag-dir"), WILLO_STATE_DIR=str(tmp_path / "env-dir"))
    assert str(tmp_path / "flag-dir") in flagged
    assert "WILLO_STATE_DIR" not in os.environ  # the file's settings do not outlive the command


def test_the_files_settings_reach_a_subprocess_of_the_installed_script(sandbox, tmp_path: Path) -> None:
    import subprocess

    write_config(tmp_path, "settings:\n  WILLO_SCHEMA_MODE: bogus\n")
    out = subprocess.run(
        [*script(), "call", "willo.list_languages"],
        env=script_env(WILLO_BASE_URL=sandbox.base_url, WILLO_API_KEY=sandbox.api_key),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "WILLO_SCHEMA_MODE" in out.stderr and "bogus" in out.stderr, out.stderr


def test_secret_references_resolve_and_are_never_shown(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "crm.token").write_text("crm-token-value-0001\n")
    write_config(
        tmp_path,
        """
        secrets:
          SLACK: {env: SLACK_URL}
          CRM: {file: ../../crm.token}
          MISSING: {env: NOT_SET_ANYWHERE}
        """,
    )
    monkeypatch.setenv("SLACK_URL", "https://hooks.slack.example/T000/B000/xyz123")
    assert configfile.secret("SLACK") == "https://hooks.slack.example/T000/B000/xyz123"
    assert configfile.secret("CRM") == "crm-token-value-0001"
    assert configfile.secret("NOPE") is None
    with pytest.raises(
        ConfigError, match=r"connections.yaml:4: /secrets/MISSING/env: secret MISSING: NOT_SET"
    ):
        configfile.secret("MISSING")
    assert redaction.scrub("x crm-token-value-0001 y") == "x *** y"
    r = invoke("config", "show")
    assert r.exit_code == 0, r.output
    assert "crm-token-value-0001" not in r.output and "xyz123" not in r.output
    assert "SLACK: env SLACK_URL" in r.output and "CRM: file ../../crm.token" in r.output


def test_willo_config_names_the_file_and_must_exist(tmp_path: Path) -> None:
    one_line(
        invoke("connections", WILLO_CONFIG=str(tmp_path / "none.yaml")),
        "WILLO_CONFIG=",
        "none.yaml: no such file",
    )
    other = tmp_path / "elsewhere.yaml"
    other.write_text("connections:\n  staging:\n    api_key_env: STAGING_KEY\n")
    r = invoke("connections", "--json", WILLO_CONNECTIONS=str(other))
    assert [c["name"] for c in json.loads(r.stdout)] == ["default", "staging"]
    one_line(
        invoke("connections", WILLO_CONFIG=str(other), WILLO_CONNECTIONS=str(tmp_path / "x.yaml")),
        "name two files",
    )


# ---------------------------------------------------------------------- commands and workflows per connection


def test_call_and_run_on_a_named_connection(two) -> None:
    a, b = two
    r = invoke("call", "willo.create_interview", "-i", "title=Made in the child", "-c", "child", "--json")
    assert r.exit_code == 0, r.output
    assert "Made in the child" in titles(b) and "Made in the child" not in titles(a)


def test_one_workflow_reads_the_parent_and_writes_the_child(two, tmp_path: Path) -> None:
    a, b = two
    wf = tmp_path / "copy.yaml"
    wf.write_text(
        textwrap.dedent(
            """
            workflow: 1
            name: copy interviews to the child
            connection: parent
            steps:
              - id: read
                use: willo.list_interviews
                with: {all: true}
              - id: write
                use: willo.create_interview
                connection: child
                foreach: "{{ steps.read.output.results }}"
                concurrency: 2
                with: {title: "{{ item.title }} (copy)"}
            """
        )
    )
    parent_titles = titles(a)
    r = invoke("run", str(wf), "--json")
    assert r.exit_code == 0, r.output
    child = titles(b)
    assert sorted(t for t in child if t.endswith(" (copy)")) == sorted(f"{t} (copy)" for t in parent_titles)
    assert not any(t.endswith(" (copy)") for t in titles(a))
    store = StateStore()
    run = store.runs(1)[0]
    assert run["account"].startswith("parent/") and json.loads(run["settings"])["connection"] == "parent"
    accounts = {u["step"]: u["account"] for u in store.units(run["id"]).values()}
    assert accounts["read"].startswith("parent/") and accounts["write"].startswith("child/")
    # `state show -c NAME`: that account's share of the store; without -c, all of it
    per = {c: json.loads(invoke("state", "show", "-c", c, "--json").stdout) for c in ("parent", "child")}
    assert per["parent"]["account"].startswith("parent/") and per["parent"]["runs"] == {"succeeded": 1}
    assert per["child"]["runs"] == {} and per["child"]["units"] == len(parent_titles)
    assert per["parent"]["units"] == 1
    whole = json.loads(invoke("state", "show", "--json").stdout)
    assert whole["units"] == 1 + len(parent_titles) and "account" not in whole
    conflict = invoke("run", str(wf), "-c", "child")
    one_line(
        conflict, "copy.yaml:4: /connection: the workflow runs on connection parent", "--connection child"
    )


def test_static_checks_know_the_connection_names(two, tmp_path: Path) -> None:
    wf = tmp_path / "typo.yaml"
    wf.write_text(
        "workflow: 1\nname: typo\nconnection: prent\nsteps:\n"
        "  - id: one\n    use: willo.list_languages\n    connection: chlid\n"
    )
    r = invoke("validate", str(wf))
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert lines == [
        f"{wf}:3: /connection: unknown connection 'prent' (did you mean parent? connections: child, default, parent)",
        f"{wf}:7: /steps/0/connection: step one: unknown connection 'chlid' "
        "(did you mean child? connections: child, default, parent)",
    ]
    r = invoke("run", str(wf))
    assert r.exit_code == 1 and "/steps/0/connection: step one: unknown connection" in r.stderr


def test_a_unit_sent_to_an_account_is_not_looked_up_on_another(two, tmp_path: Path, monkeypatch) -> None:
    """The child's key changes between a run's crash and its resume: the unit that may
    have landed is blocked, not looked up (or resent) on the other account."""
    wf = tmp_path / "one.yaml"
    wf.write_text(
        "workflow: 1\nname: one\nconnection: child\nsteps:\n"
        "  - id: make\n    use: willo.create_interview\n    with: {title: Once}\n"
    )
    store = StateStore()
    from connector.cli.context import connector_for

    with connector_for(store=store) as conn:  # the process dies while sending
        child = conn.using("child").account.id
        run_id = store.new_run(str(wf), "one", wf.read_text(), {}, None, {"connection": "child"})
        store.mark_unit(
            run_id, "make", -1, "willo.create_interview", "sending", inputs={"title": "Once"}, account=child
        )
    before = store.units(run_id)[("make", -1)]["account"]
    assert before.startswith("child/")
    (tmp_path / "child.key").write_text(KEY_A)  # the child's key now opens another account
    r = invoke("resume", run_id, "--json")
    assert r.exit_code == 1, r.output
    report = json.loads(r.stdout)
    assert report["status"] == "blocked"
    assert f"may have been sent to account {before}" in report["error"]
    assert "Once" not in titles(two[0]) and "Once" not in titles(two[1])


# ---------------------------------------------------------------------- connections test


@pytest.mark.parametrize(
    ("required", "configured", "accepted"),
    [("Token", "", "Token"), ("Bearer", "Token", "Bearer"), ("", "Bearer", "")],
)
def test_connections_test_finds_the_scheme_the_server_accepts(
    tmp_path: Path, monkeypatch, required: str, configured: str, accepted: str
) -> None:
    with Sandbox(SandboxOptions(api_key=KEY_A, rate_limit=(0, 0), auth_scheme=required)) as box:
        monkeypatch.setenv("WILLO_BASE_URL", box.base_url)
        monkeypatch.setenv("WILLO_API_KEY", KEY_A)
        monkeypatch.setenv("WILLO_AUTH_SCHEME", configured)
        r = invoke("connections", "test", "--json")
        assert r.exit_code == 1, r.output
        report = json.loads(r.stdout)
        assert report["accepted_scheme"] == accepted
        assert report["tried"][0] == {**report["tried"][0], "scheme": configured, "status": 401}
        assert f"WILLO_AUTH_SCHEME={accepted}" in report["hint"]
        monkeypatch.setenv("WILLO_AUTH_SCHEME", accepted)
        ok = invoke("connections", "test")
        assert ok.exit_code == 0, ok.output
        assert "ok: the key works" in ok.output and KEY_A not in ok.output
        # the configured scheme, then the two others (one of them accepted), then ok
        assert box.app.stats() == {"requests": 4, "by_status": {"200": 2, "401": 2}}


def test_connections_test_against_drfs_own_token_authentication(drf, monkeypatch) -> None:
    drf.reset(auth_scheme="Token")
    try:
        r = invoke("connections", "test", "--json")
        report = json.loads(r.stdout)
        assert r.exit_code == 1
        assert [t["status"] for t in report["tried"]] == [401, 401, 200]
        assert report["tried"][0]["challenge"] == "Token"  # DRF's WWW-Authenticate
        assert report["accepted_scheme"] == "Token"
        assert invoke("connections", "test", WILLO_AUTH_SCHEME="Token").exit_code == 0
    finally:
        drf.reset()


def test_connections_test_says_when_no_scheme_works(sandbox, monkeypatch) -> None:
    monkeypatch.setenv("WILLO_API_KEY", "sk_sandbox_not_a_known_key_0000")
    r = invoke("connections", "test")
    assert r.exit_code == 1
    assert "refuses the key with every scheme" in r.output
    assert "sk_sandbox_not_a_known_key_0000" not in r.output


# ---------------------------------------------------------------------- the README


def test_the_readme_documents_every_setting_and_its_examples_are_valid(tmp_path: Path) -> None:
    import re

    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()

    def tabled(text: str) -> set[str]:
        first_cells = re.findall(r"^\| ([^|]*`WILLO_[^|]*)\|", text, re.M)
        return {name for cell in first_cells for name in re.findall(r"`(WILLO_[A-Z_]+)`", cell)}

    table = tabled(readme)
    documented = table | {n for page in (ROOT / "docs").glob("*.md") for n in tabled(page.read_text())}
    known = {s.name for s in configfile.known_settings()}
    missing = sorted(known - documented)
    assert not missing, f"settings no table of the README or docs/ lists: {missing}"
    # and every setting the README lists can go in the file, or is said not to
    elsewhere = {*configfile.SECRET_SETTINGS, *configfile.CONNECTION_SETTINGS, *configfile.FILE_ENV}
    unplaced = sorted(n for n in table - known - elsewhere if not n.startswith("WILLO_SECRET_"))
    assert not unplaced, f"settings the config file's schema does not know: {unplaced}"
    for name in (*configfile.CONNECTION_SETTINGS, "WILLO_CONFIG", "WILLO_API_KEY"):
        assert f"`{name}`" in readme, name
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    (config,) = [b for b in blocks if b.startswith("version: 1\nconnections:")]
    (workflow,) = [b for b in blocks if "connection: child-uk" in b]
    (tmp_path / "c.yaml").write_text(config)
    (tmp_path / "w.yaml").write_text(workflow)
    r = invoke("validate", str(tmp_path / "w.yaml"), WILLO_CONFIG=str(tmp_path / "c.yaml"))
    assert r.exit_code == 0, r.output
    assert (
        "**Precedence**, for\nevery setting: a command-line flag (`--state-dir`...), then the environment, then the\nfile, then the default"
        in readme
    )


def test_workflow_secrets_come_from_the_config_file_after_the_environment(
    sandbox, tmp_path: Path, monkeypatch
) -> None:
    (tmp_path / "dept").write_text("Secret Department 0001\n")
    write_config(tmp_path, f"secrets:\n  DEPT: {{file: {tmp_path / 'dept'}}}\n")
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "workflow: 1\nname: secret\nsteps:\n  - id: make\n    use: willo.create_department\n"
        '    with: {name: "{{ secrets.dept }}"}\n'
    )
    r = invoke("run", str(wf), "--json")
    assert r.exit_code == 0, r.output
    names = [d["name"] for d in sandbox.store.table("departments").values()]
    assert "Secret Department 0001" in names
    assert "Secret Department 0001" not in r.output  # registered: scrubbed from every output
    monkeypatch.setenv("WILLO_SECRET_DEPT", "From The Environment 02")
    assert invoke("run", str(wf)).exit_code == 0
    assert "From The Environment 02" in [d["name"] for d in sandbox.store.table("departments").values()]
    (tmp_path / "dept").unlink()
    monkeypatch.delenv("WILLO_SECRET_DEPT")
    err = one_line(invoke("validate", str(wf)))
    assert "connections.yaml:2: /secrets/DEPT/file: secret DEPT:" in err and "no such file" in err


def test_serve_and_a_branch_take_their_connection(two, tmp_path: Path) -> None:
    """A step inside an if step that names a connection goes there too; serve -c names
    the account whose triggers it serves."""
    a, b = two
    wf = tmp_path / "branch.yaml"
    wf.write_text(
        textwrap.dedent(
            """
            workflow: 1
            name: branch
            connection: parent
            steps:
              - id: pick
                if: "{{ true }}"
                connection: child
                then:
                  - id: make
                    use: willo.create_interview
                    with: {title: Made in a branch}
            """
        )
    )
    r = invoke("run", str(wf), "--json")
    assert r.exit_code == 0, r.output
    assert "Made in a branch" in titles(b) and "Made in a branch" not in titles(a)
    one_line(invoke("serve", str(tmp_path), "-c", "nope"), "unknown connection 'nope'")


def test_serve_on_a_connection_takes_its_own_deliveries_only(two, tmp_path: Path) -> None:
    from connector.cli.context import connector_for
    from connector.serve import Receiver as Hooks
    from connector.serve import Service, load_folder

    a, b = two
    folder = tmp_path / "wfs"
    folder.mkdir()
    (folder / "hook.yaml").write_text(
        "workflow: 1\nname: hook\ntrigger: {use: willo.new_score}\nsteps:\n"
        '  - id: make\n    use: willo.create_interview\n    with: {title: "For {{ trigger.id }}"}\n'
    )
    store = StateStore(tmp_path / "state")
    with connector_for(connection="child", store=store) as child, connector_for(store=store) as default:
        services = {}
        for name, conn in (("child", child), ("default", default)):
            workflows, _ = load_folder(folder, conn)
            services[name] = Service(conn, store, workflows, receiver=Hooks(port=0, subscribe=False))
            services[name].start()
        try:
            body = {"id": "evt-child-1", "event": "new_score", "data": {"participant": {"key": "p"}}}
            r = requests.post(services["child"].url, json=body, timeout=10)
            assert r.status_code == 202, r.text
            services["default"].tick()  # not its delivery: nothing to do
            assert store.query("SELECT COUNT(*) AS n FROM runs")[0]["n"] == 0
            services["child"].tick()
        finally:
            for service in services.values():
                service.shutdown()
    (event,) = store.query("SELECT account, status FROM events")
    assert event["account"].startswith("child/") and event["status"] == "dispatched"
    assert "For evt-child-1" in titles(b) and "For evt-child-1" not in titles(a)
