"""Nothing resent, nothing done twice: ambiguous failures, 2xx-then-failure, operators
settling a blocked unit, and one live owner per run (issue 9 items 1 and 4, issue 18
item 2)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.engines.local import LocalExecutor
from connector.errors import ConnectorError
from connector.sandbox.seed import stable
from connector.state.store import StateStore
from connector.triggers.dispatch import Dispatcher, workflow_handler
from connector.triggers.receiver import Inbox
from connector.workflows.model import load
from connector.workflows.runner import Runner
from connector.workflows.runtime import Connector

BACKEND = stable("interview:Backend Engineer")


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def named(sandbox, table: str, field: str, value: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.store.table(table).values() if r.get(field) == value]


def fault_on(sandbox, monkeypatch, method: str, path_end: str, fault: str, times: int = 1) -> None:
    """Inject ``fault`` into the next ``times`` requests of ``method`` to a path ending
    in ``path_end``, and into no other request (whatever else reaches the sandbox)."""
    real_dispatch, real_next = sandbox.app.dispatch, sandbox.app.faults.next
    here = threading.local()
    left = [times]

    def dispatch(request):
        here.target = left[0] > 0 and request.method == method and request.path.rstrip("/").endswith(path_end)
        if here.target:
            left[0] -= 1
        try:
            return real_dispatch(request)
        finally:
            here.target = False

    monkeypatch.setattr(sandbox.app, "dispatch", dispatch)
    monkeypatch.setattr(
        sandbox.app.faults, "next", lambda: fault if getattr(here, "target", False) else real_next()
    )


def units(run_id: str) -> dict[tuple[str, int], Any]:
    return StateStore().units(run_id)


ONE_DEPT = """\
workflow: 1
name: one-dept
steps:
  - id: dept
    use: willo.create_department
    with: {name: Ops}
"""

#: one try only: the step's retry would settle an ambiguous try within the run (see
#: tests/test_flows.py); these tests are about what comes after a run stopped on one
ONE_DEPT_ONE_TRY = ONE_DEPT + "    retry: {attempts: 1}\n"

INTERVIEW_THEN_GET = """\
workflow: 1
name: interview
steps:
  - id: make
    use: willo.create_interview
    with: {title: Ambiguous Role}
  - id: check
    use: willo.get_interview
    with: {interview: "{{ steps.make.output.key }}"}
"""


# ---------------------------------------------------------------------- 9.1: resume


def test_an_ambiguous_create_is_reconciled_on_resume_not_resent(sandbox, tmp_path: Path, monkeypatch) -> None:
    wf = write(tmp_path, ONE_DEPT_ONE_TRY)
    fault_on(sandbox, monkeypatch, "POST", "/departments", "drop_after")
    first = invoke("run", str(wf), "--json")
    assert first.exit_code == 1
    run_id = json.loads(first.stdout)["run_id"]
    assert len(named(sandbox, "departments", "name", "Ops")) == 1  # it landed
    unit = units(run_id)[("dept", -1)]
    assert unit["status"] == "ambiguous", dict(unit)
    again = invoke("resume", run_id, "--json")
    assert again.exit_code == 0, again.output
    out = json.loads(again.stdout)
    landed = named(sandbox, "departments", "name", "Ops")
    assert len(landed) == 1, "resume resent an ambiguous create"
    assert out["steps"][0]["output"]["key"] == landed[0]["key"]


def test_without_a_reconcile_lookup_an_ambiguous_unit_stays_blocked_until_settled(
    sandbox, tmp_path: Path, monkeypatch
) -> None:
    wf = write(tmp_path, INTERVIEW_THEN_GET)
    fault_on(sandbox, monkeypatch, "POST", "/interviews", "drop_after")
    run_id = json.loads(invoke("run", str(wf), "--json").stdout)["run_id"]
    made = named(sandbox, "interviews", "title", "Ambiguous Role")
    assert len(made) == 1
    # blocked from the first run on (no resume needed to find out nothing can settle it)
    assert json.loads(invoke("runs", "--json").stdout)[0]["status"] == "blocked"
    for _ in range(2):  # resume, and resume again: never a blind resend
        blocked = invoke("resume", run_id)
        assert blocked.exit_code == 1
        assert "runs resolve" in blocked.stderr and "Traceback" not in blocked.output
        assert "step make" in blocked.stderr and "step make: step make" not in blocked.stderr
        assert len(named(sandbox, "interviews", "title", "Ambiguous Role")) == 1
    listed = json.loads(invoke("runs", "--json").stdout)
    assert listed[0]["status"] == "blocked"
    # --sent needs an output: no reconcile lookup, nothing stored
    bare = invoke("runs", "resolve", run_id, "--step", "make", "--sent")
    assert bare.exit_code == 1 and "--output-json" in bare.stderr
    wrong = invoke("runs", "resolve", run_id, "--step", "make", "--sent", "--output-json", '{"key": 5}')
    assert wrong.exit_code == 1 and "/key" in wrong.stderr
    not_json = invoke("runs", "resolve", run_id, "--step", "make", "--sent", "--output-json", "{")
    assert not_json.exit_code == 1 and "--output-json" in not_json.stderr
    real = sandbox.app.interview_out(made[0])
    settled = invoke(
        "runs", "resolve", run_id[:18], "--step", "make", "--sent", "--output-json", json.dumps(real)
    )
    assert settled.exit_code == 0, settled.output
    done = invoke("resume", run_id, "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["steps"][1]["output"]["key"] == made[0]["key"]
    assert "retries" not in result["steps"][0]  # settled by hand: no try, so no retry (was -1)
    assert len(named(sandbox, "interviews", "title", "Ambiguous Role")) == 1


def test_not_sent_lets_resume_send_it_again(sandbox, tmp_path: Path, monkeypatch) -> None:
    wf = write(tmp_path, INTERVIEW_THEN_GET)
    fault_on(sandbox, monkeypatch, "POST", "/interviews", "drop_after")
    run_id = json.loads(invoke("run", str(wf), "--json").stdout)["run_id"]
    for key in [r["key"] for r in named(sandbox, "interviews", "title", "Ambiguous Role")]:
        del sandbox.store.table("interviews")[key]  # the operator checked: it is not in Willo
    unknown = invoke("runs", "resolve", run_id, "--step", "nope", "--not-sent")
    assert unknown.exit_code == 1 and "nope" in unknown.stderr
    settled = invoke("runs", "resolve", run_id, "--step", "make", "--not-sent")
    assert settled.exit_code == 0, settled.output
    again = invoke("runs", "resolve", run_id, "--step", "make", "--not-sent")
    assert again.exit_code == 1 and "nothing to settle" in again.stderr
    done = invoke("resume", run_id)
    assert done.exit_code == 0, done.output
    assert len(named(sandbox, "interviews", "title", "Ambiguous Role")) == 1


def test_sent_uses_the_reconcile_lookup_when_there_is_one(sandbox, tmp_path: Path) -> None:
    """A unit left `sending` (process killed mid-request) with a reconcile lookup is
    settled as sent from what the lookup finds."""
    wf_path = write(tmp_path, ONE_DEPT)
    store = StateStore()
    conn = Connector()
    wf = load(wf_path, conn.catalog)
    run_id = store.new_run(wf.path, wf.name, wf.text, {}, None, {})
    store.mark_unit(run_id, "dept", -1, "willo.create_department", "sending", inputs={"name": "Ops"})
    made = conn.call("willo.create_department", {"name": "Ops"}).output
    settled = invoke("runs", "resolve", run_id, "--step", "dept", "--sent")
    assert settled.exit_code == 0, settled.output
    unit = units(run_id)[("dept", -1)]
    assert unit["status"] == "succeeded" and json.loads(unit["output"])["key"] == made["key"]


# ---------------------------------------------------------------------- 9.1: the event retry


def test_the_dispatchers_retry_reconciles_instead_of_resending(
    conn, sandbox, tmp_path: Path, monkeypatch
) -> None:
    wf = load(
        write(
            tmp_path,
            """\
workflow: 1
name: dept-per-score
trigger: {use: willo.new_score}
steps:
  - id: dept
    use: willo.create_department
    with: {name: "Team {{ trigger.data.participant.key }}"}
    retry: {attempts: 1}
""",
        ),
        conn.catalog,
    )
    store = StateStore()
    body = json.dumps(
        {
            "id": "evt_ambiguous",
            "event": "new_score",
            "data": {"participant": {"key": "p1"}, "interview": {"key": BACKEND, "title": "t"}},
        }
    ).encode()
    assert Inbox(store).accept({}, body).status == 202
    dispatcher = Dispatcher(conn, store, "webhook", workflow_handler(conn, store, [wf]), backoff=0.01)
    fault_on(sandbox, monkeypatch, "POST", "/departments", "drop_after")
    assert dispatcher.one() == 1
    assert store.query("SELECT status FROM events")[0]["status"] == "queued"  # to be retried
    time.sleep(0.05)
    assert dispatcher.one() == 1
    assert store.query("SELECT status FROM events")[0]["status"] == "dispatched"
    assert len(named(sandbox, "departments", "name", "Team p1")) == 1


# ---------------------------------------------------------------------- 9.1: find_or_invite


def test_find_or_invite_looks_up_after_an_ambiguous_invite(conn, sandbox, monkeypatch) -> None:
    fault_on(sandbox, monkeypatch, "POST", "/participants", "drop_after")
    out = conn.call("willo.find_or_invite_participant", {"interview": BACKEND, "email": "amb@example.com"})
    assert out.output["created"] is True
    assert len(named(sandbox, "participants", "email", "amb@example.com")) == 1


def test_find_or_invite_never_resends_when_the_lookup_fails_after_an_ambiguous_invite(
    conn, sandbox, monkeypatch
) -> None:
    from connector.errors import WilloError

    posted = []
    real = sandbox.app.dispatch

    def dispatch(request):  # the invite is dropped after it lands; every later lookup fails
        if request.path.rstrip("/").endswith("/participants"):
            if request.method == "POST":
                posted.append(request)
                sandbox.app.faults.planned.append("drop_after")
            elif posted:
                sandbox.app.faults.planned.append("error_before")
        return real(request)

    monkeypatch.setattr(sandbox.app, "dispatch", dispatch)
    with pytest.raises(WilloError):
        conn.call("willo.find_or_invite_participant", {"interview": BACKEND, "email": "amb2@example.com"})
    assert len(posted) == 1
    assert len(named(sandbox, "participants", "email", "amb2@example.com")) == 1


# ---------------------------------------------------------------------- 9.1: every create


CREATES = [
    ("willo.create_department", {"name": "Reconciled Dept"}, "departments", "name"),
    (
        "willo.create_message_template",
        {"name": "Reconciled", "type": "invite", "channel": "email", "subject": "Hi", "body": "Hello"},
        "message_templates",
        "name",
    ),
    (
        "willo.create_webhook",
        {"url": "https://hooks.example.com/reconciled", "events": ["new_score"]},
        "webhooks",
        "url",
    ),
    ("willo.invite_user", {"email": "reconciled@example.com", "role": "standard"}, "users", "email"),
    ("willo.invite_participant", {"interview": BACKEND, "email": "rec@example.com"}, "participants", "email"),
]


@pytest.mark.parametrize("action,inputs,table,field", CREATES, ids=[c[0] for c in CREATES])
def test_every_create_with_a_natural_key_reconciles(
    conn, sandbox, tmp_path: Path, monkeypatch, action, inputs, table, field
) -> None:
    manifest = conn.catalog.get(action, "action")
    assert manifest.data.get("reconcile"), f"{action} has no reconcile lookup"
    wf = load(
        write(
            tmp_path,
            "workflow: 1\nname: one\nsteps:\n  - id: make\n    use: "
            + action
            + "\n    with: "
            + json.dumps(inputs)
            + "\n    retry: {attempts: 1}\n",
        ),
        conn.catalog,
    )
    store = StateStore()
    path = conn.catalog.get(action, "action").request["path"].rstrip("/")
    fault_on(sandbox, monkeypatch, "POST", path, "drop_after")
    first = Runner(conn, wf, store=store, executor=LocalExecutor()).start({})
    assert first.status == "failed"
    second = Runner(conn, wf, store=store, executor=LocalExecutor()).resume(first.run_id, {}, None)
    assert second.status == "succeeded", second.error
    assert len(named(sandbox, table, field, inputs[field])) == 1


# ---------------------------------------------------------------------- 18.2: sent, then failed


def test_a_unit_that_got_a_2xx_is_never_resent(sandbox, tmp_path: Path, monkeypatch) -> None:
    real_out = sandbox.app.interview_out
    monkeypatch.setattr(sandbox.app, "interview_out", lambda itv: {**real_out(itv), "surprise": 1})
    wf = write(tmp_path, INTERVIEW_THEN_GET)
    monkeypatch.setenv("WILLO_SCHEMA_MODE", "strict")
    first = invoke("run", str(wf), "--json")
    assert first.exit_code == 1 and "surprise" in first.output
    run_id = json.loads(first.stdout)["run_id"]
    assert units(run_id)[("make", -1)]["status"] == "sent"
    blocked = invoke("resume", run_id)
    assert blocked.exit_code == 1 and "runs resolve" in blocked.stderr
    assert len(named(sandbox, "interviews", "title", "Ambiguous Role")) == 1
    monkeypatch.setattr(sandbox.app, "interview_out", real_out)
    monkeypatch.setenv("WILLO_SCHEMA_MODE", "warn")  # the operator relaxes the check
    done = invoke("resume", run_id, "--json")
    assert done.exit_code == 0, done.output
    assert len(named(sandbox, "interviews", "title", "Ambiguous Role")) == 1


def test_sent_settles_with_the_stored_2xx_body(sandbox, tmp_path: Path, monkeypatch) -> None:
    real_out = sandbox.app.interview_out
    monkeypatch.setattr(sandbox.app, "interview_out", lambda itv: {**real_out(itv), "surprise": 1})
    monkeypatch.setenv("WILLO_SCHEMA_MODE", "strict")
    run_id = json.loads(invoke("run", str(write(tmp_path, INTERVIEW_THEN_GET)), "--json").stdout)["run_id"]
    monkeypatch.setattr(sandbox.app, "interview_out", real_out)
    settled = invoke("runs", "resolve", run_id, "--step", "make", "--sent")
    assert settled.exit_code == 0, settled.output
    done = invoke("resume", run_id)
    assert done.exit_code == 0, done.output
    assert len(named(sandbox, "interviews", "title", "Ambiguous Role")) == 1


# ---------------------------------------------------------------------- 9.4: one live owner per run


MANY_DEPTS = """\
workflow: 1
name: many-depts
inputs: {type: object, properties: {names: {type: array}}}
steps:
  - id: depts
    use: willo.create_department
    foreach: "{{ inputs.names }}"
    with: {name: "{{ item }}"}
"""


def test_concurrent_resumes_of_one_run_do_the_work_once(sandbox, tmp_path: Path, monkeypatch) -> None:
    names = [f"Concurrent {i:02d}" for i in range(12)]
    settings_conn = Connector()
    wf = load(write(tmp_path, MANY_DEPTS), settings_conn.catalog)
    # the first run stops at item 3 (no name: an input error), leaving 9 items to do
    inputs = {"names": [*names[:3], "", *names[3:]]}
    first = Runner(settings_conn, wf, store=StateStore(), executor=LocalExecutor()).start(inputs)
    assert first.status == "failed"
    store = StateStore()
    store.mark_unit(first.run_id, "depts", 3, "willo.create_department", "succeeded", output={})
    monkeypatch.setattr(sandbox.app.faults, "latency_ms", 15)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def resume() -> None:
        runner = Runner(Connector(), wf, store=StateStore(), executor=LocalExecutor())
        barrier.wait()
        try:
            outcomes.append(runner.resume(first.run_id, inputs, None).status)
        except ConnectorError as exc:
            outcomes.append(f"refused: {exc}")

    threads = [threading.Thread(target=resume) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in names:
        assert len(named(sandbox, "departments", "name", name)) == 1, (name, outcomes)
    assert outcomes.count("succeeded") == 1, outcomes
    assert all("another process" in o for o in outcomes if o != "succeeded"), outcomes


def test_a_run_killed_as_pid_1_is_resumable_once_its_lease_expires(sandbox, tmp_path: Path) -> None:
    """A container's PID 1 is always "alive" here: liveness is a lease, not a pid."""
    wf_path = write(tmp_path, ONE_DEPT)
    store = StateStore()
    wf = load(wf_path, Connector().catalog)
    run_id = store.new_run(wf.path, wf.name, wf.text, {}, None, {"pid": 1})
    listed = json.loads(invoke("runs", "--json").stdout)
    assert listed[0]["status"] == "interrupted"
    done = invoke("resume", run_id)
    assert done.exit_code == 0, done.output
    assert len(named(sandbox, "departments", "name", "Ops")) == 1


def test_resume_refuses_a_run_another_live_process_holds(sandbox, tmp_path: Path, monkeypatch) -> None:
    from connector.state.leases import Leases

    wf_path = write(tmp_path, ONE_DEPT)
    store = StateStore()
    wf = load(wf_path, Connector().catalog)
    run_id = store.new_run(wf.path, wf.name, wf.text, {}, None, {})
    other = Leases(StateStore(), owner="other-host:7:abc", ttl=60)
    assert other.acquire(f"run:{run_id}")
    listed = json.loads(invoke("runs", "--json").stdout)
    assert listed[0]["status"] == "running"
    refused = invoke("resume", run_id)
    assert refused.exit_code == 1 and "other-host:7:abc" in refused.stderr
    assert named(sandbox, "departments", "name", "Ops") == []
    other.release(f"run:{run_id}")
    assert invoke("resume", run_id).exit_code == 0


def test_a_blocked_event_run_is_parked_then_settled_and_finished_by_the_dispatcher(
    conn, sandbox, tmp_path: Path, monkeypatch
) -> None:
    wf = load(
        write(
            tmp_path,
            """\
workflow: 1
name: interview-per-score
trigger: {use: willo.new_score}
steps:
  - id: make
    use: willo.create_interview
    with: {title: "Follow-up {{ trigger.data.participant.key }}"}
""",
        ),
        conn.catalog,
    )
    store = StateStore()
    body = json.dumps(
        {"id": "evt_blocked", "event": "new_score", "data": {"participant": {"key": "p9"}}}
    ).encode()
    assert Inbox(store).accept({}, body).status == 202
    dispatcher = Dispatcher(conn, store, "webhook", workflow_handler(conn, store, [wf]), backoff=0.01)
    fault_on(sandbox, monkeypatch, "POST", "/interviews", "drop_after")
    assert dispatcher.one() == 1  # ambiguous, no lookup: blocked, parked for an operator at once
    event = store.query("SELECT * FROM events")[0]
    assert (event["status"], event["failure"]) == ("parked", "blocked")
    assert "runs resolve" in event["error"]
    assert len(named(sandbox, "interviews", "title", "Follow-up p9")) == 1
    (made,) = named(sandbox, "interviews", "title", "Follow-up p9")
    out = invoke(
        "runs",
        "resolve",
        event["run_id"],
        "--step",
        "make",
        "--sent",
        "--output-json",
        json.dumps(sandbox.app.interview_out(made)),
    )
    assert out.exit_code == 0 and "requeued" in out.stdout, out.output
    assert dispatcher.one() == 1
    event = store.query("SELECT * FROM events")[0]
    assert event["status"] == "dispatched"
    assert StateStore().run(event["run_id"])["status"] == "succeeded"
    assert len(named(sandbox, "interviews", "title", "Follow-up p9")) == 1


# ---------------------------------------------------------------------- one settling code: retries, reruns, leases


def no_wait(seconds: float) -> bool:
    return False  # a runner's wait between tries: none, and never stopped


def test_a_lookup_that_fails_after_an_ambiguous_try_never_lets_the_next_try_resend(
    conn, sandbox, tmp_path: Path, monkeypatch
) -> None:
    """The try after a drop_after looks the department up; that lookup itself fails
    (Willo unreachable: a failure that surely did not land). The unit may still have
    landed, so the try after that looks up again: it is never sent blindly."""
    from connector.errors import NetworkError

    wf = load(write(tmp_path, ONE_DEPT.replace("{name: Ops}", "{name: Lookup Lost}")), conn.catalog)
    fault_on(sandbox, monkeypatch, "POST", "/departments", "drop_after")
    real_call, lookups = conn.call, []

    def call(action_id: str, inputs: Any) -> Any:
        if action_id == "willo.list_departments":
            lookups.append(inputs)
            if len(lookups) == 1:
                raise NetworkError(
                    "cannot reach Willo: connection refused", method="GET", url="/departments/"
                )
        return real_call(action_id, inputs)

    monkeypatch.setattr(conn, "call", call)
    store = StateStore()
    result = Runner(conn, wf, store=store, executor=LocalExecutor(), wait=no_wait).start({})
    assert result.status == "succeeded", result.error
    assert len(lookups) == 2
    assert len(named(sandbox, "departments", "name", "Lookup Lost")) == 1
    unit = store.units(result.run_id)[("dept", -1)]
    assert (unit["status"], unit["tries"]) == ("succeeded", 3)


def test_a_try_that_got_a_2xx_is_journaled_sent_with_its_body_and_not_tried_again(
    sandbox, tmp_path: Path, monkeypatch
) -> None:
    real_out = sandbox.app.interview_out
    monkeypatch.setattr(sandbox.app, "interview_out", lambda itv: {**real_out(itv), "surprise": 1})
    monkeypatch.setenv("WILLO_SCHEMA_MODE", "strict")
    wf = write(
        tmp_path,
        INTERVIEW_THEN_GET.replace(
            "{title: Ambiguous Role}", "{title: Ambiguous Role}\n    retry: {on: [any]}"
        ),
    )
    first = invoke("run", str(wf), "--json")
    assert first.exit_code == 1
    unit = units(json.loads(first.stdout)["run_id"])[("make", -1)]
    assert (unit["status"], unit["tries"]) == ("sent", 1)
    assert json.loads(unit["output"])["title"] == "Ambiguous Role"  # the 2xx body is kept
    assert len(named(sandbox, "interviews", "title", "Ambiguous Role")) == 1


RERUN_INVITES = f"""\
workflow: 1
name: invites
inputs: {{type: object, properties: {{people: {{type: array}}}}}}
steps:
  - id: invite
    use: willo.invite_participant
    foreach: "{{{{ inputs.people }}}}"
    on_error: continue
    retry: {{attempts: 1}}
    with: {{interview: {BACKEND}, email: "{{{{ item }}}}"}}
"""


def test_rerun_failed_looks_up_an_ambiguous_item_instead_of_resending_it(
    sandbox, tmp_path: Path, monkeypatch
) -> None:
    people = [f"rerun{i}@example.com" for i in range(3)]
    wf = write(tmp_path, RERUN_INVITES)
    fault_on(sandbox, monkeypatch, "POST", "/participants", "error_after")  # a 500 after it landed
    first = json.loads(invoke("run", str(wf), "--json", "-i", f"people={json.dumps(people)}").stdout)
    assert units(first["run_id"])[("invite", 0)]["status"] == "ambiguous"
    posts = []
    real = sandbox.app.dispatch

    def dispatch(request):
        if request.method == "POST":
            posts.append(request.path)
        return real(request)

    monkeypatch.setattr(sandbox.app, "dispatch", dispatch)
    again = invoke("rerun", first["run_id"], "--failed", "--json")
    assert again.exit_code == 0, again.output
    assert posts == []  # item 0 was found by the lookup; items 1 and 2 were reused
    for email in people:
        assert len(named(sandbox, "participants", "email", email)) == 1


def test_rerun_failed_refuses_a_blocked_run(sandbox, tmp_path: Path, monkeypatch) -> None:
    wf = write(tmp_path, INTERVIEW_THEN_GET)
    fault_on(sandbox, monkeypatch, "POST", "/interviews", "drop_after")
    run_id = json.loads(invoke("run", str(wf), "--json").stdout)["run_id"]
    assert invoke("resume", run_id).exit_code == 1  # now blocked
    before = len(json.loads(invoke("runs", "--json").stdout))
    refused = invoke("rerun", run_id, "--failed")
    assert refused.exit_code == 1 and "is blocked" in refused.stderr and "runs resolve" in refused.stderr
    assert len(json.loads(invoke("runs", "--json").stdout)) == before  # no second run on that unit
    assert len(named(sandbox, "interviews", "title", "Ambiguous Role")) == 1


def test_a_run_taken_over_mid_foreach_sends_nothing_more(sandbox, tmp_path: Path, monkeypatch) -> None:
    """Another process took the run (this one stalled past its lease): the next unit's
    journal write is refused before its request goes out, and the run's row is left to
    the new owner."""
    names = [f"Taken {i}" for i in range(6)]
    conn = Connector()
    wf = load(write(tmp_path, MANY_DEPTS), conn.catalog)
    store = StateStore()
    real = sandbox.app.dispatch
    created: list[str] = []

    def dispatch(request):
        response = real(request)
        if request.method == "POST" and request.path.rstrip("/").endswith("/departments"):
            created.append(request.path)
            if len(created) == 2:  # a new owner takes the run over
                with store.tx() as db:
                    db.execute("UPDATE leases SET owner = 'new-owner:1:abc' WHERE resource LIKE 'run:%'")
                    db.execute("UPDATE runs SET status = 'running', error = 'the new owner'")
        return response

    monkeypatch.setattr(sandbox.app, "dispatch", dispatch)
    result = Runner(conn, wf, store=store, executor=LocalExecutor()).start({"names": names})
    assert result.status == "interrupted" and result.kind == "interrupted"
    assert len(created) == 2
    assert [n for n in names if named(sandbox, "departments", "name", n)] == names[:2]
    assert store.run(result.run_id)["error"] == "the new owner"  # not overwritten
    assert "lease" in (result.error or "")
