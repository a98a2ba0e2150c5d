"""Webhook subscriptions of listeners, made through the catalog's webhook actions.

There is one subscription per receiver URL, shared by every listener serving that
URL (a rolling restart runs two at once behind one public URL). At start a listener
reconciles: a subscription for its URL left by another listener, or by an earlier
crash, is reused (its events and secret updated) and duplicates are removed, so
that restarts never pile up subscriptions. Each listener holds a shared lease on
the URL's subscription (:mod:`connector.state.leases`, renewed by its heartbeat);
on exit it gives its lease back and removes the subscription only when no other
live listener holds one. Changes to one URL's subscription (subscribe, remove) are
serialised across processes by a short exclusive lease.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from connector.errors import ConnectorError, NotFound
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


class Subscription:
    """This listener's share of the subscription for its receiver URL."""

    def __init__(self, conn: Connector, store: StateStore, url: str, events: set[str], secret: str | None):
        self.conn = conn
        self.store = store
        self.url = url
        self.events = set(events)
        self.secret = secret
        self.webhook: str | None = None
        self.live = False
        self.reason: str | None = "not subscribed yet"
        self.stopping = False
        self._verified = time.monotonic()
        self._changing = threading.Lock()  # this process: the keeper and stop() take turns
        self.lingering: set[str] = set()  # leases to leave to expire at exit

    @property
    def resource(self) -> str:
        return f"subscription:{self.url}"

    @property
    def _change(self) -> str:
        return f"subscription-change:{self.url}"

    def _lock(self, timeout: float) -> bool:
        """The exclusive right to change this URL's subscription, waiting ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.store.leases.acquire(self._change):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    # ------------------------------------------------------------------ start

    def start(self) -> dict[str, Any]:
        """Hold a share of the URL's subscription, creating or reusing it."""
        with self._changing:
            if not self._lock(max(30.0, 2 * self.store.leases.ttl)):
                raise ConnectorError(f"{self.url}: another listener is changing this subscription; try again")
            try:
                self.store.leases.acquire(self.resource, shared=True)
                hook = subscribe(self.conn, self.store, self.url, self.events, self.secret)
            finally:
                self.store.leases.release(self._change)
            self.webhook, self.live, self.reason = hook["key"], True, None
            self._verified = time.monotonic()
            return hook

    # ------------------------------------------------------------------ upkeep

    def check(self) -> None:
        """Is the subscription still there? This listener's lease and the state store's
        record are looked at each time, Willo itself every two lease periods; when it is
        gone, say so (``live``/``reason``, shown by ``/health``) and subscribe again."""
        if self.stopping:
            return
        if self.live:
            problem = None
            if not self.store.leases.holds(self.resource):
                problem = "this listener's lease on the subscription expired"
            elif not self.store.query(
                "SELECT 1 FROM subscriptions WHERE url = ? AND webhook = ?", (self.url, self.webhook)
            ):
                problem = "another process removed the subscription"
            elif time.monotonic() - self._verified >= 2 * self.store.leases.ttl:
                problem = self._verify()
            if problem is None:
                return
            self.live, self.reason = False, problem
            log.warning("%s: no live subscription (%s); subscribing again", self.url, problem)
        try:
            self.start()
        except ConnectorError as exc:
            log.warning("%s: subscribing again failed (%s); will retry", self.url, exc)

    def _verify(self) -> str | None:
        try:
            found = self.conn.call("willo.list_webhooks", {"all": True}).output.get("results", [])
        except ConnectorError as exc:
            log.info("%s: could not check the subscription with Willo: %s", self.url, exc)
            return None  # unknown is not gone
        self._verified = time.monotonic()
        mine = next((h for h in found if h.get("key") == self.webhook), None)
        if mine is None or mine.get("url") != self.url:
            return f"webhook {self.webhook} is no longer in Willo"
        if not mine.get("is_active", True):
            return f"webhook {self.webhook} is inactive in Willo"
        return None

    def status(self) -> dict[str, Any]:
        """For ``/health``."""
        holders = self.store.leases.holders(self.resource)
        info: dict[str, Any] = {
            "url": self.url,
            "webhook": self.webhook,
            "live": self.live and any(h.owner == self.store.leases.owner for h in holders),
            "receivers": len(holders),
        }
        if not info["live"]:
            info["reason"] = self.reason or "this listener's lease on the subscription expired"
        return info

    # ------------------------------------------------------------------ stop

    def stop(self, deadline: float) -> tuple[list[str], str]:
        """Give back this listener's share; remove the subscription if no other live
        listener holds one, within ``deadline`` (a ``time.monotonic()`` value).
        Returns the removed keys and a one-line account."""
        self.stopping = True
        leases = self.store.leases
        if not self._changing.acquire(timeout=max(0.0, min(0.5, deadline - time.monotonic()))):
            leases.release(self.resource)
            return [], f"kept {self.webhook}: this listener was re-subscribing"
        try:
            got = self._lock(max(0.0, min(0.5, deadline - time.monotonic())))
            leases.release(self.resource)
            if not got:
                return [], f"kept {self.webhook}: another listener is changing it"
            others = [h for h in leases.holders(self.resource) if h.owner != leases.owner]
            if others:
                leases.release(self._change)
                n = len(others)
                who = "1 other listener serves" if n == 1 else f"{n} other listeners serve"
                return [], f"kept {self.webhook}: {who} it"
            removed: list[str] = []
            failure: list[BaseException] = []

            def remove() -> None:
                try:
                    removed.extend(unsubscribe(self.conn, self.store, self.url))
                except BaseException as exc:  # reported below; the thread must not print
                    failure.append(exc)

            worker = threading.Thread(target=remove, name="willo-unsubscribe", daemon=True)
            worker.start()
            worker.join(max(0.2, deadline - time.monotonic()))
            if worker.is_alive():
                # Leave the change lock to expire: a listener starting meanwhile waits
                # for it, then finds the subscription there (reuses it) or gone.
                self.lingering.add(self._change)
                return [], f"removing {self.webhook} took too long; the next listener reuses or removes it"
            leases.release(self._change)
            if failure:
                return [], f"could not remove {self.webhook} ({failure[0]}); the next listener reuses it"
            return removed, "unsubscribed " + (", ".join(removed) or "nothing")
        finally:
            self._changing.release()
