"""Webhook subscriptions of a listener, made through the catalog's webhook actions.

A listener owns exactly one subscription: the one whose URL is its receiver URL.
At start it reconciles: a subscription of its own left by an earlier crash is
reused (its events and secret updated) and any duplicates are removed, so that
restarts never pile up subscriptions. On exit it removes its subscription.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from connector.errors import NotFound
from connector.state.store import StateStore
from connector.workflows.runtime import Connector

log = logging.getLogger(__name__)


def subscribe(
    conn: Connector, store: StateStore, url: str, events: set[str], secret: str | None
) -> dict[str, Any]:
    """The one subscription for ``url`` with ``events``: reused, updated or created."""
    existing = conn.call("willo.list_webhooks", {"all": True}).output.get("results", [])
    ours = [h for h in existing if h.get("url") == url]
    keep = ours[0] if ours else None
    for extra in ours[1:]:
        log.info("removing duplicate subscription %s", extra["key"])
        _delete(conn, extra["key"])
    wanted = sorted(events)
    if keep is None:
        inputs: dict[str, Any] = {"url": url, "events": wanted, "is_active": True}
        if secret:
            inputs["secret"] = secret
        keep = conn.call("willo.create_webhook", inputs).output
        log.info("subscribed %s to %s", url, ", ".join(wanted))
    elif sorted(keep.get("events", [])) != wanted or secret or not keep.get("is_active", True):
        update: dict[str, Any] = {"webhook": keep["key"], "events": wanted, "is_active": True}
        if secret:
            update["secret"] = secret
        keep = conn.call("willo.update_webhook", update).output
        log.info("reusing subscription %s for %s", keep["key"], url)
    with store.tx() as db:
        db.execute("DELETE FROM subscriptions WHERE url = ?", (url,))
        db.execute(
            "INSERT INTO subscriptions (webhook, owner, trigger, url, created_at) VALUES (?, ?, ?, ?, ?)",
            (keep["key"], url, ",".join(wanted), url, time.time()),
        )
    return dict(keep)


def _delete(conn: Connector, key: str) -> None:
    with contextlib.suppress(NotFound):  # already gone is what we wanted
        conn.call("willo.delete_webhook", {"webhook": key})


def unsubscribe(conn: Connector, store: StateStore, url: str) -> list[str]:
    """Remove every subscription recorded for ``url``; return their keys."""
    rows = store.query("SELECT webhook FROM subscriptions WHERE url = ?", (url,))
    removed = []
    for row in rows:
        _delete(conn, row["webhook"])
        removed.append(row["webhook"])
    with store.tx() as db:
        db.execute("DELETE FROM subscriptions WHERE url = ?", (url,))
    return removed
