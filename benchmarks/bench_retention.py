"""Issue 15's store: 5,500 webhook events, each run through examples/review_on_response.yaml
(three units journaled with Willo's answers) against an in-process sandbox, as
`listen` does. The store's files as listen leaves them; then all but the newest 100
events aged 40 days (20 parked events among the old ones, which stay) and the store's
files after `state prune` and `state vacuum`; how long prune, vacuum and an online
backup take; and what a /metrics scrape and /ready cost on that store (they read it
at each request)."""

from __future__ import annotations

import copy
import json
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

sys.path.insert(0, str(ROOT))

EVENTS = 5500
RECENT = 100
PARKED = 20


def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def main(events: int = EVENTS) -> dict[str, float]:
    import logging
    import os

    logging.basicConfig(level=logging.CRITICAL)  # the 20 parked events' lines are expected

    for name in list(os.environ):
        if name.startswith("WILLO_"):
            del os.environ[name]
    from connector.http.client import Settings
    from connector.observe import Probes, inbox_below, store_writable
    from connector.sandbox import Sandbox, SandboxOptions
    from connector.state.store import StateStore
    from connector.state.upkeep import backup, prune, sizes, vacuum
    from connector.triggers.dispatch import Dispatcher, workflow_handler
    from connector.triggers.receiver import Inbox
    from connector.workflows.model import load
    from connector.workflows.runtime import Connector

    tmp = Path(tempfile.mkdtemp())
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")
    box = Sandbox(SandboxOptions(rate_limit=(0, 0)))
    box.start()
    try:
        os.environ.update(WILLO_BASE_URL=box.base_url, WILLO_API_KEY=box.api_key, WILLO_RATE_LIMIT="0")
        conn = Connector(settings=Settings.from_env())
        store = StateStore(tmp / "state")
        wf = load(ROOT / "examples" / "review_on_response.yaml", conn.catalog)
        dispatcher = Dispatcher(conn, store, "webhook", workflow_handler(conn, store, [wf]))
        template = json.loads((ROOT / "examples" / "events" / "new_response.json").read_text())
        inbox = Inbox(store)
        t0 = time.perf_counter()
        for i in range(events):
            event = copy.deepcopy(template)
            event["id"] = f"evt_{i:08d}"
            if i < PARKED:  # Willo does not know this participant: the event is parked
                event["data"]["participant"]["key"] = f"{i:032d}"
            assert inbox.accept({}, json.dumps(event).encode()).status == 202
            dispatcher.one()
        filled = time.perf_counter() - t0
        before = sizes(store)  # as listen leaves it
        with store.tx() as db:  # all but the newest RECENT, 40 days old
            old = time.time() - 40 * 86400
            cut = events - RECENT
            db.execute("UPDATE events SET received_at = ? WHERE id <= ?", (old, cut))
            db.execute("UPDATE runs SET started_at = ?, finished_at = ? WHERE event_id <= ?", (old, old, cut))
        # ageing rewrote most pages in one transaction: checkpoint that WAL away, so that
        # what follows starts from the state listen leaves (a WAL of SQLite's 1,000 pages)
        store.query("PRAGMA wal_checkpoint(TRUNCATE)")
        counts = {r[0]: r[1] for r in store.query("SELECT status, COUNT(*) FROM events GROUP BY status")}
        probes = Probes(store, checks=[store_writable(store), inbox_below(store, 1000)], cache=0)
        scrape = _timed(lambda: probes.exposition(None), 20)
        ready = _timed(probes.ready, 20)
        full_backup = backup(store, tmp / "before-prune.sqlite3")
        t0 = time.perf_counter()
        pruned = prune(store, 30 * 86400)
        prune_s = time.perf_counter() - t0
        after_prune = sizes(store)
        t0 = time.perf_counter()
        vacuum(store)
        vacuum_s = time.perf_counter() - t0
        after_vacuum = sizes(store)
        info = backup(store, tmp / "backup.sqlite3")
        left = {r[0]: r[1] for r in store.query("SELECT status, COUNT(*) FROM events GROUP BY status")}
    finally:
        box.stop()
    out = {
        "events": float(events),
        "fill (runs/s)": events / filled,
        "file before (MB)": before["file"] / 1e6,
        "WAL before (MB)": before["wal"] / 1e6,
        "pruned runs": float(pruned.runs),
        "pruned events": float(pruned.events),
        "prune (s)": prune_s,
        "file after prune (MB)": after_prune["file"] / 1e6,
        "free pages after prune (MB)": after_prune["free"] / 1e6,
        "WAL after prune (MB)": after_prune["wal"] / 1e6,
        "vacuum (s)": vacuum_s,
        "file after vacuum (MB)": after_vacuum["file"] / 1e6,
        "WAL after vacuum (MB)": after_vacuum["wal"] / 1e6,
        "backup before prune (s)": full_backup["seconds"],
        "backup after vacuum (s)": info["seconds"],
        "/metrics scrape before prune (ms)": scrape * 1000,
        "/ready before prune (ms)": ready * 1000,
    }
    print(f"events by status before: {counts}; after prune: {left}")
    for k, v in out.items():
        print(f"{k}: {v:.3f}" if v < 100 else f"{k}: {v:.0f}")
    return out


def _timed(fn, repeat: int) -> float:
    import statistics

    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


if __name__ == "__main__":
    main()
