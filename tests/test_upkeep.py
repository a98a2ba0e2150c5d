"""Operations, issue 15 item 4: retention that never touches unfinished work, online
backups that restore to the same rows, vacuum, and sizes in `state show`."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.errors import ConfigError, ConnectorError
from connector.observe import Upkeep
from connector.state.leases import Leases
from connector.state.store import StateStore, dumps
from connector.state.upkeep import backup, parse_age, prune, retention_seconds, sizes, vacuum
from tests.conftest import script, script_env

DAY = 86400.0
OLD = time.time() - 40 * DAY
NEW = time.time() - 1 * DAY


def add_run(
    store: StateStore, rid: str, status: str, at: float, event_id: int | None = None, units=("succeeded",)
) -> None:
    with store.tx() as db:
        db.execute(
            "INSERT INTO runs (id, workflow, name, source, status, inputs, event_id, started_at, finished_at)"
            " VALUES (?, 'wf.yaml', 'wf', '', ?, '{}', ?, ?, ?)",
            (rid, status, event_id, at, None if status == "running" else at),
        )
        for i, unit in enumerate(units):
            db.execute(
                "INSERT INTO units (run_id, step, item, action, status, output, updated_at)"
                " VALUES (?, 's', ?, 'willo.get_user', ?, '{}', ?)",
                (rid, i, unit, at),
            )


def add_event(store: StateStore, dedupe: str, status: str, at: float) -> int:
    with store.tx() as db:
        cur = db.execute(
            "INSERT INTO events (source, trigger, dedupe, payload, status, received_at)"
            " VALUES ('webhook', 'willo.new_score', ?, ?, ?, ?)",
            (dedupe, dumps({"id": dedupe, "pad": "x" * 2000}), status, at),
        )
        return int(cur.lastrowid or 0)


def ids(store: StateStore, table: str) -> set[Any]:
    key = "id" if table != "units" else "run_id"
    return {r[0] for r in store.query(f"SELECT DISTINCT {key} FROM {table}")}


def test_prune_deletes_what_finished_and_keeps_every_kind_of_unfinished_work(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    # events
    done_old = add_event(store, "done-old", "dispatched", OLD)
    dropped_old = add_event(store, "dropped-old", "dropped", OLD)
    done_new = add_event(store, "done-new", "dispatched", NEW)
    queued_old = add_event(store, "queued-old", "queued", OLD)
    parked_old = add_event(store, "parked-old", "parked", OLD)
    running_old = add_event(store, "running-old", "dispatching", OLD)
    done_old_recent_run = add_event(store, "done-old-run-new", "dispatched", OLD)
    # runs
    add_run(store, "succeeded-old", "succeeded", OLD, done_old)
    add_run(store, "failed-old", "failed", OLD)
    add_run(store, "succeeded-new", "succeeded", NEW)
    add_run(store, "of-a-parked-event", "failed", OLD, parked_old)
    add_run(store, "parked-run", "parked", OLD)
    add_run(store, "blocked", "blocked", OLD, units=("succeeded", "ambiguous"))
    add_run(store, "interrupted", "running", OLD, units=("sending",))
    add_run(store, "sent-unit", "failed", OLD, units=("sent",))
    add_run(store, "live", "succeeded", OLD)
    add_run(store, "finished-late", "succeeded", NEW, done_old_recent_run)
    other = Leases(store, owner="elsewhere:1:ffff")
    assert other.acquire("run:live")  # a process is looking at it right now
    with store.tx() as db:  # a killed process's lease, expired two days ago
        db.execute(
            "INSERT INTO leases VALUES ('run:gone', 'dead:1:0000', 0, ?, ?, ?)",
            (OLD, OLD, time.time() - 2 * DAY),
        )

    done = prune(store, 30 * DAY)

    assert (done.runs, done.units, done.events, done.leases) == (2, 2, 2, 1)
    assert ids(store, "runs") == {
        "succeeded-new",
        "of-a-parked-event",
        "parked-run",
        "blocked",
        "interrupted",
        "sent-unit",
        "live",
        "finished-late",
    }
    assert "succeeded-old" not in ids(store, "units") and "blocked" in ids(store, "units")
    assert ids(store, "events") == {done_new, queued_old, parked_old, running_old, done_old_recent_run}
    assert dropped_old not in ids(store, "events")
    assert done.kept == {"runs": 6, "events": 4}
    assert prune(store, 30 * DAY).runs == 0  # nothing more to do
    other.close()


def test_prune_in_small_batches_leaves_the_store_writable_meanwhile(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    for i in range(30):
        add_run(store, f"r{i}", "succeeded", OLD, add_event(store, f"e{i}", "dispatched", OLD))
    done = prune(store, 30 * DAY, batch=7)
    assert (done.runs, done.units, done.events) == (30, 30, 30)
    assert store.query("SELECT COUNT(*) FROM runs")[0][0] == 0


def test_ages_and_retention_setting() -> None:
    assert parse_age("30d") == 30 * DAY and parse_age("12h") == 12 * 3600 and parse_age("2w") == 14 * DAY
    assert parse_age("7") == 7 * DAY and parse_age("90m") == 5400
    for bad in ("", "soon", "-1d", "0", "1y", "nan"):
        with pytest.raises(ConfigError, match="--older-than"):
            parse_age(bad)
    assert retention_seconds({}) is None and retention_seconds({"WILLO_RETENTION_DAYS": "30"}) == 30 * DAY
    for bad in ("0", "-3", "forever", "inf"):
        with pytest.raises(ConfigError, match="WILLO_RETENTION_DAYS"):
            retention_seconds({"WILLO_RETENTION_DAYS": bad})


def test_long_lived_commands_prune_when_retention_is_set(tmp_path: Path, monkeypatch) -> None:
    store = StateStore(tmp_path)
    add_run(store, "old", "succeeded", OLD)
    add_run(store, "stuck", "blocked", OLD, units=("ambiguous",))
    assert Upkeep(store).once() is None  # no WILLO_RETENTION_DAYS: keep everything
    monkeypatch.setenv("WILLO_RETENTION_DAYS", "30")
    keeper = Upkeep(store, every=3600).start()
    try:
        deadline = time.monotonic() + 10
        while ids(store, "runs") != {"stuck"}:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        keeper.stop()


# ---------------------------------------------------------------------- backup


def rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    db = sqlite3.connect(path)
    try:
        tables = [
            r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        db.close()


def fill(store: StateStore, n: int, tag: str) -> None:
    for i in range(n):
        add_run(store, f"{tag}{i}", "succeeded", NEW, add_event(store, f"{tag}{i}", "dispatched", NEW))


def test_backup_restores_to_an_identical_store_even_taken_while_another_process_writes(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path / "live")
    fill(store, 200, "a")
    writer_store = StateStore(tmp_path / "live")  # another connection, writing all along
    stop = threading.Event()
    written = [0]

    def write() -> None:
        while not stop.is_set():
            add_event(writer_store, f"w{written[0]}", "queued", time.time())
            written[0] += 1

    worker = threading.Thread(target=write)
    worker.start()
    try:
        while written[0] < 20:
            time.sleep(0.01)
        info = backup(store, tmp_path / "during.sqlite3")
    finally:
        stop.set()
        worker.join()
    assert info["bytes"] > 0
    during = rows(tmp_path / "during.sqlite3")
    assert len(during["runs"]) == 200 and 0 < len(during["events"]) - 200 <= written[0]  # a snapshot
    assert sqlite3.connect(tmp_path / "during.sqlite3").execute("PRAGMA integrity_check").fetchone() == (
        "ok",
    )

    backup(store, tmp_path / "quiet.sqlite3")
    # restore: the backup put in place of a (stopped) store
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(tmp_path / "quiet.sqlite3", restored / "state.sqlite3")
    assert rows(restored / "state.sqlite3") == rows(store.path)  # same tables, same rows
    back = StateStore(restored)
    assert back.query("SELECT COUNT(*) FROM events")[0][0] == 200 + written[0]
    assert back.run("a7")["status"] == "succeeded"


def test_backup_refuses_to_clobber(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s")
    (tmp_path / "taken.sqlite3").write_text("precious")
    with pytest.raises(ConnectorError, match="exists; give another file or --force"):
        backup(store, tmp_path / "taken.sqlite3")
    assert (tmp_path / "taken.sqlite3").read_text() == "precious"
    with pytest.raises(ConnectorError, match="the state store itself"):
        backup(store, store.path, overwrite=True)
    with pytest.raises(ConnectorError, match="is a folder"):
        backup(store, tmp_path)
    with pytest.raises(ConnectorError, match="cannot back up"):
        backup(store, tmp_path / "no" / "such" / "dir" / "b.sqlite3")
    assert not list(tmp_path.glob(".*partial*"))
    backup(store, tmp_path / "taken.sqlite3", overwrite=True)
    assert rows(tmp_path / "taken.sqlite3") == rows(store.path)


# ---------------------------------------------------------------------- the CLI


def test_state_cli_show_prune_vacuum_backup(tmp_path: Path, monkeypatch) -> None:
    store = StateStore(tmp_path / "state")
    for i in range(300):
        add_run(store, f"r{i}", "succeeded", OLD, add_event(store, f"e{i}", "dispatched", OLD))
    add_run(store, "stuck", "blocked", OLD, units=("ambiguous",))
    add_event(store, "waiting", "parked", OLD)
    run = CliRunner()
    show = json.loads(run.invoke(main, ["state", "show", "--json"]).stdout)
    assert show["events"] == {"done": 300, "parked": 1} and show["runs"] == {"succeeded": 300, "blocked": 1}
    assert show["sizes"]["file"] > 600_000 and show["retention_days"] is None
    text = run.invoke(main, ["state", "show"]).stdout
    assert "sizes: file " in text and (" KB" in text or " MB" in text)

    r = run.invoke(main, ["state", "prune"])
    assert r.exit_code == 1 and "give --older-than AGE" in r.stderr
    assert run.invoke(main, ["state", "prune", "--older-than", "soon"]).exit_code == 1
    r = run.invoke(main, ["state", "prune", "--older-than", "30d"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(
        "pruned 300 runs (300 units), 300 events and 0 stale leases older than 30 days"
    )
    assert "kept as unfinished (or tied to unfinished work): 1 runs, 1 events" in r.stdout
    monkeypatch.setenv("WILLO_RETENTION_DAYS", "30")
    assert json.loads(run.invoke(main, ["state", "prune", "--json"]).stdout)["runs"] == 0

    before = sizes(store)
    assert before["free"] > 500_000  # what prune freed, still inside the file
    r = run.invoke(main, ["state", "vacuum", "--json"])
    assert r.exit_code == 0, r.output
    after = json.loads(r.stdout)["after"]
    assert after["file"] < before["file"] / 3 and after["wal"] == 0 and after["free"] == 0
    assert ids(store, "runs") == {"stuck"}

    r = run.invoke(main, ["state", "backup", str(tmp_path / "b.sqlite3")])
    assert r.exit_code == 0 and r.stdout.startswith(f"backed up {store.path} to {tmp_path / 'b.sqlite3'}")
    again = run.invoke(main, ["state", "backup", str(tmp_path / "b.sqlite3")])
    assert again.exit_code == 1 and "--force" in again.stderr and "Traceback" not in again.output
    assert run.invoke(main, ["state", "backup", "--force", str(tmp_path / "b.sqlite3")]).exit_code == 0


@pytest.mark.subprocess
def test_backup_as_the_installed_script(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    fill(store, 5, "s")
    env = script_env(WILLO_STATE_DIR=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = subprocess.run(
        [*script(), "state", "backup", str(tmp_path / "copy.sqlite3")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert rows(tmp_path / "copy.sqlite3") == rows(store.path)


def test_vacuum_reports_sizes(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    fill(store, 50, "v")
    info = vacuum(store)
    assert set(info) == {"before", "after"} and info["after"]["wal"] == 0
