"""The state store's group commit (issue 16.5): small writes made at once by many
threads (a foreach's journal rows, the shared budget's reservations) share one
transaction, and each caller returns only once its own write is on disk."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from connector.errors import QuotaExhausted
from connector.http.deadline import Attempt, _Watchdog
from connector.http.pacing import SharedPacer
from connector.state.budget import Budget, Limits, usage
from connector.state.leases import LeaseLost
from connector.state.store import StateStore

QUOTA_ONLY = Limits(0, 0, 1_000_000)


def _hold_first_transaction(store: StateStore) -> tuple[threading.Thread, threading.Event]:
    """A write whose op holds its transaction open until the returned event is set:
    whatever is written meanwhile queues behind it, and goes in the next batch."""
    inside, release = threading.Event(), threading.Event()

    def slow(db: sqlite3.Connection) -> None:
        inside.set()
        assert release.wait(10)

    first = threading.Thread(target=store.write, args=(slow,))
    first.start()
    assert inside.wait(10)
    return first, release


def _committed(store: StateStore, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """What another connection sees: only what is committed."""
    with sqlite3.connect(store.path) as other:
        return list(other.execute(sql, args))


def test_writes_queued_at_once_share_one_transaction_and_each_returns_its_own_result(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    budget = Budget(store)
    budget.reserve("acct", QUOTA_ONLY)  # the budget's row exists: each reservation is one UPDATE
    first, release = _hold_first_transaction(store)
    results: dict[int, tuple[int, int]] = {}

    def reserve(n: int) -> None:
        got = budget.reserve("acct", QUOTA_ONLY).used_today
        # on disk when it returns: another connection sees at least this count
        results[n] = (got, _committed(store, "SELECT day_used FROM budgets WHERE account = 'acct'")[0][0])

    threads = [threading.Thread(target=reserve, args=(n,)) for n in range(7)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # they queue behind the open transaction
    assert not results  # none returned before its write was committed
    before = store._group.transactions
    release.set()
    for t in [first, *threads]:
        t.join(10)
    assert sorted(got for got, _ in results.values()) == list(range(2, 9))  # each its own count
    assert all(seen >= got for got, seen in results.values())
    assert store._group.transactions - before == 1  # the seven queued reservations: one transaction
    assert usage(store, "acct")["used_today"] == 8


def test_an_op_that_raises_fails_alone_and_the_others_of_its_batch_are_written(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    run = store.new_run("wf", "wf", "", {}, None, {}, hold=True)
    lost = store.new_run("wf", "wf", "", {}, None, {})  # its lease was never ours
    budget = Budget(store)
    budget.reserve("acct", QUOTA_ONLY)
    first, release = _hold_first_transaction(store)
    outcome: dict[str, Any] = {}

    def fence(run_id: str):
        def check(db: sqlite3.Connection) -> None:
            store.leases.check(f"run:{run_id}", db)

        check.key = run_id  # type: ignore[attr-defined]
        return check

    def broken(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO budget_slots (account, at) VALUES ('broken', 0)")
        raise ValueError("the op fails after writing")

    def call(name: str, fn) -> None:
        try:
            outcome[name] = fn()
        except Exception as exc:
            outcome[name] = exc

    calls = {
        "row 1": lambda: store.mark_unit(run, "s", 1, "a", "sending", guard=fence(run)),
        "broken": lambda: store.write(broken),
        "lost lease": lambda: store.mark_unit(lost, "s", 0, "a", "sending", guard=fence(lost)),
        "reserve": lambda: budget.reserve("acct", QUOTA_ONLY).used_today,
        "row 2": lambda: store.mark_unit(run, "s", 2, "a", "sending", guard=fence(run)),
    }
    threads = []
    for name, fn in calls.items():  # queued in this order, behind the open transaction
        threads.append(threading.Thread(target=call, args=(name, fn)))
        threads[-1].start()
        time.sleep(0.05)
    release.set()
    for t in [first, *threads]:
        t.join(10)
    assert isinstance(outcome["broken"], ValueError)
    assert isinstance(outcome["lost lease"], LeaseLost)
    assert outcome["row 1"] is None and outcome["row 2"] is None and outcome["reserve"] == 2
    assert set(store.units(run)) == {("s", 1), ("s", 2)} and store.units(lost) == {}
    assert _committed(store, "SELECT 1 FROM budget_slots WHERE account = 'broken'") == []  # rolled back
    assert usage(store, "acct")["used_today"] == 2


def test_reservations_from_many_threads_and_two_stores_count_every_request_exactly(tmp_path: Path) -> None:
    """Eight threads on each of two store objects (two group commits, as two processes
    would have) reserve at once against a quota of 300: exactly 300 are granted, and
    the day's count is exactly what was granted."""
    stores = [StateStore(tmp_path), StateStore(tmp_path)]
    limits = Limits(0, 0, 300)
    granted: list[int] = []
    refused: list[int] = []
    lock = threading.Lock()

    def worker(store: StateStore) -> None:
        pacer = SharedPacer(store, "acct", limits, on_quota="fail")
        for _ in range(25):
            try:
                pacer.acquire()
            except QuotaExhausted:
                with lock:
                    refused.append(1)
                continue
            with lock:
                granted.append(1)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert (len(granted), len(refused)) == (300, 100)
    assert usage(stores[0], "acct")["used_today"] == 300
    assert sum(s._group.transactions for s in stores) < 400  # some reservations shared a transaction


WRITER = r"""
import sys, threading
from connector.state.budget import Budget, Limits
from connector.state.store import StateStore

store = StateStore(sys.argv[1])
run = store.new_run("wf", "wf", "", {}, None, {}, hold=True)
budget = Budget(store)
out = threading.Lock()
print(run, flush=True)


def say(line):
    with out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def writer(n):
    for i in range(100_000):
        item = n * 100_000 + i
        store.mark_unit(run, "s", item, "a", "sending", inputs={"i": item})
        say(f"sending {item}")
        used = budget.reserve("acct", Limits(0, 0, 10**9)).used_today
        say(f"reserved {used}")
        store.mark_unit(run, "s", item, "a", "succeeded", output={"i": item})
        say(f"succeeded {item}")


for n in range(8):
    threading.Thread(target=writer, args=(n,), daemon=True).start()
threading.Event().wait()
"""


def test_a_process_killed_mid_batch_keeps_every_write_whose_caller_returned(tmp_path: Path) -> None:
    """Eight threads journal and reserve as fast as they can; each says what it wrote
    once the write returned. SIGKILL at a random moment (mid-batch, mid-commit): every
    write reported is on disk, and the file is whole."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    stdout = proc.stdout
    run = stdout.readline().strip()
    reported: list[list[str]] = []
    enough = threading.Event()

    def read() -> None:
        for line in stdout:  # to the end: what it said before it died, too
            reported.append(line.split())
            if len(reported) >= 1500:
                enough.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    enough.wait(60)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    reader.join(10)
    assert len(reported) >= 1500
    store = StateStore(tmp_path)
    assert store.query("PRAGMA integrity_check")[0][0] == "ok"
    units = {item: row["status"] for (_, item), row in store.units(run).items()}
    for what, value in reported:
        if what == "sending":
            assert units.get(int(value)) in ("sending", "succeeded"), value
        elif what == "succeeded":
            assert units.get(int(value)) == "succeeded", value
    most = max(int(v) for what, v in reported if what == "reserved")
    assert usage(store, "acct")["used_today"] >= most  # every reservation that returned was counted


def test_the_quota_reservation_is_on_disk_before_the_request_leaves(
    sandbox, tmp_path: Path, monkeypatch
) -> None:
    """From another connection, as each request is about to leave (after the budget),
    the day's count already includes it: a process killed then has counted it, and
    the quota is never over-spent."""
    from connector.engines.local import LocalExecutor
    from connector.http import client
    from connector.http.client import Settings
    from connector.workflows.model import load
    from connector.workflows.runner import Runner
    from connector.workflows.runtime import Connector

    store = StateStore(tmp_path / "state")
    counted: list[tuple[int, int]] = []
    lock = threading.Lock()
    sent = [0]
    send_once = client.Transport._send_once

    def spy(self, *args, **kwargs):
        with lock:
            sent[0] += 1
            n = sent[0]
        counted.append((n, _committed(store, "SELECT day_used FROM budgets WHERE account = 'acct'")[0][0]))
        return send_once(self, *args, **kwargs)

    monkeypatch.setattr(client.Transport, "_send_once", spy)
    conn = Connector(
        settings=Settings.from_env(rate="0"), pacer=SharedPacer(store, "acct", Limits(0, 0, 1000))
    )
    wf_path = tmp_path / "wf.yaml"
    wf_path.write_text(
        "workflow: 1\nname: quota\nsteps:\n  - id: pages\n    use: willo.list_languages\n"
        '    foreach: "{{ inputs.pages }}"\n    concurrency: 8\n    with: {page: "{{ item }}", page_size: 1}\n'
    )
    result = Runner(
        conn, load(wf_path, conn.catalog), store=store, progress=False, executor=LocalExecutor()
    ).start({"pages": list(range(1, 13))})
    assert result.status == "succeeded", result.error
    assert len(counted) == 12 and all(day >= n for n, day in counted)
    assert usage(store, "acct")["used_today"] == 12


def test_the_deadline_watchdog_wakes_for_an_earlier_deadline() -> None:
    """The watchdog sleeps until the earliest deadline and is not woken for later ones;
    an attempt whose deadline comes before every other still expires on time."""
    dog = _Watchdog()
    late = Attempt(60.0)
    dog.watch(late)  # the watchdog now sleeps for a minute
    time.sleep(0.1)
    soon = Attempt(0.2)
    dog.watch(soon)
    waited = 0.0
    while not soon.expired and waited < 10:
        time.sleep(0.05)
        waited += 0.05
    assert soon.expired and not late.expired
    late.finish()


@pytest.mark.parametrize("count", [1, 50])
def test_finished_attempts_are_forgotten_as_new_ones_are_watched(count: int) -> None:
    dog = _Watchdog()
    for _ in range(count):
        attempt = Attempt(60.0)
        dog.watch(attempt)
        attempt.finish()
    dog.watch(Attempt(60.0))
    assert len(dog._heap) == 1  # not one entry per request for a minute
