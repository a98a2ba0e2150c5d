"""Leases (connector/state/leases.py): one live owner of a run or an event, any number
of a subscription; a dead owner's leases expire; a live one's never are taken
(issue 9 item 4)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.state.leases import LeaseLost, Leases, lease_seconds
from connector.state.store import StateStore
from connector.triggers.dispatch import Dispatcher, claim, requeue_interrupted
from connector.triggers.receiver import Inbox


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def two(tmp_path: Path, ttl: float = 10) -> tuple[Leases, Leases, Clock]:
    clock = Clock()
    a = Leases(StateStore(tmp_path), owner="host-a:1:aaaa", ttl=ttl, clock=clock)
    b = Leases(StateStore(tmp_path), owner="host-b:1:bbbb", ttl=ttl, clock=clock)
    return a, b, clock


def test_an_exclusive_lease_has_one_live_owner_until_it_expires(tmp_path: Path) -> None:
    a, b, clock = two(tmp_path)
    assert a.acquire("run:1")
    assert a.acquire("run:1")  # renewing one's own
    assert not b.acquire("run:1")
    assert [h.owner for h in b.holders("run:1")] == [a.owner]
    clock.now += 9
    assert not b.acquire("run:1")
    clock.now += 2  # a stopped heartbeating 11 s ago: expired
    assert b.acquire("run:1")
    assert [h.owner for h in a.holders("run:1")] == [b.owner]


def test_a_renewed_lease_does_not_expire(tmp_path: Path) -> None:
    a, b, clock = two(tmp_path)
    a.acquire("run:1")
    for _ in range(5):
        clock.now += 8
        assert a.renew() == set()
        assert not b.acquire("run:1")


def test_a_taken_over_lease_is_reported_lost_and_fences_writes(tmp_path: Path) -> None:
    a, b, clock = two(tmp_path)
    a.acquire("run:1")
    clock.now += 11
    assert b.acquire("run:1")
    assert a.renew() == {"run:1"}
    with pytest.raises(LeaseLost), a.store.tx() as db:
        a.check("run:1", db)
    with b.store.tx() as db:
        b.check("run:1", db)  # the new owner passes


def test_an_expired_lease_nobody_took_is_still_its_owners(tmp_path: Path) -> None:
    a, _, clock = two(tmp_path)
    a.acquire("run:1")
    clock.now += 60  # a stalled heartbeat, and nobody took over
    with a.store.tx() as db:
        a.check("run:1", db)
    assert a.holds("run:1")


def test_shared_leases_count_their_live_holders(tmp_path: Path) -> None:
    a, b, clock = two(tmp_path)
    assert a.acquire("subscription:u", shared=True)
    assert b.acquire("subscription:u", shared=True)
    assert not b.acquire("subscription:u")  # not exclusively while a holds a share
    assert len(a.holders("subscription:u")) == 2
    a.release("subscription:u")
    assert [h.owner for h in a.holders("subscription:u")] == [b.owner]
    clock.now += 11
    assert a.holders("subscription:u") == []


def test_release_all_keeps_what_it_is_told_to(tmp_path: Path) -> None:
    a, b, _ = two(tmp_path)
    for r in ("run:1", "event:2", "subscription-change:u"):
        a.acquire(r)
    a.release_all(keep={"subscription-change:u"})
    assert b.acquire("run:1") and b.acquire("event:2")
    assert not b.acquire("subscription-change:u")


def test_the_heartbeat_thread_renews(tmp_path: Path) -> None:
    a = Leases(StateStore(tmp_path), ttl=0.3)
    a.acquire("run:1")
    first = a.holders("run:1")[0].expires_at
    time.sleep(0.5)
    assert a.holders("run:1")[0].expires_at > first
    a.close()


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "abc", "1e999"])
def test_lease_seconds_must_be_positive(raw: str) -> None:
    with pytest.raises(ConfigError, match="WILLO_LEASE_SECONDS"):
        lease_seconds({"WILLO_LEASE_SECONDS": raw})
    assert lease_seconds({}) == 30 and lease_seconds({"WILLO_LEASE_SECONDS": "2.5"}) == 2.5


def test_an_old_state_file_gains_the_new_columns(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    db.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, trigger TEXT NOT NULL,"
        " dedupe TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " next_at REAL NOT NULL DEFAULT 0, error TEXT, run_id TEXT, received_at REAL NOT NULL,"
        " UNIQUE (source, dedupe))"
    )
    db.commit()
    db.close()
    store = StateStore(tmp_path)
    cols = {r["name"] for r in store.query("PRAGMA table_info(events)")}
    assert {"failure", "failing_since"} <= cols


def test_an_old_state_file_gains_the_run_history_columns_and_its_runs_go_on(tmp_path: Path) -> None:
    """A journal written before runs.parent and units.started_at/tries: opened, upgraded
    in place, and its unfinished unit journaled further (tries counted from there)."""
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    db.executescript(
        """
        CREATE TABLE runs (id TEXT PRIMARY KEY, workflow TEXT NOT NULL, name TEXT NOT NULL,
            source TEXT NOT NULL, status TEXT NOT NULL, inputs TEXT NOT NULL, trigger TEXT,
            settings TEXT NOT NULL DEFAULT '{}', error TEXT, attempts INTEGER NOT NULL DEFAULT 1,
            event_id INTEGER, started_at REAL NOT NULL, finished_at REAL);
        CREATE TABLE units (run_id TEXT NOT NULL, step TEXT NOT NULL, item INTEGER NOT NULL,
            action TEXT NOT NULL, status TEXT NOT NULL, inputs TEXT, output TEXT, error TEXT,
            updated_at REAL NOT NULL, PRIMARY KEY (run_id, step, item));
        INSERT INTO runs (id, workflow, name, source, status, inputs, started_at)
            VALUES ('old-run', 'wf.yaml', 'wf', 'workflow: 1', 'failed', '{}', 1.0);
        INSERT INTO units (run_id, step, item, action, status, inputs, updated_at)
            VALUES ('old-run', 'a', -1, 'willo.create_department', 'sending', '{"name": "x"}', 1.0);
        """
    )
    db.commit()
    db.close()
    store = StateStore(tmp_path)
    assert {"parent"} <= {r["name"] for r in store.query("PRAGMA table_info(runs)")}
    assert {"started_at", "tries"} <= {r["name"] for r in store.query("PRAGMA table_info(units)")}
    assert store.run("old-run")["parent"] is None
    store.mark_unit("old-run", "a", -1, "willo.create_department", "ambiguous", error="lost", tries=2)
    unit = store.units("old-run")[("a", -1)]
    assert (unit["status"], unit["tries"], unit["inputs"]) == ("ambiguous", 2, '{"name": "x"}')
    StateStore(tmp_path)  # opening it again changes nothing


# ---------------------------------------------------------------------- events


def body(eid: str) -> bytes:
    return json.dumps({"id": eid, "event": "new_score", "data": {}}).encode()


def test_a_starting_dispatcher_leaves_a_live_ones_events_alone(conn, tmp_path: Path) -> None:
    """Two pollers (or a poller and `listen`) on one state dir: the one starting
    must not take back the other's in-flight events; a dead one's, it does."""
    first = StateStore(tmp_path)
    Inbox(first).accept({}, body("evt_a"))
    (event,) = claim(first, "webhook")  # the first process is dispatching it
    second = StateStore(tmp_path)
    assert requeue_interrupted(second, "webhook") == 0
    assert claim(second, "webhook") == []
    assert second.query("SELECT status FROM events")[0]["status"] == "dispatching"
    first.leases.close()  # the first process dies: its heartbeat stops
    second.leases.clock = lambda: time.time() + first.leases.ttl + 1
    assert requeue_interrupted(second, "webhook") == 1
    (again,) = claim(second, "webhook")
    assert again["id"] == event["id"]


def test_the_dispatcher_sweeps_up_a_dead_peers_events_while_running(conn, tmp_path: Path) -> None:
    first = StateStore(tmp_path)
    Inbox(first).accept({}, body("evt_b"))
    claim(first, "webhook")
    first.leases.close()
    second = StateStore(tmp_path)
    second.leases.clock = lambda: time.time() + first.leases.ttl + 1
    seen: list[str] = []
    d = Dispatcher(conn, second, "webhook", lambda t, p, e: seen.append(p["id"]))
    assert d.one() == 1 and seen == ["evt_b"]  # no restart needed


# ---------------------------------------------------------------------- claims in bulk (issue 16.4)


def test_acquire_many_answers_as_acquire_does_one_by_one(tmp_path: Path) -> None:
    a, b, clock = two(tmp_path)
    b.acquire("event:1")  # b's, live
    b.acquire("event:2")
    clock.now += 11  # ... now expired: anyone may take event:2 (and event:1, renewed below)
    b.acquire("event:1")
    a.acquire("event:3")  # a's own already: renewed, not refused
    with a.store.tx() as db:
        got = a.acquire_many([f"event:{i}" for i in range(1, 6)], db=db)
    assert got == {"event:2", "event:3", "event:4", "event:5"}
    assert [h.owner for h in b.holders("event:1")] == [b.owner]
    for i in (2, 3, 4, 5):
        assert [h.owner for h in b.holders(f"event:{i}")] == [a.owner]
    with a.store.tx() as db:
        a.release_many(["event:2", "event:3"], db=db)
    assert b.acquire("event:2") and b.acquire("event:3") and not b.acquire("event:4")


def test_a_claim_reads_the_queue_in_order_on_its_index_never_sorting_it(tmp_path: Path) -> None:
    """A claim is bounded by what it takes: the queue is walked in id order on an index
    (no sort of every queued event per claim), for one trigger or all."""
    store = StateStore(tmp_path)
    db = store._conn()
    base = (
        "SELECT * FROM events INDEXED BY events_queue WHERE source = ? AND status = 'queued' AND next_at <= ?"
    )
    for sql, args in ((base, ("poll", 1.0)), (base + " AND trigger = ?", ("poll", 1.0, "t"))):
        plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql} ORDER BY id LIMIT 32", args))
        assert "USING INDEX events_queue" in plan and "TEMP B-TREE" not in plan, plan
    import inspect

    from connector.triggers import dispatch

    assert "INDEXED BY events_queue" in inspect.getsource(dispatch.claim)  # the claim is that query
    with store.tx() as tx:
        tx.executemany(
            "INSERT INTO events (source, trigger, dedupe, payload, status, received_at)"
            " VALUES ('poll', ?, ?, '{}', 'queued', 0)",
            [("t" if i % 2 else "u", str(i)) for i in range(200)],
        )
    assert [e["dedupe"] for e in claim(store, "poll", "t", limit=3)] == ["1", "3", "5"]
    assert [e["dedupe"] for e in claim(store, "poll", None, limit=3)] == ["0", "2", "4"]
