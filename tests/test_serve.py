"""Schedules (an injected clock: no test sleeps for time to pass) and ``serve DIR``,
in process and as the installed script over the ops examples."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from connector.catalog.index import get_catalog
from connector.errors import ManifestError
from connector.sandbox.seed import stable
from connector.serve import Service, load_folder
from connector.state.store import StateStore
from connector.triggers.schedule import Schedule, Scheduler
from connector.workflows.model import load
from tests.conftest import EXAMPLES, Receiver, script, script_env

ADA = stable("participant:ada@example.com")


class Clock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def at(self, text: str) -> None:
        self.now = datetime.fromisoformat(text)


def queued(store: StateStore) -> list[dict]:
    return [
        json.loads(r["payload"])
        for r in store.query("SELECT payload FROM events WHERE source = 'schedule' ORDER BY id")
    ]


WEEKDAYS = Schedule("morning", "0 8 * * 1-5", "Europe/London")


def test_a_new_schedule_waits_for_its_next_time_then_fires_once_per_time(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    clock = Clock(datetime(2026, 3, 27, 9, 30, tzinfo=UTC))  # a Friday, after 08:00 London
    sched = Scheduler(store, [WEEKDAYS], clock)
    assert sched.start() == [] and queued(store) == []  # first sight: no run for a past time
    assert sched.next_due() == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # Monday 08:00 BST
    clock.at("2026-03-30T06:59:59+00:00")
    assert sched.tick() == []
    clock.at("2026-03-30T07:00:00+00:00")
    fired = sched.tick()
    assert [e["scheduled_at"] for e in fired] == ["2026-03-30T08:00:00+01:00"] and not fired[0]["missed"]
    clock.at("2026-03-30T07:00:30+00:00")
    assert sched.tick() == []  # once per time
    assert store.query("SELECT last_slot FROM schedules")[0]["last_slot"] == "2026-03-30T07:00:00+00:00"


def test_times_missed_while_down_run_once_at_start_unless_catch_up_is_off(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    clock = Clock(datetime(2026, 3, 23, 7, 30, tzinfo=UTC))  # Monday 07:30 UTC = 07:30 GMT
    Scheduler(store, [WEEKDAYS], clock).start()
    clock.at("2026-03-27T12:00:00+00:00")  # down Monday to Friday noon: five mornings missed
    fired = Scheduler(store, [WEEKDAYS], clock).start()
    assert [(e["scheduled_at"], e["missed"]) for e in fired] == [("2026-03-27T08:00:00+00:00", True)]
    assert Scheduler(store, [WEEKDAYS], clock).start() == []  # a second start: nothing more
    lazy = Schedule("morning", "0 8 * * 1-5", "Europe/London", catch_up=False)
    clock.at("2026-03-31T12:00:00+00:00")
    assert Scheduler(store, [lazy], clock).start() == []
    clock.at("2026-04-01T07:00:00+00:00")
    assert len(Scheduler(store, [lazy], clock).tick()) == 1  # the next time runs as usual


def test_two_processes_never_run_one_time_twice(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 3, 30, 6, 0, tzinfo=UTC))
    a, b = (Scheduler(StateStore(tmp_path), [WEEKDAYS], clock) for _ in range(2))
    a.start()
    b.start()
    clock.at("2026-03-30T07:00:01+00:00")
    assert len(a.tick()) + len(b.tick()) == 1
    assert len(queued(StateStore(tmp_path))) == 1


def test_daylight_saving_is_followed() -> None:
    nightly = Schedule("nightly", "30 1 * * *", "Europe/London")
    # 01:30 does not exist on 29 March 2026 in London: cron runs at the first valid minute
    after = nightly.next_after(datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert after.isoformat() == "2026-03-29T02:00:00+01:00"
    assert nightly.next_after(after).isoformat() == "2026-03-30T01:30:00+01:00"
    assert Schedule("x", "@daily", "Asia/Tokyo").latest(datetime(2026, 1, 1, 16, tzinfo=UTC)).isoformat() == (
        "2026-01-02T00:00:00+09:00"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            '{cron: "0 8 * * 8"}',
            "/trigger/with/cron: \"0 8 * * 8\" is not a valid cron: day-of-week field '8' is not valid (0-7 or SUN-SAT)",
        ),
        (
            '{cron: "61 * * * *"}',
            "/trigger/with/cron: \"61 * * * *\" is not a valid cron: minute field '61' is not valid (0-59)",
        ),
        ('{cron: "0 8 * *"}', "is not a valid cron: 4 fields; a cron has 5"),
        (
            '{cron: "0 8 * * *", timezone: Europe/Lodnon}',
            "/trigger/with/timezone: \"Europe/Lodnon\" is not a valid timezone: unknown time zone 'Europe/Lodnon'",
        ),
        ("{timezone: UTC}", "/trigger/with: 'cron' is a required property"),
        ('{cron: "@daily"}\n  interval: 60', "/trigger/interval: only a polling trigger takes an interval"),
    ],
)
def test_bad_schedules_are_static_errors_with_line_and_pointer(
    tmp_path: Path, options: str, message: str
) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"workflow: 1\nname: sched\ntrigger:\n  use: schedule\n  with: {options}\nsteps:\n  - {{id: a, use: willo.list_languages}}\n"
    )
    with pytest.raises(ManifestError) as err:
        load(path, get_catalog())
    assert any(p.startswith(f"{path}:") and message in p for p in err.value.problems), err.value.problems


# --------------------------------------------------------------------------- serve in process


def folder(tmp_path: Path, **files: str) -> Path:
    d = tmp_path / "flows"
    d.mkdir()
    for name, text in files.items():
        (d / f"{name}.yaml").write_text(text)
    return d


SCHEDULED = """\
workflow: 1
name: morning
trigger: {use: schedule, with: {cron: "0 8 * * *", timezone: UTC}}
steps:
  - id: completed
    use: willo.list_participants
    with: {stage: Completed, all: true}
  - id: review
    use: willo.move_participant_stage
    foreach: "{{ steps.completed.output.results }}"
    with: {participant: "{{ item.key }}", stage: Reviewed}
"""
POLLED = """\
workflow: 1
name: greet
trigger: {use: willo.new_participant, interval: 30}
steps:
  - id: look
    use: willo.get_participant
    with: {participant: "{{ trigger.key }}"}
"""


def test_serve_ticks_schedules_and_polls_on_an_injected_clock(conn, sandbox, tmp_path: Path) -> None:
    d = folder(
        tmp_path,
        morning=SCHEDULED,
        greet=POLLED,
        manual="workflow: 1\nname: manual\nsteps:\n  - {id: a, use: willo.list_languages}\n",
    )
    workflows, notes = load_folder(d, conn)
    assert sorted(wf.name for wf in workflows) == ["greet", "morning"]
    assert len(notes) == 1 and "manual.yaml: no trigger; not served" in notes[0]
    store = StateStore(tmp_path / "state")
    wall = Clock(datetime(2026, 5, 4, 7, 0, tzinfo=UTC))
    mono = [1000.0]
    service = Service(conn, store, workflows, clock=lambda: mono[0], now=wall)
    service.start()
    requests.post(
        f"{sandbox.base_url}/_sandbox/participants/{ADA}/respond", headers={"Authorization": sandbox.api_key}
    )
    assert service.tick() <= 30  # first poll records what exists; next in 30 s
    assert store.query("SELECT COUNT(*) AS n FROM runs")[0]["n"] == 0
    wall.at("2026-05-04T08:00:05+00:00")
    mono[0] += 10  # not yet time to poll again
    service.tick()
    runs = store.query("SELECT name, status FROM runs")
    assert [(r["name"], r["status"]) for r in runs] == [("morning", "succeeded")]
    assert sandbox.store.table("participants")[ADA]["stage"] == "Reviewed"
    conn.call(
        "willo.invite_participant",
        {"interview": stable("interview:Backend Engineer"), "email": "new@example.com"},
    )
    mono[0] += 25  # the poll is due
    wait = service.tick()
    names = [r["name"] for r in store.query("SELECT name FROM runs ORDER BY started_at")]
    assert names == ["morning", "greet"] and 0 < wait <= 30
    service.shutdown()


HOOKED = """\
workflow: 1
name: invite-on-score
trigger: {use: willo.new_score}
steps:
  - id: invite
    use: willo.invite_participant
    foreach: "{{ ['s0@example.com', 's1@example.com', 's2@example.com', 's3@example.com', 's4@example.com'] }}"
    with: {interview: INTERVIEW, email: "{{ trigger.data.participant.key }}.{{ item }}"}
""".replace("INTERVIEW", stable("interview:Backend Engineer"))


def delivered(store: StateStore, participant: str = "p1") -> None:
    from connector.triggers.receiver import Inbox

    body = {"id": f"evt-{participant}", "event": "new_score", "data": {"participant": {"key": participant}}}
    assert Inbox(store).accept({}, json.dumps(body).encode()).status == 202


def test_serve_stopped_mid_run_requeues_the_event_and_the_next_start_resumes_the_run(
    conn, sandbox, tmp_path: Path, monkeypatch
) -> None:
    from connector.serve import Receiver as Hooks

    workflows, _ = load_folder(folder(tmp_path, hooked=HOOKED), conn)
    state = tmp_path / "state"
    service = Service(conn, StateStore(state), workflows, receiver=Hooks(port=0, subscribe=False))
    real, posts = sandbox.app.dispatch, []

    def dispatch(request):
        if request.method == "POST" and request.path.rstrip("/").endswith("/participants"):
            posts.append(request.path)
            if len(posts) == 2:
                service.stop()  # SIGTERM while the second invite is in flight
        return real(request)

    monkeypatch.setattr(sandbox.app, "dispatch", dispatch)
    service.start()
    try:
        delivered(service.store, "p1")
        delivered(service.store, "p2")  # claimed in the same batch, not started
        service.tick()
    finally:
        service.shutdown()
    store = StateStore(state)
    (run,) = store.query("SELECT id, status FROM runs")
    assert run["status"] == "interrupted" and len(posts) == 2  # the unit in flight finished; no more
    events = store.query("SELECT status, attempts, failure FROM events ORDER BY id")
    assert [(e["status"], e["attempts"], e["failure"]) for e in events] == [("queued", 0, None)] * 2
    assert store.query("SELECT * FROM leases") == []
    again = Service(conn, store, workflows, receiver=Hooks(port=0, subscribe=False))
    again.start()
    try:
        again.tick()
    finally:
        again.shutdown()
    runs = store.query("SELECT id, status FROM runs ORDER BY started_at")
    assert (runs[0]["id"], runs[0]["status"]) == (run["id"], "succeeded")  # resumed, not redone
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert [e["status"] for e in store.query("SELECT status FROM events")] == ["dispatched"] * 2
    emails = [
        p["email"] for p in sandbox.store.table("participants").values() if p["email"][:3] in ("p1.", "p2.")
    ]
    assert sorted(emails) == sorted(f"{p}.s{i}@example.com" for p in ("p1", "p2") for i in range(5))


def test_serve_takes_back_a_killed_processs_event_when_its_lease_runs_out(
    conn, sandbox, tmp_path: Path
) -> None:
    from connector.serve import Receiver as Hooks
    from connector.state.leases import Leases

    workflows, _ = load_folder(folder(tmp_path, hooked=HOOKED), conn)
    store = StateStore(tmp_path / "state")
    delivered(store)
    now = [time.time()]
    dead = Leases(StateStore(tmp_path / "state"), owner="dead-host:1:abc", ttl=30, clock=lambda: now[0])
    assert dead.acquire("event:1")
    with store.tx() as db:
        db.execute("UPDATE events SET status = 'dispatching', attempts = 1")
    service = Service(conn, store, workflows, receiver=Hooks(port=0, subscribe=False))
    service.start()
    try:
        wait = service.tick()  # its owner may still be alive: left alone
        assert store.query("SELECT status FROM events")[0]["status"] == "dispatching"
        assert wait <= 31  # but serve wakes up when the lease runs out
        now[0] -= 60  # the lease was last renewed a minute ago: its owner is dead
        dead.renew()
        service.tick()
    finally:
        service.shutdown()
    assert store.query("SELECT status FROM events")[0]["status"] == "dispatched"
    assert store.query("SELECT status FROM runs")[0]["status"] == "succeeded"


# --------------------------------------------------------------------------- serve, the installed script


def test_serve_runs_the_ops_examples_and_stops_on_sigterm(
    sandbox, tmp_path: Path, receiver: Receiver
) -> None:
    """The ops person's week: a missed morning review runs at start, a response posts to
    chat, SIGTERM stops serve and removes its webhook subscription."""
    state = tmp_path / "state"
    store = StateStore(state)
    last_friday = datetime.now(UTC) - timedelta(days=7)
    with store.tx() as db:  # serve ran a week ago: this morning's review (at least) was missed
        db.execute(
            "INSERT INTO schedules (name, workflow, cron, timezone, last_slot, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                "schedule.cron#review-completed",
                "review-completed",
                "0 8 * * 1-5",
                "Europe/London",
                last_friday.isoformat(),
                0,
            ),
        )
    completed = [p["key"] for p in sandbox.store.table("participants").values() if p["stage"] == "Completed"]
    assert completed
    env = script_env(
        WILLO_BASE_URL=sandbox.base_url,
        WILLO_API_KEY=sandbox.api_key,
        WILLO_RATE_LIMIT="0",
        WILLO_STATE_DIR=str(state),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        WILLO_SECRET_CHAT_WEBHOOK=f"{receiver.url}/hooks/T000/B000/chat-secret-path",
    )
    proc = subprocess.Popen(
        [*script(), "serve", str(EXAMPLES / "ops"), "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            hooks = requests.get(
                f"{sandbox.base_url}/webhooks/", headers={"Authorization": sandbox.api_key}
            ).json()
            if hooks["count"] and all(
                sandbox.store.table("participants")[k]["stage"] == "Reviewed" for k in completed
            ):
                break
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        assert all(sandbox.store.table("participants")[k]["stage"] == "Reviewed" for k in completed)
        requests.post(
            f"{sandbox.base_url}/_sandbox/participants/{ADA}/respond",
            headers={"Authorization": sandbox.api_key},
        )
        while time.monotonic() < deadline and not receiver.requests:
            time.sleep(0.05)
        assert receiver.requests, "no chat message"
        message = json.loads(receiver.requests[0]["body"])["text"]
        assert "ada@example.com" in message and "completed" in message
        assert receiver.requests[0]["path"] == "/hooks/T000/B000/chat-secret-path"
        assert "Authorization" not in receiver.requests[0]["headers"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "invite_candidates.yaml: no trigger; not served" in err
    assert "schedule '0 8 * * 1-5' (Europe/London): review-completed" in err
    assert "unsubscribed" in err and "serve: stopped" in err and "Traceback" not in err
    assert "chat-secret-path" not in out + err
    hooks = requests.get(f"{sandbox.base_url}/webhooks/", headers={"Authorization": sandbox.api_key}).json()
    assert hooks["count"] == 0
    runs = {r["name"]: r["status"] for r in store.query("SELECT name, status FROM runs")}
    assert runs == {"review-completed": "succeeded", "notify-on-response": "succeeded"}
    assert "chat-secret-path" not in (state / "state.sqlite3").read_text(errors="replace")


def test_serve_refuses_a_folder_with_bad_workflows_naming_each(tmp_path: Path) -> None:
    d = folder(
        tmp_path,
        a="workflow: 1\nname: a\ntrigger: {use: schedule, with: {cron: '0 25 * * *'}}\nsteps:\n  - {id: x, use: willo.list_languages}\n",
        b="workflow: 1\nname: a\ntrigger: {use: schedule, with: {cron: '@daily'}}\nsteps:\n  - {id: x, use: willo.list_languages}\n",
    )
    out = subprocess.run(
        [*script(), "serve", str(d)],
        env=script_env(WILLO_STATE_DIR=str(tmp_path / "s")),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "a.yaml:3: /trigger/with/cron: \"0 25 * * *\" is not a valid cron: hour field '25'" in out.stderr
