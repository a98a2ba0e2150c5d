"""Polling triggers: one ledger per account, trigger and options.

The ledger of a polling trigger (one per account, trigger id and options: two
accounts never share a cursor or a seen set) lives in the state store: a cursor
(the newest ``order`` value covered, compared as a time, not as text: see
:func:`order_key`), the keys already seen, and the events emitted. New items, their
seen keys, the cursor and the queued events are written in one transaction, so a
crash between fetching and committing repeats nothing and loses nothing, and two
pollers of one trigger never emit an item twice. A first poll that finds nothing
leaves no cursor: the next poll reads every page (all of it is new). Events are then
dispatched from the queue (:mod:`.dispatch`); a queued event survives a crash and is
dispatched at the next start.

Seen keys are pruned only when both older than ``WILLO_SEEN_WINDOW_DAYS`` (default
90) and older than the cursor, which excludes them anyway; a poller prunes after a
poll at most hourly (a prune reads the ledger's every key).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector import telemetry
from connector.catalog import schemas
from connector.catalog.types import Manifest
from connector.connections import DEFAULT
from connector.errors import BadRequest, ConfigError, InputError, PluginError, short
from connector.state.store import StateStore, dumps
from connector.workflows import expressions
from connector.workflows.runtime import ActionContext, Connector

log = logging.getLogger(__name__)

PAGE_SIZE = 30
DEFAULT_WINDOW_DAYS = 90.0
PRUNE_EVERY = 3600.0  # seconds between a poller's prunes of its seen keys
#: A timestamp already in the form :func:`order_key` gives (UTC, six-digit fraction; a
#: year before 1000 comes back unpadded from strftime, so it takes the long way)
_CANONICAL = re.compile(r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def order_key(value: Any) -> str | None:
    """A polling ``order`` value as a string that sorts as the value does: a
    timestamp as UTC with six-digit microseconds (DRF drops the fraction when
    microseconds are 0, and ``...:16Z`` sorts after ``...:16.5Z`` as text), an integer
    zero-padded, anything else as it is; None for a missing value."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) and abs(value) < 10**30:
        return f"{value + 10**30:031d}"
    text = str(value)
    if _CANONICAL.fullmatch(text):  # as it would come back (or, not a date, as it is)
        return text
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return text
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cursor_value(key: str | None) -> Any:
    """The cursor as a poll handler sees it: an integer back as an integer, a timestamp
    as UTC ISO 8601 with microseconds (``order_key`` undone where it padded)."""
    if key is not None and len(key) == 31 and key.isdigit():
        return int(key) - 10**30
    return key


def ledger_name(trigger_id: str, options: Mapping[str, Any], account: str | None = None) -> str:
    """The ledger of one trigger with one set of options, for one account
    (:attr:`connector.connections.Account.id`; None: the name ledgers had before
    accounts, which the ``default`` connection adopts)."""
    if account is None:
        if not options:
            return trigger_id
        digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
        return f"{trigger_id}#{digest}"
    text = json.dumps([account, options], sort_keys=True)
    return f"{trigger_id}#{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def adopt_ledger(store: StateStore, legacy: str, name: str, account: str) -> bool:
    """Give a ledger written before accounts (``legacy``) to ``account`` as ``name``,
    its seen keys and queued events with it; False when there is none to adopt (or
    ``name`` exists already)."""
    with store.tx() as db:
        if db.execute("SELECT 1 FROM triggers WHERE name = ?", (name,)).fetchone():
            return False
        if not db.execute("SELECT 1 FROM triggers WHERE name = ? AND account IS NULL", (legacy,)).fetchone():
            return False
        db.execute("UPDATE triggers SET name = ?, account = ? WHERE name = ?", (name, account, legacy))
        db.execute("UPDATE seen SET name = ? WHERE name = ?", (name, legacy))
        db.execute(
            "UPDATE events SET trigger = ?, account = ? WHERE source = 'poll' AND trigger = ?"
            " AND account = ''",
            (name, account, legacy),
        )
    log.info("%s: the ledger kept before accounts is now %s's (%s)", legacy, account, name)
    return True


def check_options(manifest: Manifest, options: Mapping[str, Any]) -> None:
    problems = schemas.errors(dict(options), manifest.input_schema)
    if problems:
        text = "; ".join(f"{p or '/'}: {m}" for p, m in problems)
        raise InputError(f"{manifest.id}: --with {text}")


@dataclass
class PollResult:
    events: list[dict[str, Any]]
    requests: int
    first: bool
    #: with ``poll(take=True)``: the events queued, already taken for dispatch
    #: (:meth:`connector.triggers.dispatch.Dispatcher.deliver`)
    taken: list[dict[str, Any]] = field(default_factory=list)


class Poller:
    """One polling trigger with its options, backed by its ledger."""

    def __init__(
        self, conn: Connector, store: StateStore, trigger_id: str, options: Mapping[str, Any] | None = None
    ):
        self.conn = conn
        self.store = store
        self.manifest = conn.catalog.get(trigger_id, "trigger")
        if self.manifest.data["strategy"] != "polling":
            raise InputError(f"{trigger_id} is a webhook trigger; use `willo-connector listen`")
        self.options = dict(options or {})
        check_options(self.manifest, self.options)
        self.window_days = seen_window_days()
        self.spec = self.manifest.data["polling"]
        self._ordering_honoured: bool | None = None
        self._pruned_at: float | None = None  # (monotonic) the last prune after a poll
        self.account = conn.account.id
        self.name = ledger_name(self.manifest.id, self.options, self.account)
        if conn.connection_name == DEFAULT:
            adopt_ledger(store, ledger_name(self.manifest.id, self.options), self.name, self.account)
        with store.tx() as db:
            cur = db.execute(
                "INSERT INTO triggers (name, trigger, options, updated_at, account) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (self.name, self.manifest.id, dumps(self.options), time.time(), self.account),
            )
            if cur.rowcount:
                self._changed_account(db, conn.connection_name)

    def _changed_account(self, db: Any, connection: str) -> None:
        """A new ledger for a connection that polled this trigger under another key or
        base URL: say so (it starts afresh: its first poll records what exists)."""
        other = db.execute(
            "SELECT account FROM triggers WHERE trigger = ? AND options = ? AND account LIKE ?"
            " AND account != ? ORDER BY updated_at DESC LIMIT 1",
            (self.manifest.id, dumps(self.options), f"{connection}/%", self.account),
        ).fetchone()
        if other is not None:
            log.warning(
                "%s: connection %s now names account %s (its key or base URL changed; it was %s): "
                "this account's ledger starts afresh, and its first poll emits nothing",
                self.manifest.id,
                connection,
                self.account,
                other["account"],
            )

    # ------------------------------------------------------------------ fetching

    def _inputs(self) -> dict[str, Any]:
        rendered = expressions.render(
            self.spec.get("with") or {}, {"with": self.options}, omit_undefined=True
        )
        return {k: v for k, v in rendered.items() if v not in (None, "")}

    def _matches(self, item: Mapping[str, Any]) -> bool:
        return all(item.get(k) == v for k, v in (self.spec.get("filter") or {}).items())

    def state(self) -> dict[str, Any]:
        row = self.store.query("SELECT * FROM triggers WHERE name = ?", (self.name,))[0]
        return dict(row)

    def fetch(self, cursor: str | None, first: bool, backfill: bool) -> tuple[list[dict[str, Any]], int]:
        """Items newest first, and the requests it took.

        Pages are read until one holds an item strictly older than the point already
        covered (the cursor; on a first poll, the newest item): an item tied with it
        may lie beyond the first page. Every page is read when there is no such point:
        a backfill, a trigger without ``order``, or a later poll whose first poll found
        nothing (everything listed now is new). A plugin's poll handler fetches for
        itself."""
        if "handler" in self.spec:
            return self._fetch_from_handler(cursor)
        before = self.conn.client.requests_sent
        order = self.spec.get("order")
        inputs = {**self._inputs(), "page_size": PAGE_SIZE}
        items: list[dict[str, Any]] = []
        everything = not order or (first and backfill) or (not first and cursor is None)
        newest: str | None = None
        page = 1
        while True:
            try:
                result = self.conn.call(self.spec["action"], {**inputs, "page": page}).output
            except BadRequest as exc:
                raise self._refused(exc) from None
            batch = result.get("results") or []
            items.extend(batch)
            if not result.get("next"):
                break
            if not everything:
                keys = [k for k in (order_key(i.get(order)) for i in batch) if k is not None]
                newest = max([*keys, *([newest] if newest else [])], default=None)
                target = cursor if cursor is not None else newest
                if (
                    target is not None
                    and any(k < target for k in keys)
                    and self._sorted_as_asked(inputs, items)
                ):
                    break
            page += 1
        return items, self.conn.client.requests_sent - before

    def _fetch_from_handler(self, cursor: str | None) -> tuple[list[dict[str, Any]], int]:
        """A plugin's poll handler: ``poll(options, client, cursor) -> items``."""
        before = self.conn.client.requests_sent
        plugin, fn = self.conn.poll_handler(self.manifest)
        client = ActionContext(self.conn, self.manifest)
        given = cursor_value(cursor)
        found = self.conn.run_plugin_code(
            self.manifest, plugin, "poll handler", lambda: list(fn(dict(self.options), client, given))
        )
        items = [i for i in found if isinstance(i, dict)]
        if len(items) != len(found):
            err = PluginError("poll handler returned items that are not objects")
            err.attribute(self.manifest.id, plugin)
            raise err
        if self.spec.get("order"):  # newest first, as a list action gives them
            items.sort(key=lambda i: order_key(i.get(self.spec["order"])) or "", reverse=True)
        return items, self.conn.client.requests_sent - before

    def _refused(self, exc: BadRequest) -> Exception:
        """A 400 naming an option (django-filter refuses a key that names nothing)."""
        named = {p: m for p, m in exc.field_errors.items() if p.split("/")[0] in self.options}
        if not named:
            return exc
        text = "; ".join(f"{p}: {' '.join(m)}" for p, m in named.items())
        return InputError(f"{self.manifest.id}: --with {text}")

    def _sorted_as_asked(self, inputs: dict[str, Any], items: list[dict[str, Any]]) -> bool:
        """May paging stop at the cursor? Only if the server sorts as asked.

        DRF's OrderingFilter silently ignores a field it does not know, and the list then
        comes in its default order: a page holding the cursor says nothing of the next.
        Items out of order show it at once; otherwise the first item of the reversed
        ordering is asked for, once per poller: the same item both ways means ignored.
        """
        order = self.spec.get("order")
        values = [k for k in (order_key(i.get(order)) for i in items) if k is not None]
        if any(a < b for a, b in itertools.pairwise(values)):
            return False
        if self._ordering_honoured is None:
            wanted = inputs.get("ordering")
            self._ordering_honoured = True
            if isinstance(wanted, str) and wanted and items:
                flipped = wanted[1:] if wanted.startswith("-") else f"-{wanted}"
                probe = {**inputs, "ordering": flipped, "page_size": 1, "page": 1}
                first = (self.conn.call(self.spec["action"], probe).output.get("results") or [{}])[0]
                same = first.get(self.spec["id"]) == items[0].get(self.spec["id"])
                self._ordering_honoured = not same or order_key(first.get(order)) == order_key(
                    items[-1].get(order)
                )
                if not self._ordering_honoured:
                    log.warning(
                        "%s: the server ignores ordering=%s; every poll reads every page", self.name, wanted
                    )
        return self._ordering_honoured

    # ------------------------------------------------------------------ polling

    def poll(self, backfill: bool = False, take: bool = False) -> PollResult:
        """Fetch, and commit new items as queued events in one transaction. With
        ``take``, that transaction also takes them for this process's dispatcher (leased
        and marked ``dispatching``, as a claim does: a crash leaves them to be queued
        again, see :func:`~connector.triggers.dispatch.requeue_interrupted`), and they
        come back in :attr:`PollResult.taken`, ready to deliver without reading them back."""
        state = self.state()
        first = not state["initialized"]
        items, requests = self.fetch(order_key(state["cursor"]), first, backfill)
        id_field, order = self.spec["id"], self.spec.get("order")
        # (item, its key, its order key), each key computed once; oldest first
        candidates = [
            (i, str(i[id_field]), order_key(i.get(order)) if order else None)
            for i in items
            if self._matches(i) and i.get(id_field) is not None
        ]
        if order:
            candidates.sort(key=lambda c: (c[2] is not None, c[2] or "", c[1]))
        else:
            candidates.reverse()  # lists come newest first
        emitted: list[dict[str, Any]] = []
        queued: list[tuple[int, str]] = []  # (event id, item key) for the log
        taken: list[dict[str, Any]] = []
        now = time.time()
        with self.store.tx() as db:
            last_id = db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0] if take else 0
            row = db.execute(
                "SELECT initialized, cursor FROM triggers WHERE name = ?", (self.name,)
            ).fetchone()
            first = not row["initialized"]  # another poller may have initialised meanwhile
            cursor = order_key(row["cursor"])
            todo = [
                c
                for c in candidates  # older than what was already covered: never re-fire
                if first or cursor is None or c[2] is None or c[2] >= cursor
            ]
            seen = self._seen(db, [key for _, key, _ in todo])
            new_seen: list[tuple[Any, ...]] = []
            new_events: list[tuple[Any, ...]] = []
            for item, key, ord_value in todo:
                if key in seen:
                    continue
                seen.add(key)
                new_seen.append((self.name, key, ord_value, now))
                if not first or backfill:
                    event = self._validated(item)
                    new_events.append((self.account, self.name, key, dumps(event), now))
                    emitted.append(event)
            db.executemany(
                "INSERT INTO seen (name, item, ord, seen_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                new_seen,
            )
            # taken: queued and claimed at once (``dispatching``, its first attempt)
            status, attempts = ("dispatching", 1) if take else ("queued", 0)
            added = db.executemany(
                "INSERT INTO events (source, account, trigger, dedupe, payload, status, attempts,"
                f" received_at) VALUES ('poll', ?, ?, ?, ?, '{status}', {attempts}, ?)"
                " ON CONFLICT DO NOTHING",
                new_events,
            ).rowcount
            if added > 0 and take:  # every event after last_id is this transaction's: the only writer
                from connector.triggers.dispatch import take_inserted

                taken = take_inserted(self.store, db, last_id, "poll", self.name, self.account, now)
            if added > 0 and log.isEnabledFor(logging.INFO):  # each event's id, for its log line
                queued = self._event_ids(db, [e[2] for e in new_events], now)
            newest = max(filter(None, (c[2] for c in candidates)), default=None)
            new_cursor = max(filter(None, [cursor, newest]), default=None)
            db.execute(
                "UPDATE triggers SET initialized = 1, cursor = ?, polls = polls + 1,"
                " requests = requests + ?, updated_at = ? WHERE name = ?",
                (new_cursor, requests, now, self.name),
            )
        self._prune_now_and_then(first)
        telemetry.inc("polls", trigger=self.manifest.id)
        if added > 0:
            telemetry.inc("events_emitted", added, source="poll")
        if queued:
            for event_id, key in queued:
                with telemetry.bind(account=self.account, trigger=self.manifest.id, event_id=event_id):
                    log.info("event %s emitted: %s %s", event_id, self.spec["id"], short(key, 80))
        if taken:  # each with its payload as queued, and parsed: the item itself
            by_key = {e[2]: (e[3], item) for e, item in zip(new_events, emitted, strict=True)}
            for event in taken:
                event["payload_json"], event["payload"] = by_key[event["dedupe"]]
        return PollResult(emitted, requests, first, taken)

    def _event_ids(self, db: Any, keys: list[str], received_at: float) -> list[tuple[int, str]]:
        """``(id, key)`` of the events this poll queued (for the log)."""
        found: list[tuple[int, str]] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found += [
                (row["id"], row["dedupe"])
                for row in db.execute(
                    f"SELECT id, dedupe FROM events WHERE source = 'poll' AND trigger = ? AND received_at = ?"
                    f" AND dedupe IN ({marks}) ORDER BY id",
                    (self.name, received_at, *chunk),
                )
            ]
        return found

    def _seen(self, db: Any, keys: list[str]) -> set[str]:
        """Which of ``keys`` this ledger has seen (a few statements for any number)."""
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found |= {
                row["item"]
                for row in db.execute(
                    f"SELECT item FROM seen WHERE name = ? AND item IN ({marks})", (self.name, *chunk)
                )
            }
        return found

    def _validated(self, item: dict[str, Any]) -> dict[str, Any]:
        report = schemas.errors(item, self.manifest.data["output"])  # compiled once
        if report:
            log.warning(
                "%s: event does not match the trigger's schema: %s",
                self.manifest.id,
                "; ".join(f"{p}: {m}" for p, m in report[:3]),
            )
        return item

    def _prune_now_and_then(self, first: bool) -> None:
        """Prune after a poll, at most every ``PRUNE_EVERY`` seconds: a prune reads every
        seen key of the ledger, and keys becoming old enough to go (days old, and behind
        the cursor, which excludes them anyway) can wait that long. Not after a first
        poll: every key is this poll's."""
        now = time.monotonic()
        if first or (self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY):
            return
        self._pruned_at = now
        self.prune()

    def prune(self) -> int:
        days = self.window_days
        cutoff = time.time() - days * 86400
        with self.store.tx() as db:
            cur = db.execute(
                "DELETE FROM seen WHERE name = ? AND seen_at < ? AND ord IS NOT NULL AND ord <"
                " (SELECT cursor FROM triggers WHERE name = ?)",
                (self.name, cutoff, self.name),
            )
            return cur.rowcount

    def reset(self) -> None:
        reset_ledger(self.store, self.name)


def seen_window_days() -> float:
    """``WILLO_SEEN_WINDOW_DAYS``: a finite number of days, not below 0."""
    raw = os.environ.get("WILLO_SEEN_WINDOW_DAYS", "").strip()
    if not raw:
        return DEFAULT_WINDOW_DAYS
    try:
        days = float(raw)
    except ValueError:
        days = math.nan
    if not math.isfinite(days) or days < 0:
        raise ConfigError(f"WILLO_SEEN_WINDOW_DAYS={short(raw)}: give a number of days (default 90)")
    return days


def reset_ledger(store: StateStore, name: str) -> None:
    with store.tx() as db:
        db.execute("DELETE FROM seen WHERE name = ?", (name,))
        db.execute("DELETE FROM events WHERE trigger = ? AND source = 'poll'", (name,))
        db.execute(
            "UPDATE triggers SET initialized = 0, cursor = NULL, polls = 0, requests = 0 WHERE name = ?",
            (name,),
        )
