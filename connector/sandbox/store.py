"""The sandbox's in-memory state: users and their keys, resources, boards."""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.sandbox.tables import Table

DEFAULT_STAGES = ["Invited", "Completed", "Reviewed", "Shortlisted", "Rejected", "Hired"]
RESOURCES = (
    "departments",
    "interviews",
    "participants",
    "message_templates",
    "users",
    "webhooks",
    "categories",
    "interview_templates",
    "children",
)


QUESTION_FIELDS = (
    "text",
    "order",
    "answer_type",
    "max_retakes",
    "max_duration",
    "thinking_time",
    "max_characters",
)


def new_key() -> str:
    return secrets.token_hex(16)


def question(q: dict[str, Any]) -> dict[str, Any]:
    """A question as DRF sends it: every field, ``null`` when empty."""
    return {"key": q.get("key") or new_key(), **{name: q.get(name) for name in QUESTION_FIELDS}}


class Clock:
    """Strictly increasing timestamps, so that ordering by time is stable."""

    def __init__(self) -> None:
        self._last = 0.0
        self._lock = threading.Lock()
        self._backdated = False

    def now(self) -> str:
        """The next timestamp, as DRF writes a DateTimeField: ISO 8601 with ``Z`` and no
        fraction when the microseconds are 0 (``...:16Z``)."""
        with self._lock:
            if self._backdated:  # a second after the last, whole
                t = float(math.floor(self._last)) + 1.0
            else:
                t = max(time.time(), self._last + 1e-6)
            self._last = t
        return datetime.fromtimestamp(round(t, 6), UTC).isoformat().replace("+00:00", "Z")

    @contextmanager
    def backdated(self, seconds: int) -> Iterator[None]:
        """Stamp what is made inside a second apart in whole seconds from ``seconds``
        ago (seed data, there before: clients meet DRF's fractionless form), then go on
        from the clock as before. For a fresh store: what was stamped before is gone."""
        with self._lock:
            self._last = float(math.floor(time.time()) - seconds)
            self._backdated = True
        try:
            yield
        finally:
            with self._lock:
                self._backdated = False


@dataclass
class Store:
    """All state of one sandbox. Guarded by ``lock`` (the server is threaded)."""

    tables: dict[str, Table] = field(default_factory=lambda: {name: Table(name) for name in RESOURCES})
    api_keys: dict[str, str] = field(default_factory=dict)  # api key -> user key
    secrets: dict[str, str] = field(default_factory=dict)  # webhook key -> secret
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    idv: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    clock: Clock = field(default_factory=Clock)
    organisation: str = field(default_factory=new_key)

    def table(self, name: str) -> Table:
        return self.tables[name]

    def insert(self, name: str, record: dict[str, Any]) -> dict[str, Any]:
        record = {**record, "key": record.get("key") or new_key()}
        record = {"key": record.pop("key"), **record}  # key first, as Willo lists it
        record.setdefault("created_at", self.clock.now())
        return self.tables[name].insert(record)

    def update(self, name: str, record: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        """Change ``record`` of table ``name`` (its indexes follow)."""
        return self.tables[name].change(record, changes)

    def versions(self) -> tuple[int, ...]:
        """One number per table that changes with every write to it."""
        return tuple(t.version for t in self.tables.values())

    def add_user(
        self,
        email: str,
        role: str,
        first: str,
        last: str,
        api_key: str | None = None,
        status: str = "active",
        key: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        user = self.insert(
            "users",
            {
                "key": key,
                "email": email,
                "first_name": first,
                "last_name": last,
                "full_name": f"{first} {last}".strip(),
                "role": role,
                "status": status,
            },
        )
        key = api_key or "sk_sandbox_" + secrets.token_hex(16)
        self.api_keys[key] = user["key"]
        return user, key

    def user_for(self, api_key: str) -> dict[str, Any] | None:
        user_key = self.api_keys.get(api_key)
        return self.tables["users"].get(user_key) if user_key else None
