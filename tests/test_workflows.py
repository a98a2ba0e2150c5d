"""Workflows: static validation, expressions, runs, dry runs, cassettes, the journal."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.catalog.index import get_catalog
from connector.cli import main
from connector.errors import ManifestError
from connector.sandbox.seed import stable
from connector.workflows import expressions
from connector.workflows.model import load
from tests.conftest import EXAMPLES, run_workflow, script, script_env

BACKEND = stable("interview:Backend Engineer")


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ManifestError) as err:
        load(write(tmp_path, text), get_catalog())
    return err.value.problems


def invoke(*args: str, **env: str):
    return CliRunner().invoke(main, list(args), env=env or None)


def test_every_static_error_at_once_with_file_line_step_and_pointer(tmp_path: Path) -> None:
    text = """\
workflow: 1
name: broken
trigger: {use: willo.new_respons}
steps:
  - id: make
    use: willo.create_interview
    with: {title: 5, colour: red}
  - id: make
    use: willo.create_interviews
  - id: invite
    use: willo.invite_participant
    foreach: "{{ inputs.people }}"
    with:
      interview: "{{ steps.make.output.kee }}"
      email: "{{ item.email }}"
  - id: early
    use: willo.get_participant
    with:
      participant: "{{ steps.late.output.key }}"
  - id: late
    use: willo.get_participant
    if: "{{ item.ok }}"
    with:
      participant: "{{ steps.invite.output[0].emial }}"
  - id: sneaky
    use: willo.get_interview
    foreach: not an expression
    with:
      interview: "{{ os.environ }}"
"""
    found = problems(tmp_path, text)
    f = str(tmp_path / "wf.yaml")
    expected = [
        f"{f}:3: /trigger/use: unknown trigger 'willo.new_respons'; did you mean willo.new_response",
        f"{f}:7: /steps/0/with/title: step make: 5 is not of type 'string'",
        f"{f}:7: /steps/0/with: step make: unknown field ('colour' was unexpected)",
        f"{f}:8: /steps/1/id: step make: duplicate step id (first at /steps/0)",
        f"{f}:9: /steps/1/use: step make: unknown action 'willo.create_interviews'; did you mean willo.create_interview",
        f"{f}:14: /steps/2/with/interview: step invite: steps.make.output has no field 'kee'",
        f"{f}:19: /steps/3/with/participant: step early: steps.late runs after this step",
        f"{f}:22: /steps/4/if: step late: 'item' is only defined in a step with foreach",
        f"{f}:24: /steps/4/with/participant: step late: steps.invite.output[0] has no field 'emial'",
        f'{f}:27: /steps/5/foreach: "not an expression" does not match',
        f"{f}:29: /steps/5/with/interview: step sneaky: unknown name 'os'",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in found), f"missing: {line}\n" + "\n".join(found)


def test_an_input_the_action_does_not_take_is_caught_whatever_its_value(tmp_path: Path) -> None:
    """An unknown input name is a static error when its value is an expression too (it
    used to pass validate and fail only at run time); a known name with an expression is
    still fine."""
    text = """\
workflow: 1
name: names
inputs:
  type: object
  properties: {s: {type: string}}
steps:
  - id: langs
    use: willo.list_languages
    with: {search: "{{ inputs.s }}"}
  - id: one
    use: willo.get_interview
    with: {interview: "{{ inputs.s }}", colour: "{{ inputs.s }}"}
"""
    found = problems(tmp_path, text)
    f = str(tmp_path / "wf.yaml")
    assert found == [
        f"{f}:9: /steps/0/with: step langs: unknown field ('search' was unexpected)",
        f"{f}:12: /steps/1/with: step one: unknown field ('colour' was unexpected)",
    ], found


def test_inputs_and_trigger_paths_are_checked(tmp_path: Path) -> None:
    text = """\
workflow: 1
name: paths
inputs:
  type: object
  properties:
    job: {type: string}
trigger: {use: willo.stage_change, with: {interview: nope}}
steps:
  - id: a
    use: willo.get_participant
    with:
      participant: "{{ trigger.data.participant.kye }}"
  - id: b
    use: willo.create_interview
    with:
      title: "{{ inputs.jbo }}"
  - id: c
    use: willo.list_interviews
    with:
      search: "{{ steps.a.output.key | upper }} {{ trigger.data.to_stage }} {{ inputs.job }}"
"""
    found = problems(tmp_path, text)
    assert any('/trigger/with/interview: "nope" does not match' in p for p in found)
    assert any("step a: trigger.data.participant has no field 'kye'" in p for p in found)
    assert any("step b: inputs has no field 'jbo'" in p for p in found)
    assert not any("step c" in p for p in found)


def test_examples_validate() -> None:
    for path in EXAMPLES.glob("*.yaml"):
        load(path, get_catalog())


def test_expressions_keep_native_types_and_stay_sandboxed() -> None:
    scope = {"inputs": {"n": 3, "xs": [1, 2], "d": {"a": 1}}}
    assert expressions.evaluate("{{ inputs.xs }}", scope) == [1, 2]
    assert expressions.evaluate("{{ inputs.n + 1 }}", scope) == 4
    assert expressions.evaluate(" {{ inputs.d }} ", scope) == {"a": 1}
    assert expressions.evaluate("n={{ inputs.n }}", scope) == "n=3"
    for evil in (
        "{{ inputs.__class__.__mro__ }}",
        "{{ inputs.xs.append(3) }}",
        "{{ ''.__class__.__subclasses__() }}",
        "{{ range(10) }}",
        "{{ lipsum() }}",
        "{{ inputs.missing }}",
    ):
        with pytest.raises(expressions.ExpressionError):
            expressions.evaluate(evil, scope)
    assert scope["inputs"]["xs"] == [1, 2]


def test_screening_example_runs_on_the_sandbox() -> None:
    r = invoke("run", str(EXAMPLES / "screening.yaml"), "--sandbox", "--json")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["status"] == "succeeded"
    steps = {s["id"]: s for s in result["steps"]}
    assert len(steps["invite"]["output"]) == 2
    assert steps["shortlist"]["output"]["stage"] == "Shortlisted"


def test_screening_with_csv_input(sandbox, engine) -> None:
    r = invoke(
        "run",
        str(EXAMPLES / "screening.yaml"),
        "--json",
        "-i",
        f"candidates=@{EXAMPLES / 'candidates.csv'}",
        "-i",
        "job_title=Data Engineer",
        "-i",
        "shortlist=alan@example.com",
    )
    assert r.exit_code == 0, r.stderr
    steps = {s["id"]: s for s in json.loads(r.stdout)["steps"]}
    assert [o["participant"]["email"] for o in steps["invite"]["output"]] == [
        "ada@example.com",
        "grace@example.com",
        "alan@example.com",
    ]
    assert steps["shortlist"]["output"]["email"] == "alan@example.com"


def test_event_driven_example_runs_with_an_event_file() -> None:
    r = invoke(
        "run",
        str(EXAMPLES / "review_on_response.yaml"),
        "--sandbox",
        "--event",
        str(EXAMPLES / "events/new_response.json"),
    )
    assert r.exit_code == 0, r.stderr
    assert "Shortlisted" in r.stdout and r.stdout.strip().endswith("succeeded")


def test_event_file_must_match_the_trigger(tmp_path: Path) -> None:
    bad = write(tmp_path, json.dumps({"event": "new_response"}), "event.json")
    r = invoke("run", str(EXAMPLES / "review_on_response.yaml"), "--dry-run", "--event", str(bad))
    assert r.exit_code == 1 and "not a willo.new_response event" in r.stderr and "/:" in r.stderr


def test_csv_with_a_bad_row_names_the_row(tmp_path: Path) -> None:
    csv = write(tmp_path, "email,first_name\na@example.com,A\nb@example.com,B,extra\n", "c.csv")
    r = invoke("run", str(EXAMPLES / "screening.yaml"), "--dry-run", "-i", f"candidates=@{csv}")
    assert r.exit_code == 1
    assert r.stderr.strip() == f"error: {csv}:3: row has 3 cells, the header has 2"


def test_inputs_are_checked_against_the_inputs_schema() -> None:
    r = invoke("run", str(EXAMPLES / "screening.yaml"), "--dry-run", "-i", "shortlist=nobody")
    assert r.exit_code == 1
    assert 'inputs: /shortlist: "nobody" is not a valid email' in r.stderr


def test_dry_run_opens_no_socket(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a dry run opened a socket")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    r = invoke(
        "run",
        str(EXAMPLES / "screening.yaml"),
        "--dry-run",
        "--json",
        "-i",
        f"candidates=@{EXAMPLES / 'candidates.csv'}",
        WILLO_API_KEY="sk_secret_123",
    )
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["dry_run"] and result["run_id"] is None
    first = result["steps"][0]["requests"][0]
    assert first["method"] == "POST" and first["url"].endswith("/interviews/")
    assert first["headers"]["Authorization"] == "***"
    assert result["steps"][1]["requests"][0]["handler"] == "willo.find_or_invite_participant"
    assert "sk_secret_123" not in r.stdout


def test_step_failure_names_the_step_and_keeps_the_journal(sandbox, tmp_path: Path, engine) -> None:
    wf = write(
        tmp_path,
        f"""\
workflow: 1
name: fails
steps:
  - id: first
    use: willo.get_interview
    with: {{interview: {BACKEND}}}
  - id: second
    use: willo.get_participant
    with: {{participant: "{"0" * 32}"}}
  - id: third
    use: willo.list_interviews
""",
    )
    r = invoke("run", str(wf))
    assert r.exit_code == 1
    started, error = r.stderr.strip().splitlines()
    assert started.startswith("run ") and started.endswith(" started")
    assert error.startswith("error: step second: GET ")
    assert "404 No Participant matches the given query." in r.stderr
    runs = json.loads(invoke("runs", "--json").stdout)
    assert runs[0]["status"] == "failed" and runs[0]["units_succeeded"] == 1


def test_on_error_continue_and_if(sandbox, tmp_path: Path, engine) -> None:
    wf = write(
        tmp_path,
        f"""\
workflow: 1
name: tolerant
steps:
  - id: missing
    use: willo.get_participant
    on_error: continue
    with: {{participant: "{"0" * 32}"}}
  - id: when_missing
    use: willo.list_interviews
    if: "{{{{ steps.missing.status == 'failed' }}}}"
  - id: never
    use: willo.list_interviews
    if: "{{{{ steps.missing.status == 'succeeded' }}}}"
""",
    )
    r = invoke("run", str(wf), "--json")
    assert r.exit_code == 0, r.stderr
    statuses = [s["status"] for s in json.loads(r.stdout)["steps"]]
    assert statuses == ["failed", "succeeded", "skipped"]


def test_foreach_concurrency_is_bounded(conn, sandbox, tmp_path: Path, monkeypatch, engine) -> None:
    monkeypatch.setattr(sandbox.app.faults, "latency_ms", 40)
    wf = load(
        write(
            tmp_path,
            """\
workflow: 1
name: parallel
steps:
  - id: get
    use: willo.list_languages
    foreach: "{{ inputs.pages }}"
    concurrency: 4
    with: {page: "{{ item }}", page_size: 1}
""",
        ),
        conn.catalog,
    )
    active, peak, lock = [0], [0], threading.Lock()
    real = conn.call

    def counting(action, inputs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            return real(action, inputs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(conn, "call", counting)
    result = run_workflow(engine, conn, wf, {"pages": list(range(1, 13))}, store=None)
    assert result.status == "succeeded"
    assert [o["results"][0]["code"] for o in result.steps[0].output][:3] == ["en", "en-US", "fr"]
    assert peak[0] == 4


def test_cassette_replay_runs_offline(sandbox, tmp_path: Path, monkeypatch) -> None:
    from connector.http.cassettes import record

    cassette = tmp_path / "screening.yaml"
    monkeypatch.setenv("WILLO_MAX_CONCURRENCY", "1")  # vcrpy records one request at a time
    with record(cassette):
        r = invoke("run", str(EXAMPLES / "screening.yaml"), "--json")
    assert r.exit_code == 0, r.stderr
    recorded = json.loads(r.stdout)
    text = cassette.read_text()
    assert sandbox.api_key not in text and "REDACTED" in text
    monkeypatch.delenv("WILLO_BASE_URL")
    monkeypatch.delenv("WILLO_API_KEY")

    def refuse(*args, **kwargs):
        raise AssertionError("replay opened a socket")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    r = invoke("run", str(EXAMPLES / "screening.yaml"), "--cassette", str(cassette), "--json")
    assert r.exit_code == 0, r.stderr
    replayed = json.loads(r.stdout)
    assert [s["output"] for s in replayed["steps"]] == [s["output"] for s in recorded["steps"]]
    r = invoke("run", str(EXAMPLES / "screening.yaml"), "--cassette", str(cassette), "-i", "job_title=Other")
    assert r.exit_code == 1 and "the cassette does not hold" in r.stderr
    assert [line.split(" ")[0] for line in r.stderr.strip().splitlines()] == [
        "run",
        "error:",
    ]  # one error line


CRASH_WF = """\
workflow: 1
name: bulk-invite
inputs:
  type: object
  required: [interview, count]
  properties:
    interview: {type: string}
    count: {type: integer}
steps:
  - id: invite
    use: willo.invite_participant
    foreach: "{{ range_of(inputs.count) }}"
    concurrency: 4
    with:
      interview: "{{ inputs.interview }}"
      email: "candidate{{ item }}@example.com"
"""


def test_sigkill_mid_foreach_then_resume_invites_each_exactly_once(
    sandbox, tmp_path: Path, monkeypatch
) -> None:
    people = [{"email": f"candidate{i}@example.com"} for i in range(50)]
    wf = write(
        tmp_path,
        CRASH_WF.replace("range_of(inputs.count)", "inputs.people")
        .replace("required: [interview, count]", "required: [interview, people]")
        .replace("count: {type: integer}", "people: {type: array}")
        .replace("candidate{{ item }}@example.com", "{{ item.email }}"),
    )
    (tmp_path / "people.json").write_text(json.dumps(people))
    monkeypatch.setattr(sandbox.app.faults, "latency_ms", 25)
    env = script_env(
        WILLO_BASE_URL=sandbox.base_url,
        WILLO_API_KEY=sandbox.api_key,
        WILLO_RATE_LIMIT="0",
        WILLO_STATE_DIR=str(tmp_path / "state"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        WILLO_LEASE_SECONDS="1",  # the killed run's lease expires after a second
    )

    def invited() -> list[str]:
        return [
            p["email"]
            for p in sandbox.store.table("participants").values()
            if p["interview"] == BACKEND and p["email"].startswith("candidate")
        ]

    proc = subprocess.Popen(
        [
            *script(),
            "run",
            str(wf),
            "-i",
            f"interview={BACKEND}",
            "-i",
            f"people=@{tmp_path / 'people.json'}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while len(invited()) < 15 and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = len(invited())
    assert 15 <= at_kill < 50, at_kill

    def listed() -> list[dict]:
        return json.loads(
            subprocess.run(
                [*script(), "runs", "--json"], env=env, capture_output=True, text=True, check=True
            ).stdout
        )

    runs = listed()
    deadline = time.monotonic() + 15
    while runs[0]["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)  # until the dead process's lease expires
        runs = listed()
    assert runs[0]["status"] == "interrupted"
    out = subprocess.run(
        [*script(), "resume", runs[0]["id"][:18], "--json"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "succeeded"
    emails = invited()
    assert sorted(emails) == sorted(p["email"] for p in people)  # each exactly once
    assert [o["email"] for o in result["steps"][0]["output"]] == [p["email"] for p in people]
    again = subprocess.run([*script(), "resume", runs[0]["id"]], env=env, capture_output=True, text=True)
    assert again.returncode == 1 and "already succeeded" in again.stderr


def test_resume_reconciles_a_unit_caught_sending(conn, sandbox, tmp_path: Path) -> None:
    """A unit journaled as sending whose request landed is looked up, not resent."""
    from connector.engines.local import LocalExecutor
    from connector.state.store import StateStore
    from connector.workflows.runner import Runner

    store = StateStore(tmp_path / "s")
    wf = load(
        write(
            tmp_path,
            f"""\
workflow: 1
name: one
steps:
  - id: invite
    use: willo.invite_participant
    with: {{interview: {BACKEND}, email: landed@example.com}}
""",
        ),
        conn.catalog,
    )
    run_id = store.new_run(wf.path, wf.name, wf.text, {}, None, {})
    inputs = {"interview": BACKEND, "email": "landed@example.com"}
    store.mark_unit(run_id, "invite", -1, "willo.invite_participant", "sending", inputs=inputs)
    conn.call("willo.invite_participant", inputs)  # it landed before the crash
    before = sandbox.app.requests_served
    result = Runner(conn, wf, store=store, executor=LocalExecutor()).resume(run_id, {}, None)
    assert result.status == "succeeded"
    assert result.steps[0].output["email"] == "landed@example.com"
    assert sandbox.app.requests_served == before + 1  # one lookup, no second invite


def test_foreach_shows_a_progress_bar_only_on_a_terminal(conn, sandbox, tmp_path: Path, monkeypatch) -> None:
    import io
    import sys

    from connector.engines.local import LocalExecutor
    from connector.workflows.runner import Runner

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    wf = load(
        write(
            tmp_path,
            """\
workflow: 1
name: bar
steps:
  - id: pages
    use: willo.list_languages
    foreach: "{{ inputs.pages }}"
    with: {page: "{{ item }}", page_size: 1}
""",
        ),
        conn.catalog,
    )
    for tty, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", tty)
        assert (
            Runner(conn, wf, store=None, executor=LocalExecutor()).start({"pages": [1, 2, 3]}).status
            == "succeeded"
        )
        assert ("pages [####" in tty.getvalue() and "3/3, " in tty.getvalue()) is shown


def test_input_references_render_as_jinja_renders_them(monkeypatch) -> None:
    """``{{ input.x }}`` is answered without Jinja2 (issue 16.6): exactly as Jinja2 would,
    values, absent inputs (omitted or an error), dict-method names and paths alike."""
    import re

    from connector.errors import ConnectorError
    from connector.workflows import expressions as ex

    templates = [
        "{{ input.a }}",
        " {{input.a}} ",
        "{{ input.items }}",
        "{{ input.missing }}",
        "{{ input._x }}",
        "/p/{{ input.a }}/",
        "/p/{{ input.a }}/{{ input.b }}/",
        "/p/{{ input.missing }}/",
        "{{ input.a }}-{{ input.b }}",
        "/{# c #}{{ input.a }}/",
        "plain",
        "{{ input.a | upper }}",
    ]
    scopes = [
        {"input": {"a": "x y/z", "b": 3, "_x": None, "items": "it"}},
        {"input": {"a": None, "b": True, "items": [1]}},
        {"input": {"a": {"k": [1, 2]}, "b": 2.5}},
        {"input": {}},
    ]

    def outcomes() -> list:
        found = []
        for text in templates:
            for scope in scopes:
                for how in ("evaluate", "render", "path"):
                    try:
                        if how == "evaluate":
                            value = ex.evaluate(text, scope)
                        elif how == "render":
                            value = ex.render({"k": text}, scope, omit_undefined=True)
                        else:
                            value = ex.render_path(text, scope)
                        found.append(("ok", repr(value), type(value).__name__))
                    except ConnectorError as exc:
                        found.append(("error", str(exc)))
        return found

    fast = outcomes()
    monkeypatch.setattr(ex, "_INPUT_NAME", re.compile(r"(?!x)x"))  # never matches: Jinja2 for all
    assert fast == outcomes()


# ---------------------------------------------------------------------- journal group commit (issue 16.5)


def test_a_unit_is_sending_on_disk_before_its_request_leaves(sandbox, tmp_path: Path) -> None:
    """The prepare_request hook runs as the request is about to be sent: from another
    connection (so only what is committed shows), its unit is already ``sending``."""
    import sqlite3

    from connector import hookimpl
    from connector.catalog import plugins
    from connector.engines.local import LocalExecutor
    from connector.http.client import Settings
    from connector.state.store import StateStore
    from connector.workflows.runner import Runner
    from connector.workflows.runtime import Connector

    store = StateStore(tmp_path / "state")
    seen: dict[int, list[str]] = {}

    class Spy:
        @hookimpl
        def prepare_request(self, manifest, request):
            page = int(request["params"]["page"])
            with sqlite3.connect(store.path) as other:
                rows = other.execute(
                    "SELECT status FROM units WHERE step = 'pages' AND item = ?", (page - 1,)
                )
                seen[page - 1] = [r[0] for r in rows]

    host = plugins.build_host(entry_points=[], extra=[("spy", Spy())])
    conn = Connector(host, settings=Settings.from_env(rate="0"))
    wf = load(
        write(
            tmp_path,
            "workflow: 1\nname: order\nsteps:\n  - id: pages\n    use: willo.list_languages\n"
            '    foreach: "{{ inputs.pages }}"\n    concurrency: 8\n    with: {page: "{{ item }}", page_size: 1}\n',
        ),
        conn.catalog,
    )
    result = Runner(conn, wf, store=store, progress=False, executor=LocalExecutor()).start(
        {"pages": list(range(1, 13))}
    )
    assert result.status == "succeeded"
    assert seen == {i: ["sending"] for i in range(12)}  # each on disk, as sending, before it left
    assert {r["status"] for r in store.units(result.run_id).values()} == {"succeeded"}


def test_rows_written_at_once_share_a_transaction_and_each_waits_for_its_own(tmp_path: Path) -> None:
    import sqlite3

    from connector.state.store import StateStore

    store = StateStore(tmp_path)
    run = store.new_run("wf", "wf", "", {}, None, {})
    inside, release = threading.Event(), threading.Event()

    def slow_fence(db):  # holds the first transaction open while the others queue
        inside.set()
        assert release.wait(10)

    def visible(item: int) -> bool:
        with sqlite3.connect(store.path) as other:
            return bool(other.execute("SELECT 1 FROM units WHERE item = ?", (item,)).fetchall())

    returned: dict[int, bool] = {}

    def mark(item: int, fence=None) -> None:
        store.mark_unit(run, "s", item, "a", "sending", inputs={"i": item}, guard=fence)
        returned[item] = visible(item)  # on disk by the time it returns

    first = threading.Thread(target=mark, args=(0, slow_fence))
    first.start()
    assert inside.wait(10)
    others = [threading.Thread(target=mark, args=(i,)) for i in range(1, 8)]
    for t in others:
        t.start()
    time.sleep(0.2)  # they queue behind the open transaction
    assert not returned  # nobody returned before its row was committed
    before = store._group.transactions
    release.set()
    for t in [first, *others]:
        t.join(10)
    assert returned == dict.fromkeys(range(8), True)
    assert store._group.transactions - before == 1  # the seven queued rows: one transaction


def test_a_lost_lease_fails_its_own_rows_not_the_others_in_the_transaction(tmp_path: Path) -> None:
    from connector.state.leases import LeaseLost
    from connector.state.store import StateStore

    store = StateStore(tmp_path)
    mine = store.new_run("wf", "wf", "", {}, None, {}, hold=True)
    lost = store.new_run("wf", "wf", "", {}, None, {})  # its lease was never ours

    def fence(run):
        def check(db):
            store.leases.check(f"run:{run}", db)

        check.key = run
        return check

    errors: dict[str, BaseException | None] = {}

    def mark(run: str) -> None:
        try:
            store.mark_unit(run, "s", 0, "a", "sending", guard=fence(run))
            errors[run] = None
        except Exception as exc:
            errors[run] = exc

    threads = [threading.Thread(target=mark, args=(r,)) for r in (mine, lost, mine)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors[mine] is None and isinstance(errors[lost], LeaseLost)
    assert set(store.units(mine)) == {("s", 0)} and store.units(lost) == {}


def test_group_commit_under_many_writers_loses_nothing_and_never_stalls(tmp_path: Path) -> None:
    from connector.state.store import StateStore

    store = StateStore(tmp_path)
    run = store.new_run("wf", "wf", "", {}, None, {})
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(150):
                store.mark_unit(run, f"s{n}", i, "a", "sending", inputs={"i": i})
                store.mark_unit(run, f"s{n}", i, "a", "succeeded", output={"n": n, "i": i})
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads) and not failures
    rows = store.units(run)
    assert len(rows) == 12 * 150 and {r["status"] for r in rows.values()} == {"succeeded"}
    assert store._group.transactions < 2 * 12 * 150  # some rows shared a transaction


# ---------------------------------------------------------------------- units queued ahead (issue 16.5)


def test_an_item_that_stops_its_step_starts_nothing_queued_behind_it(conn, sandbox, tmp_path: Path) -> None:
    """Each thread holds a second item ready (so it starts it at once); a failing item
    with on_error: stop sets stop in its own thread: the item queued behind it is not
    started, however late the run's loop sees the failure."""
    from connector.engines.local import LocalExecutor
    from connector.errors import InputError
    from connector.workflows.runner import Runner

    wf = load(
        write(
            tmp_path,
            """\
workflow: 1
name: stop-early
steps:
  - id: get
    use: willo.list_languages
    foreach: "{{ inputs.pages }}"
    concurrency: 2
    with: {page: "{{ item }}", page_size: 1}
""",
        ),
        conn.catalog,
    )
    started: list[int] = []
    two = threading.Event()
    real = conn.call

    def call(action, inputs):
        started.append(inputs["page"])
        if inputs["page"] == 1:
            two.wait(5)  # page 2 is in flight when page 1 fails
            raise InputError("page 1 refused")
        two.set()
        time.sleep(0.3)
        return real(action, inputs)

    conn.call = call
    result = Runner(conn, wf, store=None, progress=False, executor=LocalExecutor()).start(
        {"pages": [1, 2, 3, 4, 5]}
    )
    assert result.status == "failed"
    assert sorted(started) == [1, 2]
    assert [i["status"] for i in result.steps[0].items] == [
        "failed",
        "succeeded",
        "not started",
        "not started",
        "not started",
    ]


def test_units_queued_but_not_started_never_start_once_the_executor_is_left() -> None:
    from connector.engines.local import LocalExecutor
    from connector.workflows.runner import Unit

    gate = threading.Event()
    started: list[int] = []

    def fn(unit: Unit) -> int:
        started.append(unit.item)
        if unit.item != 0:
            gate.wait(5)
        return unit.item

    runs = LocalExecutor().run([Unit("s", i, "a", {}) for i in range(10)], fn, 2)
    assert next(runs)[0].item == 0
    threading.Timer(0.3, gate.set).start()
    runs.close()  # e.g. Ctrl-C in the loop: the two in flight finish, the queued never start
    assert 3 not in started and max(started) <= 2
    time.sleep(0.1)
    assert 3 not in started


def test_run_json_is_one_line_off_a_terminal_and_indented_on_one(
    sandbox, tmp_path: Path, monkeypatch
) -> None:
    """As `call --json` prints a list: the run report on one line when piped (encoded in
    C, not by the pure-Python indenting encoder), indented on a terminal; the same JSON."""
    from connector.cli import run_cmd

    wf = write(
        tmp_path,
        """\
workflow: 1
name: report
steps:
  - id: get
    use: willo.list_languages
    foreach: "{{ inputs.pages }}"
    concurrency: 2
    with: {page: "{{ item }}", page_size: 1}
""",
    )
    piped = invoke("run", str(wf), "-i", "pages=[1, 2, 3]", "--json")
    assert piped.exit_code == 0, piped.stderr
    assert piped.stdout.count("\n") == 1
    monkeypatch.setattr(run_cmd, "stdout_is_terminal", lambda: True)
    shown = invoke("run", str(wf), "-i", "pages=[1, 2, 3]", "--json")
    assert shown.stdout.startswith('{\n  "run_id": ')
    one, other = json.loads(piped.stdout), json.loads(shown.stdout)
    assert one["run_id"] != other["run_id"]
    assert {**one, "run_id": None} == {**other, "run_id": None}


# ---------------------------------------------------------------------- settled without jsonschema (issue 16.5)


def _nested(depth: int) -> dict:
    """A workflow whose branch steps nest ``depth`` deep."""
    steps: list = [{"id": f"get{depth}", "use": "willo.list_languages"}]
    for d in range(depth, 0, -1):
        steps = [
            {
                "id": f"b{d}",
                "if": "{{ true }}",
                "then": steps,
                "else": [{"id": f"e{d}", "use": "willo.list_languages"}],
            }
        ]
    return {"workflow": 1, "name": "nested", "steps": steps}


def test_the_workflow_proof_is_never_wrong_where_it_settles_a_document() -> None:
    """``errors(doc, "workflow")`` settles a valid document with a compiled proof of the
    shipped schema (its references inlined), leaving the rest to jsonschema: the proof
    never calls a document jsonschema refuses valid, and settles the examples."""
    import copy
    import random

    from connector.catalog import schemas
    from connector.yamlio import load_file

    proof = schemas._shipped_proof("workflow")
    check = schemas._validator_for_shipped("workflow")
    docs = [load_file(p).data for p in (EXAMPLES / "screening.yaml", EXAMPLES / "review_on_response.yaml")]
    docs += [_nested(d) for d in range(5)]
    docs += [
        {
            "workflow": 1,
            "name": "s",
            "steps": [{"id": "s", "switch": "{{ 1 }}", "cases": {"1": [{"id": "x", "use": "a.b"}]}}],
        },
        {"workflow": 1, "name": "s", "steps": [{"id": "s", "switch": "{{ 1 }}"}]},  # cases missing
        {
            "workflow": 1,
            "name": "s",
            "steps": [{"id": "s", "then": [{"id": "x", "use": "a.b"}]}],
        },  # then needs if
    ]
    rng = random.Random(16)
    mutants = []
    for doc in docs:
        for _ in range(40):
            m = copy.deepcopy(doc)
            target = m["steps"][0] if m.get("steps") else m
            key = rng.choice(["concurrency", "retry", "id", "timeout", "on_error", "bogus", "foreach", "use"])
            target[key] = rng.choice(
                [0, -1, 3, "x", None, {"attempts": 0}, {"attempts": 2}, [], "{{ item }}", 10**7]
            )
            mutants.append(m)
    settled = 0
    for doc in docs + mutants:
        valid = not list(check.iter_errors(doc))
        proven = schemas.proves_valid(doc, proof)
        assert valid or not proven, doc
        settled += proven
        assert (schemas.errors(doc, "workflow") == []) == valid
    assert all(schemas.proves_valid(d, proof) for d in [*docs[:2], _nested(0), _nested(1)]) and settled > 5
    assert not schemas.proves_valid(_nested(2), proof)  # deeper than inlined: jsonschema decides
    assert schemas.errors(_nested(4), "workflow") == []


def test_a_run_whose_inputs_come_from_expressions_imports_no_jsonschema(sandbox, tmp_path: Path) -> None:
    from tests.test_cli import _imported

    wf = write(
        tmp_path,
        """\
workflow: 1
name: light
steps:
  - id: get
    use: willo.get_interview
    with: {interview: "{{ inputs.key }}"}
""",
    )
    env = script_env(
        XDG_CACHE_HOME=str(tmp_path / "c"),
        WILLO_STATE_DIR=str(tmp_path / "s"),
        WILLO_BASE_URL=sandbox.base_url,
        WILLO_API_KEY=sandbox.api_key,
        WILLO_RATE_LIMIT="0",
    )
    _imported(["actions"], env, ())  # the catalog cached
    args = ["run", str(wf), "-i", "key=927982d43d577f03e4877aab073a730e", "--json"]
    assert _imported(args, env, ("jsonschema", "referencing")) == []
    # a literal input that is wrong is still found (by jsonschema, which words it)
    bad = write(
        tmp_path,
        "workflow: 1\nname: b\nsteps:\n  - id: g\n    use: willo.list_languages\n    with: {page: 0}\n",
        "bad.yaml",
    )
    r = invoke("validate", str(bad))
    assert r.exit_code != 0 and "/steps/0/with/page" in r.output
