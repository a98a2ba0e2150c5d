"""The pytest plugin shipped for plugin authors (``pytest11``), tested with pytester
the way pytest-recording tests its own: fixtures, record modes, replay offline."""

from __future__ import annotations

import importlib.metadata as md
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import fake_entry_points
from tests.test_plugins import ACTION_YAML, make_plugin

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def no_installed_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inner sessions see no willo_connector plugins but those a test gives (other
    tests leave fake distributions on sys.path), and run as on a workstation (record
    mode ``once``) even when this suite runs in CI, where ``CI`` would make it ``none``;
    the tests of CI's mode set ``CI`` themselves."""
    fake_entry_points(monkeypatch, [])
    monkeypatch.delenv("CI", raising=False)


LIFECYCLE = """
import pytest

def test_on_the_sandbox(willo_connector):
    assert willo_connector.call("willo.list_interviews", {}).output["count"] == 2
    willo_connector.call("willo.create_interview", {"title": "Made here"})
    assert willo_connector.call("willo.list_interviews", {}).output["count"] == 3

def test_the_sandbox_is_reset_for_each_test(willo_connector, willo_sandbox):
    assert willo_connector.call("willo.list_interviews", {}).output["count"] == 2
    assert willo_connector.client.settings.base_url == willo_sandbox.base_url

@pytest.mark.willo_cassette("willo.list_departments")
def test_named_cassette(willo_cassette):
    assert willo_cassette.call("willo.list_departments", {"page_size": PAGE}).output["count"] == 3

def test_default_cassette(willo_cassette, willo_cassette_path):
    assert willo_cassette_path.parts[-2:] == ("test_lifecycle", "test_default_cassette.yaml")
    assert len(willo_cassette.call("willo.list_languages", {}).output["results"]) > 3
"""


def lifecycle(pytester: pytest.Pytester, page: int = 1) -> None:
    pytester.makepyfile(test_lifecycle=f"PAGE = {page}\n" + LIFECYCLE)


def interactions(path: Path) -> int:
    return len(yaml.safe_load(path.read_text())["interactions"])


def test_cassettes_record_on_the_first_run_then_replay_offline(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    named = pytester.path / "cassettes" / "willo.list_departments.yaml"
    default = pytester.path / "cassettes" / "test_lifecycle" / "test_default_cassette.yaml"
    assert named.is_file() and default.is_file()
    for path in (named, default):
        text = path.read_text()
        assert "sk_sandbox_" not in text and "REDACTED" in text
    # in CI the mode is none: replayed, no socket opened (the sandbox tests deselected)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "cassette")
    result.assert_outcomes(passed=2, deselected=2)


def _refuse(*args, **kwargs):
    raise OSError("network blocked by the test")


def test_mode_none_fails_on_a_missing_cassette(pytester: pytest.Pytester) -> None:
    lifecycle(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider", "--willo-record-mode=none", "-k", "named")
    result.assert_outcomes(errors=1, deselected=3)
    result.stdout.fnmatch_lines(
        [
            "*willo.list_departments.yaml: no such cassette (record mode none); record it with --willo-record-mode=once*"
        ]
    )


def test_once_replays_and_refuses_a_new_request(pytester: pytest.Pytester) -> None:
    lifecycle(pytester)
    pytester.runpytest("-p", "no:cacheprovider", "-k", "named").assert_outcomes(passed=1, deselected=3)
    lifecycle(pytester, page=2)  # the test now sends a request the cassette does not hold
    result = pytester.runpytest("-p", "no:cacheprovider", "--willo-record-mode=once", "-k", "named")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(["*CassetteMiss*does not hold this request*"])


def test_new_episodes_appends_and_rewrite_starts_afresh(pytester: pytest.Pytester) -> None:
    lifecycle(pytester)
    named = pytester.path / "cassettes" / "willo.list_departments.yaml"
    pytester.runpytest("-p", "no:cacheprovider", "-k", "named").assert_outcomes(passed=1, deselected=3)
    lifecycle(pytester, page=2)
    args = ("-p", "no:cacheprovider", "-k", "named")
    pytester.runpytest(*args, "--willo-record-mode=new_episodes").assert_outcomes(passed=1, deselected=3)
    assert interactions(named) == 2
    pytester.runpytest(*args, "--willo-record-mode=all").assert_outcomes(passed=1, deselected=3)
    assert interactions(named) == 3
    pytester.runpytest(*args, "--willo-record-mode=rewrite").assert_outcomes(passed=1, deselected=3)
    assert interactions(named) == 1


def test_the_ini_sets_the_mode(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    lifecycle(pytester)
    pytester.makeini("[pytest]\nwillo_record_mode = none\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "named")
    result.assert_outcomes(errors=1, deselected=3)
    pytester.makeini("[pytest]\nwillo_record_mode = sometimes\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "named")
    result.stdout.fnmatch_lines(["*willo_record_mode = 'sometimes': use one of none, once*"])


RUNS = '''
import pytest

WF = """
workflow: 1
name: made
steps:
  - id: made
    use: willo.create_interview
    with: {title: Hello}
  - id: got
    use: willo.get_interview
    with: {interview: "{{ steps.made.output.key }}"}
"""

def test_run_and_inspect(willo_run):
    report = willo_run(WF).assert_succeeded()
    assert report.output("got")["title"] == "Hello"
    assert report.step("made").status == "succeeded"
    with pytest.raises(AssertionError, match="no step 'nope' in this run .steps that ran: made, got."):
        report.step("nope")

def test_a_failed_run_names_the_step(willo_run):
    report = willo_run(WF.replace('"{{ steps.made.output.key }}"', "'00000000000000000000000000000000'"))
    assert report.status == "failed"
    with pytest.raises(AssertionError, match="run failed: got: GET .* 404"):
        report.assert_succeeded()

def test_a_run_from_its_cassette(willo_run, willo_cassette):
    assert willo_run(WF, connector=willo_cassette).assert_succeeded().output("got")["title"] == "Hello"

def test_poll(willo_poll, willo_connector):
    probe = willo_poll("willo.new_interview")
    assert probe.events() == []
    willo_connector.call("willo.create_interview", {"title": "Fresh"})
    assert [e["title"] for e in probe.events()] == ["Fresh"]
    assert probe.events() == []
'''


def test_run_and_poll_helpers(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_runs=RUNS)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    result = pytester.runpytest("-p", "no:cacheprovider", "--willo-record-mode=none", "-k", "cassette")
    result.assert_outcomes(passed=1, deselected=3)


PLUGIN_TEST = """
def test_the_plugin_is_loaded(willo_connector):
    assert willo_connector.call("pyt.count_departments", {}).output["count"] == 3
"""


def test_willo_plugins_selects_the_plugins_and_reports_their_failures(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    good = make_plugin(
        tmp_path,
        "pyt",
        "from pathlib import Path\nfrom connector import hookimpl\n"
        "@hookimpl\ndef manifest_paths():\n    return [Path(__file__).parent]\n",
        {
            "c.yaml": ACTION_YAML.format(
                id="pyt.count_departments", tail="request: {method: GET, path: /departments/}"
            )
        },
    )
    broken = make_plugin(tmp_path, "pytbroken", "raise ImportError('nope')\n", {})
    fake_entry_points(monkeypatch, [good, broken])
    pytester.makepyfile(test_plugin=PLUGIN_TEST)
    pytester.makeini("[pytest]\nwillo_plugins = pyt\nwillo_schema_mode = warn\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)  # the broken one is not named
    pytester.makeini("[pytest]\nwillo_plugins = pyt pytbroken\nwillo_schema_mode = warn\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*plugin pytbroken: failed to import: ImportError: nope*"])
    pytester.makeini("[pytest]\nwillo_plugins = notinstalled\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*willo_plugins names notinstalled, which is not installed*"])


def test_the_plugin_is_registered_and_imports_nothing_heavy() -> None:
    eps = [ep for dist in md.distributions() for ep in dist.entry_points if ep.group == "pytest11"]
    eps = [ep for ep in eps if ep.name == "willo_connector"]
    assert {ep.value for ep in eps} == {"connector.kit.pytest_plugin"}
    code = (
        "import sys, connector.kit.pytest_plugin\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('jsonschema', 'requests', 'jinja2', 'werkzeug', 'vcr', 'yaml')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
