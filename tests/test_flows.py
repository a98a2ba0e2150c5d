"""The workflow language, second edition (issue 12): input defaults, secrets,
http.request, retry and timeout, branching, run history, CSV inputs, progress."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from connector.catalog.index import get_catalog
from connector.cli import main
from connector.errors import ManifestError
from connector.http.pacing import Pacer
from connector.sandbox.seed import stable
from connector.state.store import StateStore
from connector.workflows.model import load
from connector.workflows.progress import Progress
from connector.workflows.runner import RetryPolicy
from tests.conftest import EXAMPLES, Receiver, run_workflow, script, script_env, temporal_history

BACKEND = stable("interview:Backend Engineer")
SECRET = "chat-token-0123456789abcdef"


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


def no_wait(waits: list[float] | None = None):
    """A runner's wait between tries that records the wait instead of sleeping."""

    def wait(seconds: float) -> bool:
        if waits is not None:
            waits.append(seconds)
        return False

    return wait


# --------------------------------------------------------------------------- 1. defaults


def test_input_defaults_are_applied_before_validation(tmp_path: Path) -> None:
    r = invoke("run", str(EXAMPLES / "screening.yaml"), "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    steps = {s["id"]: s for s in json.loads(r.stdout)["steps"]}
    assert steps["interview"]["requests"][0]["json"]["title"] == "Backend Engineer"
    assert [i["inputs"]["email"] for i in steps["invite"]["requests"]] == [
        "ada@example.com",
        "grace@example.com",
    ]
    assert "| default" not in (EXAMPLES / "screening.yaml").read_text().split("shortlist:")[0]
    wf = write(
        tmp_path,
        """\
workflow: 1
name: nested
inputs:
  type: object
  properties:
    people:
      type: array
      items: {type: object, required: [email], properties: {email: {type: string}, lang: {type: string, default: en}}}
    size: {type: integer, default: 2, minimum: 1}
steps:
  - id: langs
    use: willo.list_interviews
    foreach: "{{ inputs.people }}"
    with: {search: "{{ item.lang }}", page_size: "{{ inputs.size }}"}
""",
    )
    r = invoke("run", str(wf), "--dry-run", "--json", "-i", 'people=[{"email": "a@example.com"}]')
    assert r.exit_code == 0, r.stderr
    sent = json.loads(r.stdout)["steps"][0]["requests"][0]
    assert sent["params"] == {"search": "en", "page_size": 2}
    r = invoke("run", str(wf), "--dry-run", "-i", "size=0")
    assert r.exit_code == 1 and "inputs: /size: 0 is less than the minimum of 1" in r.stderr


# --------------------------------------------------------------------------- 2. secrets

NOTIFY = """\
workflow: 1
name: notify
steps:
  - id: post
    use: http.request
    with:
      method: POST
      url: "{url}/hook?token={{{{ secrets.chat_token }}}}"
      headers: {{Authorization: "Bearer {{{{ secrets.chat_token }}}}"}}
      json: {{text: "hello", echo: "{{{{ secrets.chat_token }}}}"}}
"""


def test_an_unknown_secret_is_a_static_error_naming_it(tmp_path: Path) -> None:
    found = problems(tmp_path, NOTIFY.format(url="https://chat.example.com"))
    f = tmp_path / "wf.yaml"
    assert (
        f"{f}:8: /steps/0/with/url: step post: unknown secret 'chat_token' (set WILLO_SECRET_CHAT_TOKEN or add it to secrets: in the config file)"
        in found
    )
    assert any(
        "/steps/0/with/headers/Authorization: step post: unknown secret 'chat_token'" in p for p in found
    )
    whole = problems(
        tmp_path, NOTIFY.format(url="https://x").replace("secrets.chat_token }}", "secrets }}", 1)
    )
    assert any("read a secret by name: secrets.NAME" in p for p in whole)


def test_secrets_reach_the_request_and_never_output_journal_errors_or_logs(
    sandbox, receiver: Receiver, tmp_path: Path, monkeypatch, caplog, engine
) -> None:
    monkeypatch.setenv("WILLO_SECRET_CHAT_TOKEN", SECRET)
    wf = write(tmp_path, NOTIFY.format(url=receiver.url))
    receiver.replies.append((200, {"Content-Type": "application/json"}, json.dumps({"got": SECRET}).encode()))
    caplog.set_level(logging.INFO)
    r = invoke("run", str(wf), "--json")
    assert r.exit_code == 0, r.stderr
    sent = receiver.requests[0]
    assert sent["headers"]["Authorization"] == f"Bearer {SECRET}" and SECRET in str(sent["path"])
    assert json.loads(sent["body"]) == {"text": "hello", "echo": SECRET}
    assert SECRET not in r.stdout + r.stderr and "***" in r.stdout
    run_id = json.loads(r.stdout)["run_id"]
    if engine == "local":
        assert not stored_with(tmp_path / "state", SECRET)
    else:
        assert SECRET.encode() not in temporal_history(run_id)  # the journal, on Temporal
    shown = invoke("runs", "show", run_id, "--json")
    assert shown.exit_code == 0 and SECRET not in shown.stdout
    assert json.loads(shown.stdout)["steps"][0]["status"] == "succeeded"
    # an error that quotes the URL, and the dry run
    receiver.replies.append((500, {"Content-Type": "text/plain"}, f"bad token {SECRET}".encode()))
    bad = invoke("run", str(wf))
    assert bad.exit_code == 1 and SECRET not in bad.stdout + bad.stderr and "500" in bad.stderr
    dry = invoke("run", str(wf), "--dry-run", "--json")
    assert dry.exit_code == 0 and SECRET not in dry.stdout
    assert SECRET not in caplog.text
    if engine == "local":
        assert not stored_with(tmp_path / "state", SECRET)


def stored_with(state: Path, secret: str) -> list[str]:
    """The state store's files (the database, its write-ahead log, anything beside)
    that hold ``secret``."""
    files = [p for p in state.rglob("*") if p.is_file()]
    assert any(p.name == "state.sqlite3" for p in files), files
    return [p.name for p in files if secret.encode() in p.read_bytes()]


# --------------------------------------------------------------------------- 3. http.request


def call(conn, **inputs):
    return conn.call("http.request", inputs).output


def test_http_request_methods_bodies_and_answers(conn, receiver: Receiver) -> None:
    out = call(
        conn, url=receiver.url + "/a", query={"q": "x y", "n": 2, "skip": None}, headers={"X-Trace": "1"}
    )
    assert out["status"] == 200 and out["json"] == {"ok": True}
    got = receiver.requests[-1]
    assert got["method"] == "GET" and got["path"] == "/a?q=x+y&n=2" and got["headers"]["X-Trace"] == "1"
    receiver.replies.append((201, {"Content-Type": "text/plain"}, b"made"))
    out = call(
        conn, url=receiver.url + "/b", method="POST", body="raw text", headers={"Content-Type": "text/plain"}
    )
    assert out == {"status": 201, "headers": out["headers"], "text": "made"}
    assert receiver.requests[-1]["body"] == b"raw text"
    receiver.replies.append((404, {"Content-Type": "application/json"}, b'{"error": "no"}'))
    out = call(conn, url=receiver.url + "/c", fail_on_status=False)
    assert out["status"] == 404 and out["json"] == {"error": "no"}
    receiver.replies.append((404, {}, b"nothing here"))
    with pytest.raises(Exception, match=r"GET http://127.0.0.1:\d+/d: 404 Not Found: 'nothing here'"):
        call(conn, url=receiver.url + "/d")


def test_http_request_fails_on_a_redirect_it_does_not_follow(conn, receiver: Receiver) -> None:
    """A 3xx is not success: the POST did nothing where it was sent, and following it
    would send it again as a GET (or elsewhere); one request, a step error naming the
    target. 304 answers a conditional GET; fail_on_status: false returns the answer."""
    from connector.errors import WilloError

    receiver.replies.append((301, {"Location": "/moved/"}, b""))
    with pytest.raises(
        WilloError, match=r"POST http://127.0.0.1:\d+/hook: .*redirect to http://127.0.0.1:\d+/moved/"
    ):
        call(conn, url=receiver.url + "/hook", method="POST", json={"text": "hi"})
    assert [r["path"] for r in receiver.requests] == ["/hook"]
    receiver.replies.append((302, {"Location": "https://elsewhere.example/"}, b""))
    out = call(conn, url=receiver.url + "/r", fail_on_status=False)
    assert out["status"] == 302 and out["headers"]["location"] == "https://elsewhere.example/"
    receiver.replies.append((304, {"ETag": '"v1"'}, b""))
    assert call(conn, url=receiver.url + "/same", headers={"If-None-Match": '"v1"'})["status"] == 304


def test_http_request_refuses_plain_http_off_loopback_and_both_bodies(conn) -> None:
    from connector.errors import ConfigError, InputError

    with pytest.raises(ConfigError, match="refusing plain http:// to example.com"):
        call(conn, url="http://example.com/hook")
    with pytest.raises(InputError):
        call(conn, url="https://example.com/hook", json={"a": 1}, body="x")


def test_http_request_never_sends_the_willo_key_even_through_a_prepare_hook(
    sandbox, receiver: Receiver, tmp_path: Path
) -> None:
    from connector import hookimpl
    from connector.catalog import plugins
    from connector.errors import ConfigError
    from connector.http.client import Settings
    from connector.workflows.runtime import Connector

    class Tracing:
        copy_key = False

        @hookimpl
        def prepare_request(self, manifest, request):
            request["headers"]["X-Trace"] = "t-1"
            if self.copy_key:
                request["headers"]["X-Stolen"] = sandbox.api_key

    tracing = Tracing()
    host = plugins.build_host(entry_points=[])
    host.pm.register(tracing, "tracing")
    conn = Connector(host, settings=Settings.from_env())
    conn.call("willo.list_languages", {})  # the Willo client is up, with its key
    call(conn, url=receiver.url + "/hook", method="POST", json={"a": 1})
    got = receiver.requests[-1]
    assert got["headers"]["X-Trace"] == "t-1"
    assert "Authorization" not in got["headers"] and sandbox.api_key not in json.dumps(got, default=str)
    tracing.copy_key = True
    with pytest.raises(ConfigError, match="refusing to send the Willo API key to 127.0.0.1"):
        call(conn, url=receiver.url + "/hook", method="POST", json={"a": 1})
    assert len(receiver.requests) == 1
    with pytest.raises(ConfigError, match="refusing to send the Willo API key"):
        call(conn, url=receiver.url + "/hook?k=" + sandbox.api_key)


def test_http_request_retries_by_method_and_never_resends_a_lost_post(
    conn, receiver: Receiver, tmp_path, engine
) -> None:
    wf = load(
        write(
            tmp_path,
            f"""\
workflow: 1
name: hooks
steps:
  - id: get
    use: http.request
    retry: {{attempts: 3, backoff: 0}}
    with: {{url: "{receiver.url}/g"}}
  - id: post
    use: http.request
    retry: {{attempts: 3, backoff: 0}}
    on_error: continue
    with: {{url: "{receiver.url}/p", method: POST, json: {{n: 1}}}}
  - id: post_again
    use: http.request
    retry: {{attempts: 3, backoff: 0}}
    with: {{url: "{receiver.url}/q", method: POST, json: {{n: 2}}, idempotent: true}}
""",
        ),
        conn.catalog,
    )
    receiver.replies += [(0, {}, b""), (503, {}, b""), (200, {}, b"")]  # GET: dropped, 503, ok
    receiver.replies += [(0, {}, b"")]  # POST: the answer is lost after sending
    receiver.replies += [(0, {}, b""), (200, {}, b"")]  # POST marked idempotent: sent again
    result = run_workflow(engine, conn, wf, {}, store=StateStore(tmp_path / "s"), wait=no_wait())
    steps = {s.id: s for s in result.steps}
    assert steps["get"].status == "succeeded"
    assert steps["post"].status == "failed"
    assert "connection lost after sending" in steps["post"].error
    assert "not tried again: it may have landed, and http.request is not idempotent" in steps["post"].error
    if engine == "temporal":  # on_error: continue: the run went past it, and does not wait
        assert "the run goes on without it (on_error: continue)" in steps["post"].error
    assert steps["post_again"].status == "succeeded"
    paths = [str(r["path"]) for r in receiver.requests]
    assert paths.count("/p") == 1 and paths.count("/q") == 2 and paths.count("/g") == 3


# --------------------------------------------------------------------------- 5. retry and timeout


def test_retry_policy_backoff_doubles_with_jitter_and_honours_retry_after() -> None:
    import random

    p = RetryPolicy.from_step({"attempts": 5, "backoff": 2, "max_backoff": 5})
    rng = random.Random(1)
    waits = [p.delay(n, rng) for n in (1, 2, 3, 4)]
    assert 1 <= waits[0] <= 2 and 2 <= waits[1] <= 4 and all(2.5 <= w <= 5 for w in waits[2:])
    assert p.delay(1, rng, retry_after=9) == 9
    assert RetryPolicy().attempts == 6 and "ambiguous" in RetryPolicy().on
    assert RetryPolicy.from_step({"on": ["any"]}).allows("rejected")
    assert not RetryPolicy.from_step({"on": ["any"]}).allows("fatal")


BULK = """\
workflow: 1
name: bulk
inputs: {type: object, properties: {people: {type: array}}}
steps:
  - id: invite
    use: ACTION
    foreach: "{{ inputs.people }}"
    concurrency: 4
    with: {interview: INTERVIEW, email: "{{ item }}"}
""".replace("INTERVIEW", BACKEND)


@pytest.mark.parametrize(
    ("seed", "engine"), [(1, "local"), (2, "local"), (3, "local"), (1, "temporal")], indirect=["engine"]
)
def test_defaults_carry_a_foreach_of_find_or_invite_through_20_percent_faults(
    conn, sandbox, tmp_path, seed, engine
) -> None:
    """Each item gets backoff and tries again, lookup first: no resume, no duplicate."""
    import random

    faults = sandbox.app.faults
    faults.rate, faults._rng = 0.2, random.Random(seed)
    try:
        wf = load(write(tmp_path, BULK.replace("ACTION", "willo.find_or_invite_participant")), conn.catalog)
        people = [f"fault{seed}-{i}@example.com" for i in range(60)]
        waits: list[float] = []
        result = run_workflow(
            engine, conn, wf, {"people": people}, store=StateStore(tmp_path / "s"), wait=no_wait(waits)
        )
    finally:
        faults.rate = 0.0
    assert result.status == "succeeded", result.error
    assert sum(faults.injected.values()) > 10  # faults happened, and were waited out
    assert waits or engine == "temporal"  # (on Temporal, the server waits between tries)
    emails = [
        p["email"]
        for p in sandbox.store.table("participants").values()
        if p["email"].startswith(f"fault{seed}-")
    ]
    assert sorted(emails) == sorted(people)  # each exactly once
    assert all(0.5 <= w <= 30 for w in waits)


def faults_at(monkeypatch, sandbox, plan: dict[int, str]) -> None:
    """Inject ``plan[n]`` into the n-th API request (1-based) the sandbox answers."""
    seen = [0]

    def next_fault() -> str | None:
        seen[0] += 1
        return plan.get(seen[0])

    monkeypatch.setattr(sandbox.app.faults, "next", next_fault)


@pytest.mark.parametrize(
    ("fault", "requests_made", "landed_first"),
    [
        ("drop_after", 2, True),
        ("error_after", 2, True),
        ("error_before", 2, False),  # a 503: Willo did not take it, so no lookup is needed
        ("drop_before", 3, False),
    ],
)
def test_a_non_idempotent_action_is_reconciled_before_it_is_tried_again(
    conn, sandbox, tmp_path, monkeypatch, fault, requests_made, landed_first, engine
) -> None:
    """invite_participant is not idempotent: after a failure that may have landed (lost
    after sending, a 5xx other than 503) the next try looks it up first (the manifest's
    reconcile) and sends only if it did not; after one that surely did not land, it is
    simply sent again."""
    wf = load(write(tmp_path, BULK.replace("ACTION", "willo.invite_participant")), conn.catalog)
    faults_at(monkeypatch, sandbox, {1: fault})
    before = sandbox.app.requests_served
    result = run_workflow(
        engine, conn, wf, {"people": ["once@example.com"]}, store=StateStore(tmp_path / "s"), wait=no_wait()
    )
    assert result.status == "succeeded", result.error
    emails = [p["email"] for p in sandbox.store.table("participants").values()]
    assert emails.count("once@example.com") == 1
    assert sandbox.app.requests_served - before == requests_made  # POST, lookup or POST
    assert result.steps[0].items == [{"item": 0, "status": "succeeded", "tries": 2}]


def test_a_step_timeout_stops_a_slow_try_and_the_next_try_goes_on(
    conn, sandbox, tmp_path, monkeypatch, engine
) -> None:
    wf = load(
        write(
            tmp_path,
            """\
workflow: 1
name: slow
steps:
  - id: langs
    use: willo.list_languages
    timeout: 0.2
    retry: {attempts: 2, backoff: 0}
""",
        ),
        conn.catalog,
    )
    monkeypatch.setattr(sandbox.app.faults, "latency_ms", 600)
    result = run_workflow(engine, conn, wf, {}, store=None, wait=no_wait())
    assert result.status == "failed"
    assert "read timed out" in result.error or "step timeout" in result.error
    assert "(after 2 tries)" in result.error


def test_retry_and_timeout_nonsense_are_static_errors(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
workflow: 1
name: nonsense
steps:
  - id: a
    use: willo.list_languages
    retry: {attempts: 0, backoff: -1, on: [network, sometimes]}
    timeout: 0
  - id: b
    use: willo.list_languages
    retry: {backoff: 60, max_backoff: 5}
  - id: c
    if: "{{ true }}"
    then: [{id: d, use: willo.list_languages}]
    retry: {attempts: 2}
""",
    )
    text = "\n".join(found)
    assert (
        "/steps/0/retry/attempts: step a: 0 is less than the minimum of 1" in text
        or "/steps/0/retry/attempts: 0 is less" in text
    )
    assert "/steps/0/retry/backoff" in text and "/steps/0/retry/on/1" in text and "/steps/0/timeout" in text
    assert ":10: /steps/1/retry/max_backoff: step b: max_backoff (5) is less than backoff (60)" in text
    assert "/steps/2/retry: step c: only an action step (with `use`) takes retry" in text


# --------------------------------------------------------------------------- 6. branching

BRANCHES = f"""\
workflow: 1
name: branches
inputs: {{type: object, properties: {{mode: {{type: string, default: fast}}, score: {{type: integer, default: 5}}}}}}
steps:
  - id: decide
    if: "{{{{ inputs.score >= 4 }}}}"
    then:
      - id: good
        use: willo.get_interview
        with: {{interview: {BACKEND}}}
    else:
      - id: bad
        use: willo.list_languages
  - id: route
    switch: "{{{{ inputs.mode }}}}"
    cases:
      fast:
        - id: quick
          use: willo.list_languages
          with: {{page_size: 1}}
      slow:
        - id: careful
          use: willo.list_languages
          with: {{page_size: 2}}
    default:
      - id: other
        use: willo.list_languages
  - id: after
    use: willo.list_interviews
    with:
      search: "{{{{ steps.good.output.title if steps.good.status == 'succeeded' else 'none' }}}}"
"""


@pytest.mark.parametrize(
    ("inputs", "ran"),
    [
        ((), {"decide", "good", "route", "quick", "after"}),
        (("-i", "score=1", "-i", "mode=slow"), {"decide", "bad", "route", "careful", "after"}),
        (("-i", "mode=nope"), {"decide", "good", "route", "other", "after"}),
    ],
)
def test_if_else_and_switch_run_one_branch(sandbox, tmp_path: Path, inputs, ran, engine) -> None:
    wf = write(tmp_path, BRANCHES)
    r = invoke("run", str(wf), "--json", *inputs)
    assert r.exit_code == 0, r.stderr
    steps = {s["id"]: s for s in json.loads(r.stdout)["steps"]}
    assert set(steps) == {"decide", "good", "bad", "route", "quick", "careful", "other", "after"}
    assert {k for k, s in steps.items() if s["status"] == "succeeded"} == ran
    assert all(s["status"] == "skipped" for k, s in steps.items() if k not in ran)
    branch = steps["route"]["output"]["branch"]
    assert (
        branch
        == {"quick": "fast", "careful": "slow", "other": "default"}[
            next(iter(ran & {"quick", "careful", "other"}))
        ]
    )


def test_branch_references_are_checked(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        f"""\
workflow: 1
name: refs
steps:
  - id: decide
    if: "{{{{ true }}}}"
    then:
      - id: good
        use: willo.get_interview
        with: {{interview: {BACKEND}}}
    else:
      - id: bad
        use: willo.get_interview
        with: {{interview: "{{{{ steps.good.output.key }}}}"}}
      - id: good
        use: willo.list_languages
  - id: maybe
    use: willo.get_interview
    if: "{{{{ false }}}}"
    with: {{interview: {BACKEND}}}
  - id: unguarded
    use: willo.list_interviews
    with: {{search: "{{{{ steps.good.output.title }}}} {{{{ steps.maybe.output.title }}}}"}}
  - id: guarded
    use: willo.list_interviews
    if: "{{{{ steps.good.status == 'succeeded' }}}}"
    with: {{search: "{{{{ steps.good.output.title }}}} {{{{ steps.maybe.output.title | default('') }}}}"}}
  - id: typed
    use: willo.list_interviews
    with: {{search: "{{{{ steps.decide.output.branch }}}} {{{{ steps.good.output.titel | default('') }}}}"}}
""",
    )
    f = tmp_path / "wf.yaml"
    text = "\n".join(found)
    assert (
        f"{f}:13: /steps/0/else/0/with/interview: step bad: steps.good is in the then branch of step decide, "
        "and this step in its else branch: it cannot have run"
    ) in text
    assert f"{f}:14: /steps/0/else/1/id: step good: duplicate step id (first at /steps/0/then/0)" in text
    assert "step unguarded: steps.good may not have run (it is in the then branch of step decide)" in text
    assert "step unguarded: steps.maybe may not have run (it has an `if`)" in text
    assert "step guarded" not in text
    assert "step typed: steps.good.output has no field 'titel'" in text


def test_a_resumed_run_takes_the_branch_it_took_before(sandbox, tmp_path: Path) -> None:
    wf_path = write(tmp_path, BRANCHES)
    r = invoke("run", str(wf_path), "--json", "-i", "score=9")
    run_id = json.loads(r.stdout)["run_id"]
    store = StateStore(tmp_path / "state")
    assert json.loads(store.units(run_id)[("decide", -1)]["output"]) == {"branch": "then"}
    with store.tx() as db:  # pretend it died after deciding, and the inputs now say otherwise
        db.execute("DELETE FROM units WHERE run_id = ? AND step != 'decide'", (run_id,))
        db.execute(
            "UPDATE runs SET status = 'failed', inputs = ? WHERE id = ?", (json.dumps({"score": 0}), run_id)
        )
    again = invoke("resume", run_id, "--json")
    steps = {s["id"]: s["status"] for s in json.loads(again.stdout)["steps"]}
    assert steps["good"] == "succeeded" and steps["bad"] == "skipped"


# --------------------------------------------------------------------------- 7. run history


def test_run_id_on_stderr_and_runs_show(sandbox, tmp_path: Path) -> None:
    r = invoke("run", str(EXAMPLES / "screening.yaml"), "--json")
    assert r.exit_code == 0, r.stderr
    run_id = json.loads(r.stdout)["run_id"]  # stdout is JSON only
    assert f"run {run_id} started" in r.stderr
    shown = json.loads(invoke("runs", "show", run_id[:20], "--json").stdout)
    assert shown["id"] == run_id and shown["status"] == "succeeded" and shown["duration_s"] > 0
    assert shown["inputs"]["job_title"] == "Backend Engineer"
    steps = {s["id"]: s for s in shown["steps"]}
    assert [i["status"] for i in steps["invite"]["items"]] == ["succeeded", "succeeded"]
    assert steps["interview"]["output"]["title"] == "Backend Engineer" and steps["interview"]["tries"] == 1
    assert steps["shortlist"]["started_at"] and steps["shortlist"]["duration_s"] >= 0
    human = invoke("runs", "show", run_id)
    assert "succeeded  invite" in human.stdout and "inputs:" in human.stdout
    assert invoke("runs", "show", "nope").exit_code == 1


def test_rerun_failed_runs_only_what_failed_and_links_the_runs(sandbox, tmp_path: Path, monkeypatch) -> None:
    text = BULK.replace("ACTION", "willo.invite_participant")
    wf = write(tmp_path, text.replace("concurrency: 4", "on_error: continue\n    retry: {attempts: 1}"))
    people = json.dumps([f"again{i}@example.com" for i in range(5)])
    faults_at(monkeypatch, sandbox, {3: "error_before"})  # the third invite gets a 503
    r = invoke("run", str(wf), "--json", "-i", f"people={people}")
    first = json.loads(r.stdout)
    items = first["steps"][0]["items"]
    assert [i["status"] for i in items].count("failed") == 1, items
    before = sandbox.app.requests_served
    again = invoke("rerun", first["run_id"], "--failed", "--json")
    assert again.exit_code == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["rerun_of"] == first["run_id"] and second["status"] == "succeeded"
    # the failed one, sent again: a 503 did not land, so there is nothing to look up
    assert sandbox.app.requests_served - before == 1
    emails = [
        p["email"] for p in sandbox.store.table("participants").values() if p["email"].startswith("again")
    ]
    assert sorted(emails) == sorted(json.loads(people))
    runs = json.loads(invoke("runs", "--json").stdout)
    assert runs[0]["rerun_of"] == first["run_id"]
    assert invoke("rerun", second["run_id"], "--failed").exit_code == 1


def test_sigterm_stops_a_run_with_the_resume_command_then_resume_finishes(
    sandbox, tmp_path: Path, monkeypatch
) -> None:
    wf = write(tmp_path, BULK.replace("ACTION", "willo.invite_participant"))
    monkeypatch.setattr(sandbox.app.faults, "latency_ms", 30)
    people = [f"term{i}@example.com" for i in range(60)]
    (tmp_path / "people.json").write_text(json.dumps(people))
    env = script_env(
        WILLO_BASE_URL=sandbox.base_url,
        WILLO_API_KEY=sandbox.api_key,
        WILLO_RATE_LIMIT="0",
        WILLO_STATE_DIR=str(tmp_path / "state"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    proc = subprocess.Popen(
        [*script(), "run", str(wf), "--json", "-i", f"people=@{tmp_path / 'people.json'}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def invited() -> int:
        return sum(1 for p in sandbox.store.table("participants").values() if p["email"].startswith("term"))

    deadline = time.monotonic() + 30
    while invited() < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    run_id = json.loads(out)["run_id"]
    assert f"run {run_id} started" in err
    assert f"resume with `willo-connector resume {run_id}`" in err and "Traceback" not in err
    assert json.loads(out)["status"] == "interrupted" and invited() < 60
    done = subprocess.run([*script(), "resume", run_id, "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    emails = [
        p["email"] for p in sandbox.store.table("participants").values() if p["email"].startswith("term")
    ]
    assert sorted(emails) == sorted(people)


# --------------------------------------------------------------------------- 8. CSV


def test_csv_bom_semicolons_and_lines(tmp_path: Path) -> None:
    from connector.cli.common import load_csv
    from connector.errors import InputError

    p = tmp_path / "c.csv"
    p.write_bytes('\ufeffemail;first_name\n\na@example.com;"Ann\nMarie"\nb@example.com;B\n'.encode())
    rows = load_csv(p)
    assert rows == [
        {"email": "a@example.com", "first_name": "Ann\nMarie"},
        {"email": "b@example.com", "first_name": "B"},
    ]
    assert rows.lines == [3, 5]
    p.write_text("email\tname\na@example.com\tA\nb@example.com\tB\textra\n")
    with pytest.raises(InputError, match=r"c\.csv:3: row has 3 cells, the header has 2"):
        load_csv(p)
    p.write_bytes(b"email,name\n\xff\xfe,x\n")
    with pytest.raises(InputError, match="not UTF-8"):
        load_csv(p)


def test_200_rows_with_on_error_continue_report_the_rejected_rows_by_csv_line(
    sandbox, tmp_path: Path
) -> None:
    rows = ["email,first_name,last_name"]
    bad = {}
    for i in range(200):
        email = f"row{i}@example.com"
        if i in (6, 77, 150):
            email = f"row{i}-at-example.com"
            bad[i + 2] = email  # header is line 1
        rows.append(f"{email},First{i},Last{i}")
    csv_path = tmp_path / "people.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    r = invoke(
        "run",
        str(EXAMPLES / "ops" / "invite_candidates.yaml"),
        "-i",
        f"candidates=@{csv_path}",
        WILLO_PROGRESS_INTERVAL="0",
    )
    assert r.exit_code == 0, r.stderr
    rejected = [line.strip() for line in r.stdout.splitlines() if line.strip().startswith("rejected")]
    assert [line.split(": ", 1)[0] for line in rejected] == [f"rejected {csv_path}:{n}" for n in sorted(bad)]
    assert all("is not a valid email" in line for line in rejected)
    assert "3 of 200 items failed" in r.stdout
    assert "invite: " in r.stderr and "/200" in r.stderr  # progress lines (interval 0)
    invited = [p for p in sandbox.store.table("participants").values() if p["email"].startswith("row")]
    assert len(invited) == 197


def test_inputs_schema_errors_name_the_csv_line(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "email,first_name\nok@example.com,A\nnot-an-email,B\n", "c.csv")
    r = invoke("run", str(EXAMPLES / "screening.yaml"), "--dry-run", "-i", f"candidates=@{csv_path}")
    assert r.exit_code == 1
    assert f'{csv_path}:3: /email: "not-an-email" is not a valid email' in r.stderr


# --------------------------------------------------------------------------- 9. progress


def test_progress_lines_on_a_non_terminal_and_an_eta_that_knows_the_rate_budget() -> None:
    now = [0.0]
    pacer = Pacer(10, 100, clock=lambda: now[0], sleep=lambda s: None)
    sent = [0]
    out = io.StringIO()
    bar = Progress(
        "invite", 200, stream=out, clock=lambda: now[0], pacer=pacer, sent=lambda: sent[0], interval=5
    )
    for _ in range(20):  # 20 items, 2 requests each, in 4 s: the first burst of the minute
        now[0] += 0.2
        for _ in range(2):
            pacer.reserve()
            sent[0] += 1
        bar.advance()
    lines = out.getvalue().splitlines()
    assert len(lines) == 0 or all(line.startswith("invite: ") for line in lines)
    now[0] += 1.5
    bar.advance(failed=True)
    line = out.getvalue().splitlines()[-1]
    assert line.startswith("invite: 21/200, 1 failed, ")
    # 179 items left, 2 requests each: 358 requests at 100 a minute, not the first burst's pace
    eta, paced = bar.eta()
    assert paced and 170 < eta < 200  # the minute's 60 left, then 100 a minute (the slack included)
    assert "(rate limit 10/s, 100/min)" in line
    bar.close()
    assert out.getvalue().count("\n") == len(out.getvalue().splitlines())


# --------------------------------------------------------------------------- 10. docs


def test_the_workflow_reference_covers_every_key_and_the_readme_names_the_schema() -> None:
    from connector.catalog.schemas import shipped_schema
    from connector.workflows import expressions
    from tests.conftest import ROOT

    ref = (ROOT / "docs" / "workflows.md").read_text()
    schema = shipped_schema("workflow")
    keys = set(schema["properties"]) | set(schema["$defs"]["step"]["properties"])
    keys |= set(schema["$defs"]["retry"]["properties"]) | set(schema["properties"]["trigger"]["properties"])
    for key in keys:
        assert f"`{key}`" in ref, key
    for name in ("inputs", "trigger", "steps", "item", "index", "secrets"):
        assert f"`{name}`" in ref, name
    for name in expressions.environment().filters:
        assert f"`{name}`" in ref, name
    readme = (ROOT / "README.md").read_text()
    assert "manifests/schemas/workflow.schema.json" in readme and "docs/workflows.md" in readme


def test_the_chat_receiver_stands_in_for_a_webhook(receiver: Receiver) -> None:
    assert requests.post(receiver.url + "/x", json={"a": 1}).json() == {"ok": True}
