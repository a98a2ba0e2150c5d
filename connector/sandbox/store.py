"""The sandbox's in-memory state: users and their keys, resources, boards."""

from __future__ import annotations

import secrets
import threading
import time
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

    def now(self) -> str:
        with self._lock:
            t = max(time.time(), self._last + 1e-6)
            self._last = t
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
