"""Events are neither run twice nor given up too soon: replayed deliveries (issue 9
item 5) and retries that outlast an outage (issue 9 item 6)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from werkzeug.test import Client

from connector.cli import main
from connector.errors import BadRequest, ConfigError, InputError, NetworkError, RateLimited, ServerError
from connector.state.store import StateStore, dumps
from connector.triggers.dispatch import Dispatcher, parse_duration, requeue_parked
from connector.triggers.receiver import Inbox, make_app

SECRET = "whsec_delivery_tests_0123456789"


def body_of(eid: str = "evt_1", event: str = "new_score") -> bytes:
    return json.dumps(
        {"id": eid, "event": event, "data": {"participant": {"key": "k"}, "interview": {"key": "i"}}}
    ).encode()


def signed(body: bytes, ts: str | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = str(int(time.time())) if ts is None else ts
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Willo-Timestamp": ts, "X-Willo-Signature": "sha256=" + mac}


def queued(store: StateStore) -> int:
    return store.query("SELECT COUNT(*) AS n FROM events WHERE source = 'webhook'")[0]["n"]


# ---------------------------------------------------------------------- 9.5: replays


def test_a_replay_with_another_delivery_header_is_a_duplicate(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    client = Client(make_app(Inbox(store, SECRET)))
    body = body_of("evt_replayed")
    headers = signed(body)
    first = client.post("/willo/webhooks", data=body, headers={**headers, "X-Willo-Delivery": "d1"})
    assert first.status_code == 202
    for other in ("d2", "d3", ""):  # the header is not signed: an attacker picks it
        again = client.post("/willo/webhooks", data=body, headers={**headers, "X-Willo-Delivery": other})
        assert again.status_code == 200 and again.json == {"status": "duplicate"}
    assert queued(store) == 1


def test_long_event_ids_do_not_collide(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    client = Client(make_app(Inbox(store)))
    prefix = "evt_" + "x" * 300
    for eid in (prefix + "A", prefix + "B", prefix + "A"):
        client.post("/willo/webhooks", data=body_of(eid))
    assert queued(store) == 2
    stored = [r["dedupe"] for r in store.query("SELECT dedupe FROM events")]
    assert all(len(d) <= 200 for d in stored)


def test_numeric_event_ids_deduplicate_too(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    client = Client(make_app(Inbox(store)))
    raw = json.dumps({"id": 42, "event": "new_score", "data": {}}).encode()
    client.post("/willo/webhooks", data=raw, headers={"X-Willo-Delivery": "a"})
    client.post("/willo/webhooks", data=raw, headers={"X-Willo-Delivery": "b"})
    assert queued(store) == 1


@pytest.mark.parametrize("ts", ["nan", "NaN", "inf", "-inf", "1e9", "1.5", "0x10", "+1", " 1", "١٢٣", ""])
def test_a_timestamp_must_be_a_finite_integer(tmp_path: Path, ts: str) -> None:
    store = StateStore(tmp_path)
    client = Client(make_app(Inbox(store, SECRET)))
    body = body_of("evt_ts")
    headers = signed(body, ts=ts)
    if ts == "":
        headers["X-Willo-Timestamp"] = " "
    r = client.post("/willo/webhooks", data=body, headers=headers)
    assert r.status_code == 400 and r.json == {"error": "bad timestamp"}, (ts, r.status_code, r.json)
    assert queued(store) == 0


# ---------------------------------------------------------------------- 9.6: retries


class Flaky:
    """A handler failing with ``errors`` in turn, then succeeding."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, trigger: str, payload: dict[str, Any], event: dict[str, Any]) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


def one_event(store: StateStore, eid: str = "evt_retry") -> int:
    assert Inbox(store).accept({}, body_of(eid)).status == 202
    return int(store.query("SELECT id FROM events ORDER BY id DESC LIMIT 1")[0]["id"])


def row(store: StateStore, event_id: int) -> Any:
    return store.query("SELECT * FROM events WHERE id = ?", (event_id,))[0]


def due_now(store: StateStore, event_id: int) -> None:
    with store.tx() as db:
        db.execute("UPDATE events SET next_at = 0 WHERE id = ?", (event_id,))


def test_transient_failures_are_retried_well_past_thirty_seconds(conn, tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    eid = one_event(store)
    outage = [NetworkError("cannot reach Willo: connect timed out")] * 4 + [
        ServerError("Service Unavailable", status=503),
        RateLimited("Request was throttled.", status=429),
    ] * 4
    handler = Flaky(*outage)
    dispatcher = Dispatcher(conn, store, "webhook", handler, backoff=2.0, max_delay=600, horizon=6 * 3600)
    delays = []
    for _ in outage:
        assert dispatcher.one() == 1
        event = row(store, eid)
        assert event["status"] == "queued", dict(event)
        assert event["failure"] == "transient"
        delays.append(event["next_at"] - time.time())
        due_now(store, eid)
    assert dispatcher.one() == 1
    assert row(store, eid)["status"] == "dispatched" and handler.calls == len(outage) + 1
    # exponential, with jitter: 2 s, 4 s, ... 1024 s capped to 600 s
    assert 1.5 < delays[0] <= 2.0 and 3.0 < delays[1] <= 4.0
    assert 400 < delays[-1] <= 600 and all(d <= 600 for d in delays)
    assert row(store, eid)["failure"] is None


def test_after_the_horizon_a_transient_failure_parks_and_a_restart_requeues_it(conn, tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    eid = one_event(store)
    dispatcher = Dispatcher(
        conn, store, "webhook", Flaky(*[ServerError("Bad Gateway", status=502)] * 3), backoff=0.01, horizon=60
    )
    assert dispatcher.one() == 1
    assert row(store, eid)["status"] == "queued"
    with store.tx() as db:  # an hour of outage later
        db.execute("UPDATE events SET next_at = 0, failing_since = ? WHERE id = ?", (time.time() - 3600, eid))
    assert dispatcher.one() == 1
    event = row(store, eid)
    assert (event["status"], event["failure"]) == ("parked", "transient")
    assert requeue_parked(store, "webhook") == 1
    event = row(store, eid)
    assert (event["status"], event["failing_since"]) == ("queued", None)


@pytest.mark.parametrize(
    "error",
    [
        BadRequest("invalid request", status=400, field_errors={"email": ["Enter a valid email."]}),
        InputError("willo.invite_participant: input /email: 'x' is not a valid email"),
        KeyError("a bug"),
    ],
    ids=["400", "validation", "bug"],
)
def test_what_cannot_succeed_is_parked_at_once_and_stays_parked(conn, tmp_path: Path, error) -> None:
    store = StateStore(tmp_path)
    eid = one_event(store)
    dispatcher = Dispatcher(conn, store, "webhook", Flaky(error), backoff=0.01)
    assert dispatcher.one() == 1
    event = row(store, eid)
    assert (event["status"], event["attempts"], event["failure"]) == ("parked", 1, "permanent")
    assert requeue_parked(store, "webhook") == 0


def test_retry_settings_come_from_the_environment(conn, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WILLO_EVENT_RETRY_HORIZON", "2h")
    monkeypatch.setenv("WILLO_EVENT_RETRY_MAX_DELAY", "90s")
    d = Dispatcher(conn, StateStore(tmp_path), "webhook", Flaky())
    assert (d.horizon, d.max_delay) == (7200, 90)
    assert parse_duration("X", "15m") == 900 and parse_duration("X", "1d") == 86400
    assert parse_duration("X", "45") == 45
    for bad in ("abc", "0", "-5m", "nan", "1e400", "5 weeks"):
        with pytest.raises(ConfigError, match="X="):
            parse_duration("X", bad)
    monkeypatch.setenv("WILLO_EVENT_RETRY_HORIZON", "soon")
    with pytest.raises(ConfigError, match="WILLO_EVENT_RETRY_HORIZON"):
        Dispatcher(conn, StateStore(tmp_path), "webhook", Flaky())


def test_poll_requeues_events_parked_by_a_transient_failure_at_start(sandbox, tmp_path: Path) -> None:
    from connector.triggers.polling import ledger_name

    run = CliRunner()
    assert run.invoke(main, ["poll", "willo.new_participant", "--once"]).exit_code == 0
    store = StateStore()
    name = ledger_name("willo.new_participant", {})
    with store.tx() as db:
        for email, failure in (("outage@example.com", "transient"), ("bad@example.com", "permanent")):
            db.execute(
                "INSERT INTO events (source, trigger, dedupe, payload, status, attempts, error, failure,"
                " received_at) VALUES ('poll', ?, ?, ?, 'parked', 9, 'earlier', ?, ?)",
                (name, email, dumps({"key": email, "email": email}), failure, time.time()),
            )
    out = run.invoke(main, ["poll", "willo.new_participant", "--once", "--json"])
    assert out.exit_code == 0, out.output
    assert [json.loads(line)["email"] for line in out.stdout.splitlines()] == ["outage@example.com"]
    statuses = {r["dedupe"]: r["status"] for r in store.query("SELECT dedupe, status FROM events")}
    assert statuses == {"outage@example.com": "dispatched", "bad@example.com": "parked"}
