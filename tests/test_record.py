"""``willo-connector record``: cassettes of a call, a run and every scenario, against
the sandbox or a "live" account (here: a sandbox reached through the environment),
with the key scrubbed; and scenario files checked like workflows."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from connector.catalog.index import get_catalog
from connector.cli import main
from connector.errors import ManifestError
from connector.http.cassettes import replay
from connector.http.client import Settings
from connector.kit import scenarios
from connector.workflows.runtime import Connector
from tests.conftest import CASSETTES, EXAMPLES, script, script_env


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_every_scenario_records_on_the_sandbox_and_replays_strictly(tmp_path: Path, monkeypatch) -> None:
    """The command that re-records cassettes/ works, and what it writes replays."""
    out = tmp_path / "cassettes"
    r = invoke("record", "scenarios", str(CASSETTES / "scenarios.yaml"), "--sandbox", "--out", str(out))
    assert r.exit_code == 0, r.output
    recorded = sorted(p.name for p in out.glob("willo.*.yaml"))
    assert recorded == sorted(p.name for p in CASSETTES.glob("willo.*.yaml"))
    inputs = json.loads((out / "inputs.json").read_text())
    assert sorted(inputs) == [n[: -len(".yaml")] for n in recorded]
    assert "steps." not in json.dumps(inputs)  # setups resolved; literal braces kept:
    assert inputs["willo.create_message_template"]["body"] == "Hi, your interview link: {{link}}"
    for name in recorded:
        text = (out / name).read_text()
        assert "sk_sandbox_" not in text, name
    conn = _offline(monkeypatch)
    for name in recorded:
        mid = name[: -len(".yaml")]
        with replay(out / name) as cassette:
            scenarios.exercise(conn, conn.catalog.get(mid), inputs[mid], strict=True)
            assert cassette.all_played, mid


def _offline(monkeypatch: pytest.MonkeyPatch) -> Connector:
    def refuse(*args, **kwargs):
        raise AssertionError("a replay opened a socket")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    conn = Connector(settings=Settings.from_env(api_key="replay-key"), schema_mode="strict")
    conn.serial = True
    return conn


def test_only_records_the_named_scenarios_and_merges_inputs(tmp_path: Path) -> None:
    (tmp_path / "inputs.json").write_text('{"acme.kept": {"x": 1}}')
    r = invoke(
        "record",
        "scenarios",
        str(CASSETTES / "scenarios.yaml"),
        "--sandbox",
        "--out",
        str(tmp_path),
        "--only",
        "willo.get_interview",
        "--json",
    )
    assert r.exit_code == 0, r.output
    assert [d["id"] for d in json.loads(r.stdout)] == ["willo.get_interview"]
    assert sorted(json.loads((tmp_path / "inputs.json").read_text())) == ["acme.kept", "willo.get_interview"]
    r = invoke("record", "scenarios", str(CASSETTES / "scenarios.yaml"), "--sandbox", "--only", "willo.nope")
    assert r.exit_code == 1 and "no scenario for willo.nope" in r.stderr


def test_record_call_then_replay_it_with_call_cassette(tmp_path: Path) -> None:
    cassette = tmp_path / "willo.list_departments.yaml"
    r = invoke(
        "record", "call", "willo.list_departments", "-i", "page_size=2", "-o", str(cassette), "--sandbox"
    )
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "inputs.json").read_text()) == {"willo.list_departments": {"page_size": 2}}
    text = cassette.read_text()
    assert "sk_sandbox_" not in text and "REDACTED" in text
    r = invoke("call", "willo.list_departments", "-i", "page_size=2", "--cassette", str(cassette), "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["results"]) == 2
    r = invoke("call", "willo.list_departments", "-i", "page_size=3", "--cassette", str(cassette))
    assert r.exit_code == 1 and "does not hold" in r.stderr


@pytest.mark.subprocess
def test_record_run_as_a_subprocess_then_replay_it_offline(tmp_path: Path) -> None:
    cassette = tmp_path / "screening.yaml"
    wf, csv = str(EXAMPLES / "screening.yaml"), f"candidates=@{EXAMPLES / 'candidates.csv'}"
    env = script_env(
        XDG_CACHE_HOME=str(tmp_path / "c"), WILLO_STATE_DIR=str(tmp_path / "s"), WILLO_RATE_LIMIT="0"
    )
    rec = subprocess.run(
        [*script(), "record", "run", wf, "-i", csv, "-o", str(cassette), "--sandbox"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout.strip() == f"recorded {cassette}"
    played = subprocess.run(
        [*script(), "run", wf, "-i", csv, "--cassette", str(cassette), "--json"],
        capture_output=True,
        text=True,
        env={**env, "WILLO_API_KEY": "anything"},
        timeout=120,
    )
    assert played.returncode == 0, played.stderr
    assert json.loads(played.stdout)["status"] == "succeeded"


def test_live_recording_needs_a_key_and_scrubs_it(tmp_path: Path, sandbox, monkeypatch) -> None:
    # "live": the account the environment names (a sandbox here, reached over loopback)
    cassette = tmp_path / "live.yaml"
    r = invoke("record", "call", "willo.get_user", "-i", f"user={_owner(sandbox)}", "-o", str(cassette))
    assert r.exit_code == 0, r.output
    assert "recording against the live account" in r.stderr
    assert sandbox.api_key not in cassette.read_text()
    monkeypatch.delenv("WILLO_API_KEY")
    r = invoke("record", "call", "willo.list_users", "-o", str(cassette))
    assert r.exit_code == 1 and r.stderr.strip().splitlines()[-1].startswith("error: set WILLO_API_KEY")


def _owner(sandbox) -> str:
    return next(u["key"] for u in sandbox.store.tables["users"].values() if u["role"] == "owner")


def test_record_modes_follow_pytest_recording(tmp_path: Path) -> None:
    cassette = tmp_path / "c.yaml"
    args = ("record", "call", "willo.list_languages", "-o", str(cassette), "--sandbox")
    assert invoke(*args).exit_code == 0
    assert invoke(*args, "--record-mode", "all").exit_code == 0
    assert len(yaml.safe_load(cassette.read_text())["interactions"]) == 2  # all appends
    assert invoke(*args).exit_code == 0
    assert len(yaml.safe_load(cassette.read_text())["interactions"]) == 1  # rewrite starts afresh
    assert invoke(*args, "--record-mode", "new_episodes").exit_code == 0
    assert len(yaml.safe_load(cassette.read_text())["interactions"]) == 1  # nothing new


# ------------------------------------------------------------------ scenario files


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenarios.yaml"
    path.write_text(text)
    return path


def test_scenario_problems_point_into_the_scenario_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
scenarios: 1
willo.get_interview:
  setup:
    - id: made
      use: willo.create_interview
      with: {title: T}
  with:
    interview: "{{ steps.made.output.nokey }}"
willo.no_such_action:
  with: {}
willo.stage_change: {}
willo.get_user:
  with: {user: 42}
"Bad Id": {}
""",
    )
    with pytest.raises(ManifestError) as err:
        scenarios.load(path, get_catalog())
    problems = err.value.problems
    assert problems[0].startswith(f"{path}:8: /willo.get_interview/with/interview: step scenario: ")
    assert "nokey" in problems[0]
    assert problems[1].startswith(f"{path}:9: /willo.no_such_action: unknown action or trigger")
    assert problems[2] == (
        f"{path}:11: /willo.stage_change: willo.stage_change is a webhook trigger; "
        "only actions and polling triggers"
    )
    assert problems[3].startswith(f"{path}:13: /willo.get_user/with/user: step scenario: 42 is not of type")
    assert problems[4] == f"{path}:14: /Bad Id: not an action or trigger id (<namespace>.<name>)"
    assert len(problems) == 5


def test_a_failing_setup_names_the_scenario_and_step(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
scenarios: 1
willo.get_participant:
  setup:
    - id: gone
      use: willo.get_interview
      with: {interview: "00000000000000000000000000000000"}
  with: {participant: "{{ steps.gone.output.key }}"}
""",
    )
    r = invoke("record", "scenarios", str(path), "--sandbox")
    assert r.exit_code == 1
    assert r.stderr.startswith(f"error: {path}:2: scenario willo.get_participant: setup failed: step gone: ")
    assert not (tmp_path / "willo.get_participant.yaml").exists()


def test_concurrent_recordings_keep_every_input(tmp_path: Path) -> None:
    import threading

    from connector.kit.recording import load_inputs, save_inputs

    def save(prefix: str) -> None:
        for i in range(25):
            save_inputs(tmp_path, {f"{prefix}.a{i}": {"i": i}})

    threads = [threading.Thread(target=save, args=(p,)) for p in ("x", "y", "z")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(load_inputs(tmp_path)) == 75
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs.json"]  # no lock or temp file left
