"""Triggers: polling ledgers (exactly once, across restarts and concurrent pollers),
the webhook inbox, and `listen` as a real process against the sandbox."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import random
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from werkzeug.test import Client

from connector import hookimpl
from connector.catalog import plugins
from connector.cli import main
from connector.sandbox.seed import stable
from connector.state.store import StateStore
from connector.triggers.dispatch import Dispatcher, requeue_interrupted
from connector.triggers.polling import Poller
from connector.triggers.receiver import Inbox, make_app
from connector.workflows.runtime import Connector
from tests.conftest import free_port, script, script_env
from tests.conftest import wait_for as wait_until

#: this file's bound on a wait (see conftest.wait_for)
wait_for = functools.partial(wait_until, timeout=60.0)

BACKEND = stable("interview:Backend Engineer")


def invite(sandbox, email: str, interview: str = BACKEND) -> dict:
    r = requests.post(
        sandbox.base_url + "/participants/",
        json={"interview": interview, "email": email},
        headers={"Authorization": sandbox.api_key},
    )
    assert r.status_code == 201, r.text
    return r.json()


def emitted(store: StateStore, name: str) -> list[str]:
    rows = store.query("SELECT payload FROM events WHERE trigger = ? ORDER BY id", (name,))
    return [json.loads(r["payload"])["email"] for r in rows]


def test_first_poll_records_then_each_new_item_once(conn: Connector, sandbox, tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    poller = Poller(conn, store, "willo.new_participant")
    first = poller.poll()
    assert first.first and first.events == [] and first.requests == 1
    invite(sandbox, "one@example.com")
    invite(sandbox, "two@example.com")
    second = poller.poll()
    assert [e["email"] for e in second.events] == ["one@example.com", "two@example.com"]
    third = poller.poll()
    assert third.events == [] and third.requests == 1  # one request when nothing changed


def test_restarts_never_repeat(conn: Connector, sandbox, tmp_path: Path) -> None:
    Poller(conn, StateStore(tmp_path), "willo.new_participant").poll()
    invite(sandbox, "a@example.com")
    assert len(Poller(conn, StateStore(tmp_path), "willo.new_participant").poll().events) == 1
    assert Poller(conn, StateStore(tmp_path), "willo.new_participant").poll().events == []


def test_many_new_items_page_back_to_the_cursor_in_order(conn: Connector, sandbox, tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    poller = Poller(conn, store, "willo.new_participant")
    poller.poll()
    emails = [f"p{i:02d}@example.com" for i in range(45)]
    for e in emails:
        invite(sandbox, e)
    result = poller.poll()
    assert [e["email"] for e in result.events] == emails
    assert result.requests == 2


def test_backfill_emits_what_exists_oldest_first(conn: Connector, sandbox, tmp_path: Path) -> None:
    result = Poller(conn, StateStore(tmp_path), "willo.new_participant").poll(backfill=True)
    assert [e["email"] for e in result.events] == [
        "ada@example.com",
        "grace@example.com",
        "alan@example.com",
        "katherine@example.com",
        "charles@example.com",
    ]


def test_concurrent_pollers_emit_each_item_once(conn: Connector, sandbox, tmp_path: Path) -> None:
    Poller(conn, StateStore(tmp_path), "willo.new_participant").poll()
    for i in range(20):
        invite(sandbox, f"c{i}@example.com")
    barrier = threading.Barrier(4)

    def run() -> None:
        c = Connector(settings=conn.client.settings)
        p = Poller(c, StateStore(tmp_path), "willo.new_participant")
        barrier.wait()
        for _ in range(3):
            p.poll()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = emitted(StateStore(tmp_path), Poller(conn, StateStore(tmp_path), "willo.new_participant").name)
    assert sorted(got) == sorted(f"c{i}@example.com" for i in range(20))


def test_a_crash_before_commit_loses_and_repeats_nothing(
    conn: Connector, sandbox, tmp_path: Path, monkeypatch
) -> None:
    store = StateStore(tmp_path)
    poller = Poller(conn, store, "willo.new_participant")
    poller.poll()
    for e in ("x1@example.com", "x2@example.com", "x3@example.com"):
        invite(sandbox, e)
    calls = [0]
    real = poller._validated

    def crash_on_second(item):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt("killed mid-transaction")
        return real(item)

    monkeypatch.setattr(poller, "_validated", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        poller.poll()
    assert emitted(store, poller.name) == []  # rolled back whole
    monkeypatch.setattr(poller, "_validated", real)
    assert [e["email"] for e in poller.poll().events] == [
        "x1@example.com",
        "x2@example.com",
        "x3@example.com",
    ]


def test_participant_completed_and_options(conn: Connector, sandbox, tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    poller = Poller(conn, store, "willo.participant_completed", {"interview": BACKEND})
    assert poller.name.startswith("willo.participant_completed#")
    poller.poll()
    ada = stable("participant:ada@example.com")
    requests.post(
        f"{sandbox.base_url}/_sandbox/participants/{ada}/respond",
        json={},
        headers={"Authorization": sandbox.api_key},
    )
    events = poller.poll().events
    assert [(e["email"], e["status"]) for e in events] == [("ada@example.com", "completed")]
    assert poller.poll().events == []


def test_queued_events_survive_a_crash_in_dispatch(conn: Connector, sandbox, tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    poller = Poller(conn, store, "willo.new_participant")
    poller.poll()
    invite(sandbox, "q@example.com")
    poller.poll()
    seen: list[str] = []

    def crash(trigger, payload, event):
        raise SystemExit("process died while dispatching")

    with pytest.raises(SystemExit):
        Dispatcher(conn, store, "poll", crash).one()
    store.leases.close()  # the dead process's heartbeat stops with it
    assert requeue_interrupted(StateStore(tmp_path), "poll") == 0  # its lease has not expired yet
    later = StateStore(tmp_path)
    later.leases.clock = lambda: time.time() + store.leases.ttl + 1
    assert requeue_interrupted(later, "poll") == 1
    n = Dispatcher(conn, later, "poll", lambda t, p, e: seen.append(p["email"])).drain()
    assert n == 1 and seen == ["q@example.com"]


def test_event_received_hook_observes_events(sandbox, tmp_path: Path) -> None:
    observed = []

    class Observer:
        @hookimpl
        def event_received(self, trigger, event):
            observed.append((trigger, event["email"]))

    host = plugins.build_host([], extra=[("observer", Observer())])
    plugins.set_host(host)
    conn = Connector(host)
    store = StateStore(tmp_path)
    poller = Poller(conn, store, "willo.new_participant")
    poller.poll()
    invite(sandbox, "hooked@example.com")
    poller.poll()
    Dispatcher(conn, store, "poll", lambda t, p, e: None).drain()
    assert observed == [("willo.new_participant", "hooked@example.com")]


def test_poll_cli_json_lines_and_state_commands(sandbox) -> None:
    run = CliRunner()
    first = run.invoke(main, ["poll", "willo.new_participant", "--once", "--json"])
    assert first.exit_code == 0 and first.stdout == ""
    invite(sandbox, "cli@example.com")
    second = run.invoke(main, ["poll", "willo.new_participant", "--once", "--json"])
    lines = second.stdout.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["email"] == "cli@example.com"
    show = json.loads(run.invoke(main, ["state", "show", "willo.new_participant", "--json"]).stdout)
    assert show["polls"] == 2 and show["requests"] == 2 and show["seen"] == 6
    assert run.invoke(main, ["state", "reset", "willo.new_participant"]).exit_code == 0
    again = run.invoke(main, ["poll", "willo.new_participant", "--once", "--json", "--backfill"])
    assert len(again.stdout.strip().splitlines()) == 6
    bad = run.invoke(main, ["poll", "willo.new_response", "--once"])
    assert bad.exit_code == 1 and "use `willo-connector listen`" in bad.stderr


# ---------------------------------------------------------------------- the inbox


SECRET = "shared-secret-for-tests"


def signed(body: bytes, ts: int | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Willo-Timestamp": str(ts), "X-Willo-Signature": f"sha256={mac}"}


def event_body(event: str = "new_score", eid: str = "evt_1") -> bytes:
    return json.dumps(
        {
            "id": eid,
            "event": event,
            "created_at": "2026-01-01T00:00:00Z",
            "data": {"participant": {"key": "k"}, "interview": {"key": "i", "title": "t"}},
        }
    ).encode()


@pytest.fixture
def inbox(tmp_path: Path) -> tuple[Client, StateStore]:
    store = StateStore(tmp_path)
    return Client(make_app(Inbox(store, SECRET))), store


def queued(store: StateStore) -> int:
    return store.query("SELECT COUNT(*) AS n FROM events WHERE source = 'webhook'")[0]["n"]


def test_signed_delivery_is_queued_once(inbox) -> None:
    client, store = inbox
    body = event_body()
    r = client.post("/willo/webhooks", data=body, headers={**signed(body), "X-Willo-Delivery": "d1"})
    assert r.status_code == 202 and r.json == {"status": "queued"}
    r = client.post("/willo/webhooks", data=body, headers={**signed(body), "X-Willo-Delivery": "d1"})
    assert r.status_code == 200 and r.json == {"status": "duplicate"}
    assert queued(store) == 1


def test_dedupe_falls_back_to_event_id_then_body_hash(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    client = Client(make_app(Inbox(store)))
    client.post("/willo/webhooks", data=event_body(eid="evt_same"))
    client.post("/willo/webhooks", data=event_body(eid="evt_same"))
    raw = json.dumps({"event": "new_score", "data": {}}).encode()
    client.post("/willo/webhooks", data=raw)
    client.post("/willo/webhooks", data=raw)
    assert queued(store) == 2


@pytest.mark.parametrize(
    "headers,status",
    [
        ({}, 401),
        ({"X-Willo-Signature": "sha256=00", "X-Willo-Timestamp": str(int(time.time()))}, 401),
        ("stale", 401),
        ("wrong-secret", 401),
    ],
)
def test_bad_signatures_are_refused_and_not_queued(inbox, headers, status) -> None:
    client, store = inbox
    body = event_body()
    if headers == "stale":
        headers = signed(body, ts=int(time.time()) - 3600)
    elif headers == "wrong-secret":
        headers = signed(body, secret="another-secret")
    assert client.post("/willo/webhooks", data=body, headers=headers).status_code == status
    assert queued(store) == 0


def test_malformed_and_oversized_bodies(inbox) -> None:
    client, store = inbox
    for body, status in (
        (b"not json", 400),
        (b"[1]", 400),
        (json.dumps({"event": "nope", "data": {}}).encode(), 400),
        (b"x" * (1024 * 1024 + 1), 413),
    ):
        assert client.post("/willo/webhooks", data=body, headers=signed(body)).status_code == status
    assert client.get("/willo/webhooks").status_code == 405
    assert client.get("/elsewhere").status_code == 404
    assert queued(store) == 0


def test_fuzzed_deliveries_never_get_a_5xx(tmp_path: Path) -> None:
    rng = random.Random(20261128)
    store = StateStore(tmp_path)
    clients = [Client(make_app(Inbox(store))), Client(make_app(Inbox(store, SECRET)))]
    alphabet = [
        b"{",
        b"}",
        b"[",
        b"]",
        b'"event"',
        b'"data"',
        b":",
        b",",
        b'"new_score"',
        b"null",
        b"\xff",
        b"\x00",
        b"1e999",
        b'"id"',
        b" ",
        b"\\u0000",
        b"true",
    ]
    header_names = [
        "X-Willo-Signature",
        "X-Willo-Timestamp",
        "X-Willo-Delivery",
        "Content-Type",
        "Content-Length-Bogus",
    ]
    for _ in range(400):
        body = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        if rng.random() < 0.3:
            body = json.dumps(
                {
                    "event": rng.choice(["new_score", "x", None]),
                    "data": rng.choice([{}, [], 1]),
                    "id": rng.choice(["a", 1, None, ""]),
                }
            ).encode()
        headers = {
            rng.choice(header_names): "".join(chr(rng.randint(32, 126)) for _ in range(rng.randint(0, 30)))
            for _ in range(rng.randint(0, 3))
        }
        method = rng.choice(["POST", "POST", "PUT", "GET"])
        for client in clients:
            r = client.open("/willo/webhooks", method=method, data=body, headers=headers)
            assert r.status_code < 500, (body, headers, r.status_code)


# ---------------------------------------------------------------------- listen, for real

WF = """\
workflow: 1
name: on-{event}
trigger: {{use: willo.{event}}}
steps:
  - id: who
    use: willo.get_participant
    with: {{participant: "{{{{ trigger.data.participant.key }}}}"}}
"""


class ListenProcess:
    def __init__(
        self, sandbox, tmp_path: Path, workflows: list[Path], port: int, secret: str = "", **env: str
    ):
        self.env = script_env(
            WILLO_BASE_URL=sandbox.base_url,
            WILLO_API_KEY=sandbox.api_key,
            WILLO_RATE_LIMIT="0",
            WILLO_STATE_DIR=str(tmp_path / "state"),
            XDG_CACHE_HOME=str(tmp_path / "cache"),
            **env,
        )
        if secret:
            self.env["WILLO_WEBHOOK_SECRET"] = secret
        args = [*script(), "listen", "--port", str(port)]
        for wf in workflows:
            args += ["--workflow", str(wf)]
        self.proc = subprocess.Popen(
            args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.url = f"http://127.0.0.1:{port}/willo/webhooks"
        deadline = time.monotonic() + 90  # a loaded CI machine: a cold catalog cache, two cores
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if line.startswith("subscribed"):
                return
            assert self.proc.poll() is None, self.proc.stderr.read()
        raise AssertionError("listener did not subscribe")

    def stop(self, sig: int = signal.SIGTERM) -> str:
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=15)
        return err


def runs_in(tmp_path: Path) -> list[sqlite3.Row]:
    return StateStore(tmp_path / "state").query("SELECT * FROM runs ORDER BY started_at")


def test_listen_runs_a_workflow_for_each_event_and_unsubscribes(sandbox, tmp_path: Path) -> None:
    events = ["new_response", "stage_change", "new_comment", "new_score"]
    wfs = []
    for ev in events:
        p = tmp_path / f"{ev}.yaml"
        p.write_text(WF.format(event=ev))
        wfs.append(p)
    lp = ListenProcess(sandbox, tmp_path, wfs, free_port(), secret="listen-test-secret-123")
    try:
        hooks = requests.get(
            sandbox.base_url + "/webhooks/", headers={"Authorization": sandbox.api_key}
        ).json()
        assert hooks["count"] == 1 and sorted(hooks["results"][0]["events"]) == sorted(events)
        assert hooks["results"][0]["has_secret"]
        ada = stable("participant:ada@example.com")
        for sim, body in (
            ("respond", {}),
            ("stage", {"stage": "Reviewed"}),
            ("comment", {"text": "ok"}),
            ("score", {"score": 5}),
        ):
            requests.post(
                f"{sandbox.base_url}/_sandbox/participants/{ada}/{sim}",
                json=body,
                headers={"Authorization": sandbox.api_key},
            )
        wait_for(lambda: len([r for r in runs_in(tmp_path) if r["status"] == "succeeded"]) == 4)
        assert sorted(r["name"] for r in runs_in(tmp_path)) == sorted(f"on-{e}" for e in events)
        # a duplicate delivery (same delivery id) is answered but runs nothing

        def deliveries() -> list[dict]:
            return requests.get(
                sandbox.base_url + "/_sandbox/deliveries", headers={"Authorization": sandbox.api_key}
            ).json()["results"]

        # the sandbox logs a delivery once it has read the listener's answer, which may
        # be after the run it started has finished: wait for every one to be logged
        wait_for(lambda: all(d["status"] != "pending" for d in deliveries()))
        log = deliveries()
        assert len(log) == 4 and all(d["status"] == "delivered" for d in log)
        body = json.dumps(
            {
                "id": log[-1]["id"],
                "event": "new_score",
                "data": {"participant": {"key": ada}, "interview": {"key": BACKEND, "title": "x"}},
            }
        ).encode()
        r = requests.post(
            lp.url,
            data=body,
            headers={**signed(body, secret="listen-test-secret-123"), "X-Willo-Delivery": log[-1]["id"]},
        )
        assert r.status_code == 200 and r.json()["status"] == "duplicate"
        unsigned = requests.post(lp.url, data=body)
        assert unsigned.status_code == 401
        time.sleep(0.5)
        assert len(runs_in(tmp_path)) == 4
    finally:
        err = lp.stop()
    assert "unsubscribed" in err and "Traceback" not in err
    hooks = requests.get(sandbox.base_url + "/webhooks/", headers={"Authorization": sandbox.api_key}).json()
    assert hooks["count"] == 0


def test_sigkill_after_2xx_then_restart_processes_the_event(sandbox, tmp_path: Path, monkeypatch) -> None:
    wf = tmp_path / "score.yaml"
    wf.write_text(WF.format(event="new_score"))
    port = free_port()
    # the killed listener's event lease expires after 2 s; then the restarted one takes it
    lp = ListenProcess(sandbox, tmp_path, [wf], port, WILLO_LEASE_SECONDS="2")
    monkeypatch.setattr(sandbox.app.faults, "latency_ms", 3000)  # the run hangs in its request
    ada = stable("participant:ada@example.com")
    requests.post(
        f"{sandbox.base_url}/_sandbox/participants/{ada}/score",
        json={"score": 2},
        headers={"Authorization": sandbox.api_key},
    )
    store = StateStore(tmp_path / "state")
    wait_for(
        lambda: store.query("SELECT COUNT(*) AS n FROM events WHERE status = 'dispatching'")[0]["n"] == 1
    )
    # killed once its run's request is out (on a loaded machine the event can be taken
    # well before its run is written: a kill then would leave no run to resume)
    wait_for(lambda: store.query("SELECT COUNT(*) AS n FROM units WHERE status = 'sending'")[0]["n"] == 1)
    lp.stop(signal.SIGKILL)
    hooks = requests.get(sandbox.base_url + "/webhooks/", headers={"Authorization": sandbox.api_key}).json()
    first_key = hooks["results"][0]["key"]
    monkeypatch.setattr(sandbox.app.faults, "latency_ms", 0)
    lp2 = ListenProcess(sandbox, tmp_path, [wf], port, WILLO_LEASE_SECONDS="2")
    try:
        wait_for(lambda: store.query("SELECT status FROM events")[0]["status"] == "dispatched")
        hooks = requests.get(
            sandbox.base_url + "/webhooks/", headers={"Authorization": sandbox.api_key}
        ).json()
        assert hooks["count"] == 1 and hooks["results"][0]["key"] == first_key  # reused, not duplicated
        rows = runs_in(tmp_path)
        assert [r["status"] for r in rows] == ["succeeded"] and rows[0]["attempts"] == 2
    finally:
        lp2.stop()


def test_a_workflow_failing_with_a_4xx_is_parked_at_once(conn: Connector, sandbox, tmp_path: Path) -> None:
    """A 404 cannot succeed by waiting: parked on the first attempt (transient failures
    are retried: tests/test_event_delivery.py)."""
    from connector.triggers.dispatch import workflow_handler
    from connector.workflows.model import load

    wf_path = tmp_path / "fails.yaml"
    wf_path.write_text(WF.format(event="new_score"))
    wf = load(wf_path, conn.catalog)
    store = StateStore(tmp_path / "state")
    inbox = Inbox(store)
    body = event_body("new_score", "evt_parked").replace(b'"key": "k"', b'"key": "' + b"0" * 32 + b'"')
    assert inbox.accept({}, body).status == 202
    dispatcher = Dispatcher(
        conn, store, "webhook", workflow_handler(conn, store, [wf]), max_attempts=3, backoff=0.01
    )
    assert dispatcher.one() == 1
    event = store.query("SELECT * FROM events")[0]
    assert (event["status"], event["attempts"], event["failure"]) == ("parked", 1, "permanent")
    assert "404" in event["error"]
    assert dispatcher.one() == 0
    runs = json.loads(
        CliRunner().invoke(main, ["runs", "--json", "--state-dir", str(tmp_path / "state")]).stdout
    )
    assert [(r["status"], r["attempts"]) for r in runs] == [("parked", 1)]


# ---------------------------------------------------------------------- backfill in O(N) (issue 16.4)


def test_a_backfill_builds_no_validator_per_item(
    conn: Connector, sandbox, tmp_path: Path, monkeypatch, caplog
) -> None:
    """Each event is still checked against the trigger's schema (a bad one is warned
    about), but with one compiled proof and at most one validator, not one per item."""
    from connector.catalog import schemas
    from connector.sandbox import seed

    with sandbox.store.lock:
        seed.bulk(sandbox.store, 90, sandbox.base_url + "/")
        for bad in list(sandbox.store.table("participants").values())[:5]:  # the demo's five
            sandbox.store.update("participants", bad, {"status": "withdrawn"})
    built = []
    real = schemas.validator
    monkeypatch.setattr(schemas, "validator", lambda s: built.append(1) or real(s))
    result = Poller(conn, StateStore(tmp_path), "willo.new_participant").poll(backfill=True)
    assert len(result.events) == 95  # the demo's five and the bulk interview's 90
    assert len(built) <= 1  # the drifted item's errors are worded by one (cached) validator
    assert [r.getMessage() for r in caplog.records if "does not match the trigger" in r.getMessage()] == [
        "willo.new_participant: event does not match the trigger's schema: /status: 'withdrawn' is not one "
        "of ['invited', 'completed']"
    ] * 5


def test_a_dispatcher_flushes_what_was_printed_before_marking_it_dispatched(
    conn: Connector, tmp_path: Path
) -> None:
    """``poll`` prints without a flush per event: the dispatcher flushes before it settles
    a batch, so an event marked dispatched has reached stdout."""
    store = StateStore(tmp_path)
    with store.tx() as db:
        db.executemany(
            "INSERT INTO events (source, trigger, dedupe, payload, status, received_at)"
            " VALUES ('poll', 't', ?, '{\"n\": 1}', 'queued', 0)",
            [(str(i),) for i in range(40)],
        )
    printed: list[int] = []
    flushed: list[int] = []
    dispatched_at_flush: list[int] = []

    def handle(trigger: str, payload: dict, event: dict) -> None:
        assert event["payload_json"] == '{"n": 1}' and payload == {"n": 1}
        printed.append(event["id"])

    def flush() -> None:
        rows = store.query("SELECT COUNT(*) AS n FROM events WHERE status = 'dispatched'")
        dispatched_at_flush.append(rows[0]["n"])
        flushed.extend(printed)
        printed.clear()

    assert Dispatcher(conn, store, "poll", handle, before_settle=flush, batch=16).drain() == 40
    assert dispatched_at_flush == [0, 16, 32] and len(flushed) == 40 and not printed
    assert store.query("SELECT COUNT(*) AS n FROM events WHERE status = 'dispatched'")[0]["n"] == 40


# ---------------------------------------------------------------------- taken as they are queued (issue 16.4)


def test_a_poll_that_takes_its_events_commits_them_before_they_are_delivered(
    conn: Connector, sandbox, tmp_path: Path
) -> None:
    """``poll(take=True)`` (poll's printing dispatcher) queues and claims new events in
    one transaction: leased and ``dispatching`` on disk, handed back with their stored
    JSON and parsed payload as a claim would give them, delivered once, then settled."""
    store = StateStore(tmp_path)
    poller = Poller(conn, store, "willo.new_participant")
    poller.poll()
    for e in ("t1@example.com", "t2@example.com", "t3@example.com"):
        invite(sandbox, e)
    result = poller.poll(take=True)
    assert [e["payload"]["email"] for e in result.taken] == [
        "t1@example.com",
        "t2@example.com",
        "t3@example.com",
    ]
    rows = store.query("SELECT * FROM events WHERE trigger = ? ORDER BY id", (poller.name,))
    assert [(r["status"], r["attempts"]) for r in rows] == [("dispatching", 1)] * 3
    for row, event in zip(rows, result.taken, strict=True):
        assert event == {**dict(row), "payload_json": row["payload"], "payload": json.loads(row["payload"])}
        assert store.leases.holds(f"event:{row['id']}")
    other = StateStore(tmp_path)  # another process's dispatcher finds nothing to claim
    assert Dispatcher(conn, other, "poll", lambda t, p, e: None).drain() == 0
    on_disk: list[tuple[str, int]] = []

    def handle(trigger: str, payload: dict, event: dict) -> None:
        # committed before it is handed on: another connection sees it
        with sqlite3.connect(store.path) as db:
            on_disk.append(
                db.execute("SELECT status, attempts FROM events WHERE id = ?", (event["id"],)).fetchone()
            )

    dispatcher = Dispatcher(conn, store, "poll", handle)
    assert dispatcher.deliver(result.taken) == 3
    assert on_disk == [("dispatching", 1)] * 3
    assert [r["status"] for r in store.query("SELECT status FROM events")] == ["dispatched"] * 3
    assert store.query("SELECT COUNT(*) AS n FROM leases WHERE resource LIKE 'event:%'")[0]["n"] == 0
    assert dispatcher.drain() == 0 and poller.poll(take=True).taken == []


def test_events_taken_by_a_poller_that_died_are_queued_again_and_delivered_once(
    conn: Connector, sandbox, tmp_path: Path
) -> None:
    store = StateStore(tmp_path)
    poller = Poller(conn, store, "willo.new_participant")
    poller.poll()
    invite(sandbox, "died@example.com")
    assert len(poller.poll(take=True).taken) == 1  # ... and the process dies before delivering
    store.leases.close()
    later = StateStore(tmp_path)
    assert requeue_interrupted(later, "poll") == 0  # its lease is still live
    later.leases.clock = lambda: time.time() + store.leases.ttl + 1
    assert requeue_interrupted(later, "poll") == 1
    seen: list[str] = []
    assert Dispatcher(conn, later, "poll", lambda t, p, e: seen.append(p["email"])).drain() == 1
    assert seen == ["died@example.com"]
    assert Poller(conn, later, "willo.new_participant").poll(take=True).taken == []


def test_a_backfill_printed_by_poll_is_each_event_once_and_all_settled(sandbox, tmp_path: Path) -> None:
    r = CliRunner().invoke(
        main,
        ["poll", "willo.new_participant", "--once", "--json", "--backfill", "--state-dir", str(tmp_path)],
    )
    assert r.exit_code == 0, r.output
    printed = [json.loads(line)["email"] for line in r.stdout.splitlines()]
    assert len(printed) == 5 and len(set(printed)) == 5
    store = StateStore(tmp_path)
    assert {row["status"] for row in store.query("SELECT status FROM events")} == {"dispatched"}
    assert store.query("SELECT COUNT(*) AS n FROM leases WHERE resource LIKE 'event:%'")[0]["n"] == 0


def test_a_poller_prunes_its_seen_keys_after_a_poll_at_most_hourly(
    conn: Connector, sandbox, tmp_path: Path, monkeypatch
) -> None:
    from connector.triggers import polling

    store = StateStore(tmp_path)
    poller = Poller(conn, store, "willo.new_participant")
    pruned: list[int] = []
    real = poller.prune
    monkeypatch.setattr(poller, "prune", lambda: pruned.append(1) or real())
    clock = [1000.0]
    monkeypatch.setattr(polling.time, "monotonic", lambda: clock[0])
    poller.poll()
    assert pruned == []  # a first poll: every seen key is its own
    poller.poll()
    assert pruned == [1]
    clock[0] += polling.PRUNE_EVERY - 1
    poller.poll()
    assert pruned == [1]
    clock[0] += 2
    poller.poll()
    assert pruned == [1, 1]
    # what it prunes: keys both older than the window and behind the cursor
    with store.tx() as db:
        db.execute("UPDATE seen SET seen_at = 0 WHERE name = ?", (poller.name,))
    assert real() > 0


def test_poll_json_writes_a_batch_at_once_before_it_is_marked_dispatched(
    sandbox, tmp_path: Path, monkeypatch
) -> None:
    """Events only printed go to stdout in one write a batch (a pipe's reader is woken
    once, not once a line: stdout may be unbuffered), written before the batch is
    marked dispatched."""
    import sys as real_sys

    from connector.cli import trigger_cmds

    writes: list[tuple[int, int]] = []  # (lines written, events dispatched by then)
    store_path = tmp_path / "state.sqlite3"

    class Counting:
        def __init__(self, out):
            self.out = out

        def write(self, text: str) -> int:
            with sqlite3.connect(store_path) as db:
                done = db.execute("SELECT COUNT(*) FROM events WHERE status = 'dispatched'").fetchone()[0]
            writes.append((text.count("\n"), done))
            return self.out.write(text)

        def __getattr__(self, name):
            return getattr(self.out, name)

    class Sys:
        def __getattr__(self, name):
            return getattr(real_sys, name)

        @property
        def stdout(self):
            return Counting(real_sys.stdout)

    monkeypatch.setattr(trigger_cmds, "sys", Sys())
    r = CliRunner().invoke(
        main,
        ["poll", "willo.new_participant", "--once", "--json", "--backfill", "--state-dir", str(tmp_path)],
    )
    assert r.exit_code == 0, r.output
    assert len(r.stdout.splitlines()) == 5
    assert writes == [(5, 0)]
