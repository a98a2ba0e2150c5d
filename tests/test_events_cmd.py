"""Operations, issue 15 item 3: `events list|show|retry|drop`, on events parked by real
workflow runs, with the reason each failed; retry and drop respect leases."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.sandbox.seed import stable
from connector.state.leases import Leases
from connector.state.store import StateStore
from connector.triggers.dispatch import Dispatcher, workflow_handler
from connector.triggers.receiver import Inbox
from connector.workflows.model import load
from tests.conftest import ON_SCORE_WF, script, script_env

ADA = stable("participant:ada@example.com")


def deliver(store: StateStore, eid: str, participant: str) -> int:
    body = json.dumps(
        {
            "id": eid,
            "event": "new_score",
            "data": {"participant": {"key": participant}, "interview": {"key": "i"}},
        }
    ).encode()
    assert Inbox(store).accept({}, body).status == 202
    return int(store.query("SELECT MAX(id) FROM events")[0][0])


@pytest.fixture
def parked(conn, tmp_path: Path) -> dict[str, Any]:
    """One event done, two parked by a 404 (a participant Willo does not know), one queued."""
    (tmp_path / "wf.yaml").write_text(ON_SCORE_WF)
    store = StateStore(tmp_path / "state")
    wf = load(tmp_path / "wf.yaml", conn.catalog)
    dispatcher = Dispatcher(conn, store, "webhook", workflow_handler(conn, store, [wf]))
    ok = deliver(store, "evt_ok", ADA)
    bad = [deliver(store, f"evt_bad_{i}", "0" * 32) for i in range(2)]
    assert dispatcher.drain() == 3
    waiting = deliver(store, "evt_waiting", ADA)
    return {"store": store, "ok": ok, "bad": bad, "queued": waiting, "dispatcher": dispatcher}


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_list_shows_the_operators_statuses_and_why_each_parked_event_failed(parked) -> None:
    listed = json.loads(cli("events", "list", "--json").stdout)
    assert [(e["id"], e["status"]) for e in listed] == [
        (parked["queued"], "queued"),
        (parked["bad"][1], "parked"),
        (parked["bad"][0], "parked"),
        (parked["ok"], "done"),
    ]
    only = json.loads(cli("events", "list", "--status", "parked", "--json").stdout)
    assert [e["id"] for e in only] == parked["bad"][::-1]
    assert all("404" in e["reason"] or "not found" in e["reason"].lower() for e in only)
    assert all(e["run_id"] for e in only)
    text = cli("events", "list", "--status", "parked").stdout
    assert "parked" in text and "willo.new_score" in text and "run " in text
    assert (
        cli("events", "list", "--status", "done", "--trigger", "willo.new_comment").stdout
        == "no events done\n"
    )
    assert cli("events", "list", "--status", "lost").exit_code == 2


def test_show_says_why_it_was_parked_and_what_to_do(parked) -> None:
    eid = parked["bad"][0]
    info = json.loads(cli("events", "show", str(eid), "--json").stdout)
    assert info["status"] == "parked" and info["failure"] == "permanent"
    assert info["why_parked"].startswith("cannot succeed as it is")
    assert info["next"] == f"fix the cause, then `willo-connector events retry {eid}`, or drop it"
    assert info["run"]["status"] == "parked" and info["run"]["workflow"] == "on-score"
    assert info["payload"]["id"] == "evt_bad_0"
    text = cli("events", "show", str(eid)).stdout
    assert "why_parked: cannot succeed" in text and '"id": "evt_bad_0"' in text
    missing = cli("events", "show", "999999")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: no event 999999")


def test_retry_queues_a_parked_event_which_resumes_its_run(parked, sandbox) -> None:
    store, eid = parked["store"], parked["bad"][0]
    run_id = store.query("SELECT run_id FROM events WHERE id = ?", (eid,))[0][0]
    r = cli("events", "retry", str(eid))
    assert r.exit_code == 0 and r.stdout == f"event {eid}: parked -> queued\n"
    row = store.query("SELECT * FROM events WHERE id = ?", (eid,))[0]
    assert (row["status"], row["attempts"], row["failing_since"], row["next_at"]) == ("queued", 0, None, 0)
    parked["dispatcher"].drain()  # still a 404: parked again, its same run resumed
    row = store.query("SELECT * FROM events WHERE id = ?", (eid,))[0]
    assert (row["status"], row["run_id"]) == ("parked", run_id)
    assert store.query("SELECT attempts FROM runs WHERE id = ?", (run_id,))[0][0] == 2
    done = cli("events", "retry", str(parked["ok"]))
    assert done.exit_code == 1 and f"event {parked['ok']} is done; nothing to retry" in done.stderr


def test_retry_all_parked(parked) -> None:
    r = cli("events", "retry", "--parked", "--json")
    assert r.exit_code == 0
    out = json.loads(r.stdout)
    assert [d["id"] for d in out["queued"]] == parked["bad"] and out["refused"] == {}
    assert cli("events", "retry", "--parked").stdout == "no parked events\n"
    assert cli("events", "retry").exit_code == 2  # ids or --parked
    assert cli("events", "retry", "1", "--parked").exit_code == 2


def test_retry_and_drop_leave_what_a_live_process_holds_alone(parked) -> None:
    store = parked["store"]
    other = Leases(store, owner="other-host:4242:abcd")
    eid, run_id = parked["bad"][0], None
    run_id = store.query("SELECT run_id FROM events WHERE id = ?", (eid,))[0][0]
    assert other.acquire(f"run:{run_id}")  # an operator's `resume` of the run, live elsewhere
    held = parked["bad"][1]
    with store.tx() as db:  # a live dispatcher elsewhere has claimed this one
        db.execute("UPDATE events SET status = 'dispatching' WHERE id = ?", (held,))
        assert other.acquire(f"event:{held}", db=db)
    try:
        r = cli("events", "retry", str(eid), str(held))
        assert r.exit_code == 1
        assert f"event {eid}'s run {run_id} is held by other-host:4242:abcd" in r.stderr
        assert f"event {held} is being dispatched by other-host:4242:abcd" in r.stderr
        assert cli("events", "drop", str(held)).exit_code == 1
        summary = json.loads(cli("events", "retry", "--parked", "--json").stdout)
        assert summary["queued"] == [] and list(summary["refused"]) == [str(eid)]
        statuses = {r["id"]: r["status"] for r in store.query("SELECT id, status FROM events")}
        assert (statuses[eid], statuses[held]) == ("parked", "dispatching")  # untouched
        assert json.loads(cli("events", "list", "--status", "running", "--json").stdout)[0]["id"] == held
    finally:
        other.release_all()
        other.close()
    # its dispatcher died (no live lease): retry takes it back
    assert cli("events", "retry", str(held)).stdout == f"event {held}: running -> queued\n"


def test_drop_sets_events_aside_and_a_redelivery_stays_a_duplicate(parked) -> None:
    store, eid = parked["store"], parked["bad"][0]
    run_id = store.query("SELECT run_id FROM events WHERE id = ?", (eid,))[0][0]
    r = cli("events", "drop", str(eid), str(parked["queued"]), "--reason", "participant deleted")
    assert r.exit_code == 0, r.output
    assert r.stdout == f"event {eid}: parked -> dropped\nevent {parked['queued']}: queued -> dropped\n"
    row = store.query("SELECT * FROM events WHERE id = ?", (eid,))[0]
    assert row["status"] == "dropped" and row["error"].endswith("dropped by an operator: participant deleted")
    run = store.run(run_id)
    assert run["status"] == "failed" and "was dropped by an operator" in run["error"]
    body = json.dumps({"id": "evt_bad_0", "event": "new_score", "data": {"participant": {}, "interview": {}}})
    assert Inbox(store).accept({}, body.encode()).status == 200  # still known: a duplicate
    assert parked["dispatcher"].drain() == 0  # nothing of it runs
    assert cli("events", "drop", str(parked["ok"])).exit_code == 1  # done: nothing to drop
    assert cli("events", "retry", str(eid)).exit_code == 1  # dropped: nothing to retry
    assert (
        json.loads(cli("events", "list", "--status", "dropped", "--json").stdout)[0]["id"] == parked["queued"]
    )
    bad_id = cli("events", "drop", "12x")
    assert bad_id.exit_code == 1 and "'12x' is not an event id" in bad_id.stderr


@pytest.mark.subprocess
def test_events_as_the_installed_script(parked, tmp_path: Path) -> None:
    env = script_env(WILLO_STATE_DIR=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = subprocess.run(
        [*script(), "events", "list", "--status", "parked"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("parked") == 2
    out = subprocess.run(
        [*script(), "events", "retry", "--parked"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.count("parked -> queued") == 2
