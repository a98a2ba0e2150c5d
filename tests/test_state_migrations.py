"""The state store's schema versions (issue 10 item 3): a store written by the
release before versions (0.1.0, captured in ``tests/fixtures/state-0.1.0.sql`` from
that code) is migrated forward with nothing lost, its ledgers, events and
subscriptions adopted by the ``default`` connection; a store from a newer version
is refused, untouched."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.connections import Account
from connector.state import store as state
from connector.state.store import MIGRATIONS, VERSION, NewerStore, StateStore
from connector.triggers.dispatch import Dispatcher, adopt_events
from connector.triggers.polling import Poller
from tests.test_polling_ledger import FakeList

FIXTURE = Path(__file__).parent / "fixtures" / "state-0.1.0.sql"
#: What the fixture holds (written by 0.1.0: see tests/fixtures/make_state_0_1_0.py)
LEDGER = "willo.new_participant#1cfd9fe04c2c"
INTERVIEW = "00860c3c59bd48a8e1623ac853ddc9b4"


def old_store(folder: Path, sql: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / "state.sqlite3")
    db.executescript(sql if sql is not None else FIXTURE.read_text())
    db.close()
    return folder


def rows(path: Path, sql: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(path / "state.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql)]
    finally:
        db.close()


def test_the_fixture_is_a_store_of_the_release_before_versions() -> None:
    text = FIXTURE.read_text()
    assert "PRAGMA user_version" not in text and "account" not in text
    assert "UNIQUE (source, dedupe)" in text


def test_a_store_of_0_1_0_is_migrated_with_nothing_lost(tmp_path: Path) -> None:
    folder = old_store(tmp_path / "old")
    before = {
        t: rows(folder, f"SELECT * FROM {t}")
        for t in ("runs", "units", "triggers", "seen", "events", "subscriptions")
    }
    store = StateStore(folder)
    assert store.migrated_from == 0
    assert store.query("PRAGMA user_version")[0][0] == VERSION == len(MIGRATIONS)
    for table, old in before.items():
        new = rows(folder, f"SELECT * FROM {table}")
        assert len(new) == len(old), table
        for o, n in zip(old, new, strict=True):
            assert {k: n[k] for k in o} == o, table  # every column kept as it was
    assert {r["account"] for r in rows(folder, "SELECT account FROM events")} == {""}
    assert {r["account"] for r in rows(folder, "SELECT account FROM subscriptions")} == {""}
    assert rows(folder, "SELECT seq FROM sqlite_sequence WHERE name = 'events'") == [{"seq": 3}]
    # opened again: nothing to do
    assert StateStore(folder).migrated_from == VERSION


def test_ids_of_deleted_events_are_not_handed_out_again(tmp_path: Path) -> None:
    folder = old_store(tmp_path / "old")
    db = sqlite3.connect(folder / "state.sqlite3")
    db.execute("DELETE FROM events WHERE id = 3")  # the newest event, gone (a run may name it)
    db.commit()
    db.close()
    store = StateStore(folder)
    with store.tx() as tx:
        tx.execute(
            "INSERT INTO events (source, trigger, dedupe, payload, status, received_at)"
            " VALUES ('webhook', 'willo.new_score', 'evt_new', '{}', 'queued', 0)"
        )
    assert store.query("SELECT MAX(id) AS m FROM events")[0]["m"] == 4


def test_the_default_connection_adopts_the_ledger_and_polls_on(tmp_path: Path) -> None:
    """The 0.1.0 ledger (two participants seen, two events queued) is the default
    connection's now: its cursor goes on, nothing seen is emitted again, a new item is."""
    from datetime import UTC, datetime

    folder = old_store(tmp_path / "old")
    store = StateStore(folder)
    fake = FakeList()
    for row in rows(folder, "SELECT payload FROM events WHERE source = 'poll' ORDER BY id"):
        item = json.loads(row["payload"])
        fake.items.append({**item, "_t": datetime.fromisoformat(item["created_at"])})
    poller = Poller(fake, store, "willo.new_participant", {"interview": INTERVIEW})  # type: ignore[arg-type]
    assert poller.name != LEDGER
    ledger = store.query("SELECT * FROM triggers WHERE name = ?", (poller.name,))[0]
    assert ledger["account"] == fake.account.id and ledger["initialized"] == 1 and ledger["cursor"]
    assert not store.query("SELECT 1 FROM triggers WHERE name = ?", (LEDGER,))
    assert store.query("SELECT COUNT(*) AS n FROM seen WHERE name = ?", (poller.name,))[0]["n"] == 2
    queued = store.query("SELECT account, trigger FROM events WHERE source = 'poll'")
    assert [(r["account"], r["trigger"]) for r in queued] == [(fake.account.id, poller.name)] * 2
    assert poller.poll().events == []  # nothing seen is emitted again
    fresh = fake.add(datetime.now(UTC))
    assert [e["key"] for e in poller.poll().events] == [fresh["key"]]


def test_another_connection_does_not_adopt_it(tmp_path: Path) -> None:
    folder = old_store(tmp_path / "old")
    store = StateStore(folder)
    fake = FakeList(connection_name="child", account=Account("child", "http://x", "none"))
    poller = Poller(fake, store, "willo.new_participant", {"interview": INTERVIEW})  # type: ignore[arg-type]
    assert store.query("SELECT account FROM triggers WHERE name = ?", (LEDGER,))[0]["account"] is None
    assert (
        store.query("SELECT initialized FROM triggers WHERE name = ?", (poller.name,))[0]["initialized"] == 0
    )


def test_webhook_events_received_before_accounts_are_the_defaults(tmp_path: Path, conn) -> None:
    folder = old_store(tmp_path / "old")
    store = StateStore(folder)
    seen: list[str] = []
    dispatcher = Dispatcher(conn, store, "webhook", lambda t, p, e: seen.append(p["id"]))
    assert dispatcher.one() == 1 and seen == ["evt_fixture_1"]  # '' is the default's
    assert store.query("SELECT status FROM events WHERE id = 3")[0]["status"] == "dispatched"
    assert adopt_events(store, "webhook", conn.account.id) == 1  # a default listener's start
    assert store.query("SELECT account FROM events WHERE id = 3")[0]["account"] == conn.account.id


def test_the_clis_journal_of_0_1_0_is_still_listed(tmp_path: Path) -> None:
    folder = old_store(tmp_path / "old")
    r = CliRunner().invoke(main, ["runs", "--json", "--state-dir", str(folder)])
    assert r.exit_code == 0, r.output
    (run,) = json.loads(r.stdout)
    assert run["workflow"] == "fixture" and run["status"] == "succeeded" and run["units"] == 3


def test_a_file_without_the_failure_columns_is_migrated_too(tmp_path: Path) -> None:
    """The first release's events had no failure columns (0.1.0 added them when it
    opened such a file; migration step 2 does now)."""
    sql = FIXTURE.read_text().replace("    failure TEXT,\n    failing_since REAL,\n", "")
    sql = sql.replace(",NULL,NULL);", ");").replace("'queued',0,0.0,NULL,NULL,", "'queued',0,0.0,NULL,NULL,")
    folder = old_store(tmp_path / "older", sql)
    assert "failure" not in {r["name"] for r in rows(folder, "PRAGMA table_info(events)")}
    StateStore(folder)
    cols = {r["name"] for r in rows(folder, "PRAGMA table_info(events)")}
    assert {"failure", "failing_since", "account"} <= cols


def test_a_store_of_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    folder = old_store(tmp_path / "new")
    db = sqlite3.connect(folder / "state.sqlite3")
    db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.close()
    data = (folder / "state.sqlite3").read_bytes()
    with pytest.raises(
        NewerStore, match=rf"schema version {VERSION + 1}, written by a newer willo-connector"
    ):
        StateStore(folder)
    r = CliRunner().invoke(main, ["runs", "--state-dir", str(folder)])
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1
    assert f"this one reads up to version {VERSION}" in r.stderr and "The file was not changed" in r.stderr
    assert (folder / "state.sqlite3").read_bytes() == data


def test_processes_opening_an_old_store_at_once_migrate_it_once(tmp_path: Path) -> None:
    folder = old_store(tmp_path / "old")
    results: list[Any] = []
    barrier = threading.Barrier(4)

    def open_it() -> None:
        barrier.wait()
        try:
            results.append(StateStore(folder).migrated_from)
        except Exception as exc:  # pragma: no cover - the failure being tested for
            results.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0] + [VERSION] * 3
    assert len(rows(folder, "SELECT * FROM events")) == 3


def test_a_failed_migration_leaves_the_file_as_it_was(tmp_path: Path, monkeypatch) -> None:
    folder = old_store(tmp_path / "old")

    def broken(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE runs ADD COLUMN half_done TEXT")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(state, "MIGRATIONS", (*MIGRATIONS[:2], ("broken", broken)))
    with pytest.raises(Exception, match="disk I/O error"):
        StateStore(folder)
    assert rows(folder, "PRAGMA user_version") == [{"user_version": 0}]
    assert "half_done" not in {r["name"] for r in rows(folder, "PRAGMA table_info(runs)")}
    assert "account" not in {r["name"] for r in rows(folder, "PRAGMA table_info(events)")}


def test_a_store_of_the_release_with_run_history_and_schedules_is_migrated(tmp_path: Path) -> None:
    """The unversioned release after 0.1.0 (flows: runs.parent, units.started_at/tries,
    schedules) wrote its tables whole: they are taken as they are."""
    folder = tmp_path / "flows"
    folder.mkdir()
    db = sqlite3.connect(folder / "state.sqlite3")
    db.executescript(state.SCHEMA)
    db.execute(
        "INSERT INTO runs (id, workflow, name, source, status, inputs, started_at, parent)"
        " VALUES ('r2', 'wf.yaml', 'wf', 'workflow: 1', 'failed', '{}', 1.0, 'r1')"
    )
    db.execute("INSERT INTO schedules VALUES ('morning', 'wf.yaml', '0 8 * * *', 'UTC', NULL, 1.0)")
    db.commit()
    db.close()
    store = StateStore(folder)
    assert store.migrated_from == 0 and store.query("PRAGMA user_version")[0][0] == VERSION
    assert store.run("r2")["parent"] == "r1" and store.run("r2")["account"] is None
    assert store.query("SELECT name FROM schedules")[0]["name"] == "morning"
    assert "account" in {r["name"] for r in store.query("PRAGMA table_info(events)")}
