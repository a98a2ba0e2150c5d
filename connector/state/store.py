"""The state store: one SQLite file (WAL) holding run journals and trigger ledgers.

``WILLO_STATE_DIR`` (or ``--state-dir``) chooses the folder; the default is the
user's XDG state directory, ``$XDG_STATE_HOME/willo-connector``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from connector import redaction
from connector.errors import ConfigError
from connector.state.leases import Leases

#: The tables of the releases before schema versions (0.1.0, then run history and
#: schedules), created where missing by migration step 1. Never edit it: a change of
#: schema is a new step in :data:`MIGRATIONS`.
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    inputs TEXT NOT NULL,
    trigger TEXT,
    settings TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    event_id INTEGER,
    started_at REAL NOT NULL,
    finished_at REAL,
    parent TEXT
);
CREATE TABLE IF NOT EXISTS units (
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    item INTEGER NOT NULL,
    action TEXT NOT NULL,
    status TEXT NOT NULL,
    inputs TEXT,
    output TEXT,
    error TEXT,
    updated_at REAL NOT NULL,
    started_at REAL,
    tries INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, step, item)
);
CREATE TABLE IF NOT EXISTS triggers (
    name TEXT PRIMARY KEY,
    trigger TEXT NOT NULL,
    options TEXT NOT NULL,
    cursor TEXT,
    initialized INTEGER NOT NULL DEFAULT 0,
    polls INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (
    name TEXT NOT NULL,
    item TEXT NOT NULL,
    ord TEXT,
    seen_at REAL NOT NULL,
    PRIMARY KEY (name, item)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    trigger TEXT NOT NULL,
    dedupe TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    error TEXT,
    run_id TEXT,
    received_at REAL NOT NULL,
    failure TEXT,
    failing_since REAL,
    UNIQUE (source, dedupe)
);
CREATE INDEX IF NOT EXISTS events_status ON events (status, next_at);
-- the queue in order: a claim reads the oldest queued events of a source, not all of them
CREATE INDEX IF NOT EXISTS events_queue ON events (source, status, id);
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    last_slot TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    resource TEXT NOT NULL,
    owner TEXT NOT NULL,
    shared INTEGER NOT NULL DEFAULT 0,
    acquired_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (resource, owner)
);
CREATE INDEX IF NOT EXISTS leases_owner ON leases (owner);
CREATE TABLE IF NOT EXISTS subscriptions (
    webhook TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    trigger TEXT NOT NULL,
    url TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""

#: What the first release of the schema versions (3) adds: every row that belongs to a
#: Willo account says which (``account``: a connection's name and a hash of its base URL
#: and key fingerprint, see :mod:`connector.connections`; ``''`` or NULL for rows written
#: before, which the ``default`` connection adopts). Events are unique per account and
#: trigger (a participant listed by two triggers, or by two accounts, is two events).
_ACCOUNTS = (
    "ALTER TABLE runs ADD COLUMN account TEXT",
    "ALTER TABLE units ADD COLUMN account TEXT",
    "ALTER TABLE triggers ADD COLUMN account TEXT",
    """CREATE TABLE events_v3 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    account TEXT NOT NULL DEFAULT '',
    trigger TEXT NOT NULL,
    dedupe TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    error TEXT,
    run_id TEXT,
    received_at REAL NOT NULL,
    failure TEXT,
    failing_since REAL,
    UNIQUE (source, account, trigger, dedupe)
)""",
    "INSERT INTO events_v3 (id, source, trigger, dedupe, payload, status, attempts, next_at, error, run_id,"
    " received_at, failure, failing_since) SELECT id, source, trigger, dedupe, payload, status, attempts,"
    " next_at, error, run_id, received_at, failure, failing_since FROM events",
    "DROP TABLE events",
    "ALTER TABLE events_v3 RENAME TO events",
    "CREATE INDEX IF NOT EXISTS events_status ON events (status, next_at)",
    "CREATE INDEX IF NOT EXISTS events_queue ON events (source, status, id)",
    """CREATE TABLE subscriptions_v3 (
    account TEXT NOT NULL DEFAULT '',
    webhook TEXT NOT NULL,
    owner TEXT NOT NULL,
    trigger TEXT NOT NULL,
    url TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (account, webhook)
)""",
    "INSERT INTO subscriptions_v3 (webhook, owner, trigger, url, created_at)"
    " SELECT webhook, owner, trigger, url, created_at FROM subscriptions",
    "DROP TABLE subscriptions",
    "ALTER TABLE subscriptions_v3 RENAME TO subscriptions",
    # the rate budget of each account, shared by every process (connector.state.budget)
    """CREATE TABLE IF NOT EXISTS budgets (
    account TEXT PRIMARY KEY,
    label TEXT NOT NULL DEFAULT '',
    per_second INTEGER NOT NULL DEFAULT 0,
    per_minute INTEGER NOT NULL DEFAULT 0,
    per_day INTEGER NOT NULL DEFAULT 0,
    slack REAL NOT NULL,
    cut INTEGER NOT NULL DEFAULT 0,
    hold_until REAL NOT NULL DEFAULT 0,
    relaxed_at REAL NOT NULL DEFAULT 0,
    throttles INTEGER NOT NULL DEFAULT 0,
    day TEXT NOT NULL DEFAULT '',
    day_used INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL DEFAULT 0
)""",
    "CREATE TABLE IF NOT EXISTS budget_slots (account TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS budget_slots_at ON budget_slots (account, at)",
)

#: Columns added to the first release's tables before schema versions: (table, column,
#: declaration); a file of a release before versions may have any of them (it added
#: them itself when it opened an older file), migration step 2 adds those it lacks.
ADDED_COLUMNS = (
    ("events", "failure", "TEXT"),  # transient | permanent | blocked: why it last failed
    ("events", "failing_since", "REAL"),  # first failure of the current retry horizon
    ("runs", "parent", "TEXT"),  # the run a `rerun` repeats
    ("units", "started_at", "REAL"),  # first time the unit was journaled
    ("units", "tries", "INTEGER NOT NULL DEFAULT 0"),  # tries made within its runs
)


def _add_columns(*columns: tuple[str, str, str]) -> Callable[[sqlite3.Connection], None]:
    """A step adding columns that files of the unversioned release may already have
    (it added them itself when it opened an older file)."""

    def step(db: sqlite3.Connection) -> None:
        for table, column, decl in columns:
            have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    return step


def _statements(*sql: str) -> Callable[[sqlite3.Connection], None]:
    def step(db: sqlite3.Connection) -> None:
        for statement in sql:
            db.execute(statement)

    return step


def _keep_sequence(
    table: str, step: Callable[[sqlite3.Connection], None]
) -> Callable[[sqlite3.Connection], None]:
    """Run ``step`` (which rebuilds ``table``) keeping its AUTOINCREMENT counter: ids of
    deleted rows are never handed out again (a run names its event by id)."""

    def wrapped(db: sqlite3.Connection) -> None:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        step(db)
        if row is not None:
            db.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", (row[0], table))
            if not db.execute("SELECT 1 FROM sqlite_sequence WHERE name = ?", (table,)).fetchone():
                db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, row[0]))

    return wrapped


#: The schema's history, oldest first: step ``i`` takes a file from version ``i`` to
#: ``i + 1`` (``PRAGMA user_version``). A file without a version (0) is new, or was
#: written before versions (0.1.0): step 1 creates what it lacks. Add a step to change
#: the schema; never edit one that has shipped.
MIGRATIONS: tuple[tuple[str, Callable[[sqlite3.Connection], None]], ...] = (
    ("the tables of the first release", _statements(*(s for s in SCHEMA.split(";") if s.strip()))),
    ("columns added before schema versions", _add_columns(*ADDED_COLUMNS)),
    ("rows keyed by account; the shared rate budget", _keep_sequence("events", _statements(*_ACCOUNTS))),
    (
        "budget slots whose request is in flight",
        _add_columns(("budget_slots", "flying", "INTEGER NOT NULL DEFAULT 0")),
    ),
)
#: The version this release writes.
VERSION = len(MIGRATIONS)


class NewerStore(ConfigError):
    """The state file was written by a newer release (a schema this one does not know)."""


def migrate(conn: sqlite3.Connection, path: Path | str) -> int:
    """Bring the file open on ``conn`` to :data:`VERSION` (in one transaction, so two
    processes opening it at once migrate it once); the version it had."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found == VERSION:
        return found
    _refuse_newer(found, path)
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])  # another process may have
        _refuse_newer(found, path)
        for _what, step in MIGRATIONS[found:]:
            step(conn)
        conn.execute(f"PRAGMA user_version = {VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found


def _wal(conn: sqlite3.Connection, wait: float = 30.0) -> None:
    """Put the file in WAL mode. Switching a file still in rollback mode (one written
    by hand, or restored from a copy) needs it to itself, and SQLite answers "locked"
    at once, without its busy handler, while another process holds it (migrating it):
    wait for that as the busy handler would."""
    deadline = time.monotonic() + wait
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _version_of(path: Path) -> int:
    """The schema version of an existing file, read without changing it (0 if none)."""
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def _refuse_newer(found: int, path: Path | str) -> None:
    if found > VERSION:
        raise NewerStore(
            f"state store {path} has schema version {found}, written by a newer willo-connector "
            f"(this one reads up to version {VERSION}); upgrade willo-connector, or point "
            "WILLO_STATE_DIR (--state-dir) at another folder. The file was not changed."
        )


def default_dir() -> Path:
    explicit = os.environ.get("WILLO_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "willo-connector"


#: One encoder for every row (``json.dumps`` with options builds one per call).
_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str).encode


def dumps(value: Any) -> str:
    return _ENCODE(value)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class StateStore:
    """Thread-safe access to the SQLite state file (a connection per thread)."""

    def __init__(self, directory: str | Path | None = None):
        self.dir = Path(directory) if directory else default_dir()
        self.path = self.dir / "state.sqlite3"
        self._local = threading.local()
        # One writer at a time within the process: threads queue here (FIFO, no sleep)
        # instead of in SQLite's busy handler, whose back-off sleeps up to 100 ms.
        self._write_lock = threading.Lock()
        self._leases: Leases | None = None
        self._leases_lock = threading.Lock()
        self._group = GroupCommit(self)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            _refuse_newer(_version_of(self.path), self.path)  # before WAL rewrites its header
            self.migrated_from = migrate(self._conn(), self.path)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"state store {self.path}: {exc} (set WILLO_STATE_DIR or --state-dir to a writable folder)"
            ) from None

    @property
    def leases(self) -> Leases:
        """This store's lease owner (one per store object, i.e. per process)."""
        if self._leases is None:
            with self._leases_lock:
                if self._leases is None:
                    self._leases = Leases(self)
        return self._leases

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            _wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error)."""
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return list(self._conn().execute(sql, args))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ------------------------------------------------------------------ runs

    def new_run(
        self,
        workflow: str,
        name: str,
        source: str,
        inputs: Any,
        trigger: Any,
        settings: dict[str, Any],
        event_id: int | None = None,
        parent: str | None = None,
        hold: bool = False,
        account: str | None = None,
    ) -> str:
        """A new run, ``running``; with ``hold``, this process takes its lease at once;
        ``parent`` is the run it repeats (``rerun``); ``account`` the account its steps use
        unless a step names another."""
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]
        with self.tx() as db:
            if hold:
                self.leases.acquire(f"run:{run_id}", db=db)
            db.execute(
                "INSERT INTO runs (id, workflow, name, source, status, inputs, trigger, settings,"
                " event_id, started_at, parent, account)"
                " VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    workflow,
                    name,
                    source,
                    dumps(redaction.scrub_value(inputs)),
                    dumps(redaction.scrub_value(trigger)),
                    dumps(settings),
                    event_id,
                    time.time(),
                    parent,
                    account,
                ),
            )
        return run_id

    def run(self, run_id: str) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return rows[0] if rows else None

    def find_run(self, prefix: str) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM runs WHERE id LIKE ? ORDER BY started_at", (prefix + "%",))

    def runs(self, limit: int = 50) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))

    def set_run(self, run_id: str, status: str, error: str | None = None) -> None:
        finished = time.time() if status != "running" else None
        error = redaction.scrub(error) if error else error
        with self.tx() as db:
            db.execute(
                "UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                (status, error, finished, run_id),
            )

    def restart_run(self, run_id: str) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE runs SET status = 'running', error = NULL, finished_at = NULL,"
                " attempts = attempts + 1 WHERE id = ?",
                (run_id,),
            )

    # ------------------------------------------------------------------ units of work

    def units(self, run_id: str) -> dict[tuple[str, int], sqlite3.Row]:
        rows = self.query("SELECT * FROM units WHERE run_id = ?", (run_id,))
        return {(r["step"], r["item"]): r for r in rows}

    def mark_unit(
        self,
        run_id: str,
        step: str,
        item: int,
        action: str,
        status: str,
        inputs: Any = None,
        output: Any = None,
        error: str | None = None,
        tries: int | None = None,
        guard: Callable[[sqlite3.Connection], None] | None = None,
        account: str | None = None,
    ) -> None:
        """Record a unit's state, durably: it is on disk when this returns. Inputs and
        outputs are stored with every registered secret scrubbed; ``started_at`` is the
        first time a unit was marked. ``guard(db)`` runs first in the same transaction (a
        lease fence: it raises to write nothing); a guard with a ``key`` attribute runs
        once per transaction for all rows sharing that key.

        Units journaled at the same time by several threads (a foreach's items) are
        written in one transaction (group commit): each caller still returns only once
        its own row is committed, so nothing durable is given up. ``account``: the
        account it is sent to (kept from the first write that names one)."""
        now = time.time()
        row = (
            run_id,
            step,
            item,
            action,
            status,
            None if inputs is None else redaction.scrub(dumps(inputs)),
            None if output is None else redaction.scrub(dumps(output)),
            redaction.scrub(error) if error else error,
            now,
            now,
            tries or 0,
            account,
        )
        self._group.submit(row, guard)

    def copy_reusable_units(self, source: str, target: str) -> int:
        """Start run ``target`` from what ``source`` achieved: its succeeded units (and
        decided branches) are reused; a unit that may have landed (``sending``,
        ``ambiguous``, or ``sent`` with its 2xx body) is copied as it stands, so that it
        is settled (looked up, or completed from the body) before anything is resent."""
        with self.tx() as db:
            return db.execute(
                "INSERT INTO units (run_id, step, item, action, status, inputs, output, error,"
                " updated_at, started_at, tries, account) SELECT ?, step, item, action, status,"
                " inputs, output, CASE WHEN status = 'succeeded' THEN NULL ELSE error END,"
                " updated_at, started_at, 0, account FROM units"
                " WHERE run_id = ? AND status IN ('succeeded', 'sending', 'ambiguous', 'sent')",
                (target, source),
            ).rowcount


_MARK_UNIT = (
    "INSERT INTO units (run_id, step, item, action, status, inputs, output, error,"
    " updated_at, started_at, tries, account) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (run_id, step, item) DO UPDATE SET status = excluded.status,"
    " inputs = COALESCE(excluded.inputs, units.inputs), output = excluded.output,"
    " error = excluded.error, updated_at = excluded.updated_at,"
    " started_at = COALESCE(units.started_at, excluded.started_at),"
    " tries = MAX(units.tries, excluded.tries),"
    " account = COALESCE(units.account, excluded.account)"
)


class _Entry:
    __slots__ = ("done", "error", "fence", "row", "wake")

    def __init__(self, row: tuple[Any, ...], fence: Callable[[sqlite3.Connection], None] | None):
        self.row = row
        self.fence = fence
        self.done = False  # committed (or failed)
        self.wake = threading.Event()  # done, or asked to lead
        self.error: BaseException | None = None


class GroupCommit:
    """Journal rows written by many threads at once, committed together (group commit):
    a writer finding no commit under way leads: it commits everything queued in one
    transaction, then what queued meanwhile, and after a few rounds hands the lead to
    the oldest waiting writer (a leader's own work is never held up for long). The
    others wait for the commit holding their row. N threads journaling at once pay for
    one transaction, not N, and each returns only once its own row is on disk (or
    raises its own error)."""

    ROUNDS = 2  # batches a leader commits after its own before handing the lead on

    def __init__(self, store: StateStore):
        self.store = store
        self._lock = threading.Lock()
        self._queue: list[_Entry] = []
        self._busy = False
        self.transactions = 0  # (for tests and benchmarks)

    def submit(self, row: tuple[Any, ...], fence: Callable[[sqlite3.Connection], None] | None) -> None:
        entry = _Entry(row, fence)
        with self._lock:
            self._queue.append(entry)
            lead = not self._busy
            self._busy = True
        while True:
            if lead:
                self._lead(entry)
            entry.wake.wait()
            if entry.done:
                break
            entry.wake.clear()  # handed the lead
            lead = True
        if entry.error is not None:
            raise entry.error

    def _lead(self, own: _Entry) -> None:
        rounds = 0
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._busy = False
                    return
            self._commit(batch)
            rounds += 1
            if own.done and rounds >= self.ROUNDS:
                with self._lock:
                    if not self._queue:
                        self._busy = False
                        return
                    self._queue[0].wake.set()  # the oldest waiting writer leads now
                return

    def _commit(self, batch: list[_Entry]) -> None:
        try:
            with self.store.tx() as db:
                self.transactions += 1
                fenced: dict[Any, BaseException | None] = {}  # each fence once a transaction
                rows = []
                for entry in batch:
                    fence = entry.fence
                    if fence is not None:
                        key = getattr(fence, "key", fence)
                        if key not in fenced:
                            try:
                                fence(db)
                                fenced[key] = None
                            except sqlite3.Error:
                                raise  # the transaction is lost: every row of it fails
                            except Exception as exc:  # this fence's refusal (a lost lease)
                                fenced[key] = exc
                        entry.error = fenced[key]
                    if entry.error is None:
                        rows.append(entry.row)
                db.executemany(_MARK_UNIT, rows)
        except BaseException as exc:
            for entry in batch:
                if entry.error is None:
                    entry.error = exc
        finally:
            for entry in batch:
                entry.done = True
                entry.wake.set()
