"""Webhook deliveries from the sandbox, as this project reads Willo's (undocumented) ones.

The shape is documented in ``docs/webhooks.md``; in short, each delivery is a JSON
POST of ``{"id", "event", "created_at", "data"}`` with the headers
``X-Willo-Event``, ``X-Willo-Delivery`` (the event id; the same on every retry),
``X-Willo-Timestamp`` (Unix seconds), ``X-Willo-Attempt`` and, for a subscription
with a secret, ``X-Willo-Signature: sha256=HEX`` where HEX is the HMAC-SHA256 of
``f"{timestamp}.{body}"`` under the secret. A target that does not answer 2xx is
retried with exponential backoff.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from connector.sandbox.store import Store

# One reading of the delivery contract (docs/webhooks.md), shared with the receiver.
from connector.triggers.receiver import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature

log = logging.getLogger(__name__)

EVENT_HEADER = "X-Willo-Event"
ATTEMPT_HEADER = "X-Willo-Attempt"


def _loopback(url: str) -> bool:
    from connector.http.client import is_loopback

    return is_loopback(urlsplit(url).hostname)


@dataclass
class Delivery:
    webhook: str
    url: str
    event: str
    event_id: str
    body: bytes
    secret: str | None
    attempts: int = 0
    status: str = "pending"
    last_status: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class Deliverer:
    """Queues events for subscribed webhooks and posts them, retrying failures."""

    def __init__(
        self,
        store: Store,
        *,
        max_attempts: int = 6,
        backoff: float = 0.5,
        timeout: float = 5.0,
        allow_remote: bool = False,
        workers: int = 2,
    ):
        self.store = store
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout = timeout
        self.allow_remote = allow_remote
        self._queue: queue.PriorityQueue[tuple[float, int, Delivery | None]] = queue.PriorityQueue()
        self._seq = 0
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._threads = [
            threading.Thread(target=self._work, daemon=True, name=f"willo-hooks-{i}") for i in range(workers)
        ]
        self._session = requests.Session()
        for t in self._threads:
            t.start()

    def publish(self, event: str, data: dict[str, Any]) -> str:
        """Queue one event for every active subscription to it; returns the event id."""
        event_id = "evt_" + secrets.token_hex(16)
        payload = {"id": event_id, "event": event, "created_at": self.store.clock.now(), "data": data}
        body = json.dumps(payload).encode()
        for hook in list(self.store.table("webhooks").values()):
            if hook.get("is_active", True) and event in hook["events"]:
                d = Delivery(
                    hook["key"], hook["url"], event, event_id, body, self.store.secrets.get(hook["key"])
                )
                with self._lock:
                    self._deliveries.append(d)
                self._put(time.monotonic(), d)
        return event_id

    def _put(self, at: float, d: Delivery | None) -> None:
        with self._lock:
            self._seq += 1
            seq = self._seq
        self._queue.put((at, seq, d))

    def _work(self) -> None:
        while True:
            at, _, d = self._queue.get()
            if d is None:
                return
            wait = at - time.monotonic()
            if wait > 0:
                if wait > 0.05:  # not due yet: put it back and look again shortly
                    self._put(at, d)
                    time.sleep(min(wait, 0.05))
                    continue
                time.sleep(wait)
            self._attempt(d)

    def _attempt(self, d: Delivery) -> None:
        if d.status == "cancelled":
            return
        d.attempts += 1
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Willo-Webhooks (sandbox)",
            EVENT_HEADER: d.event,
            DELIVERY_HEADER: d.event_id,
            TIMESTAMP_HEADER: ts,
            ATTEMPT_HEADER: str(d.attempts),
        }
        if d.secret:
            headers[SIGNATURE_HEADER] = signature(d.secret, ts, d.body)
        if not (self.allow_remote or _loopback(d.url)):
            d.status = "refused"
            d.history.append({"attempt": d.attempts, "error": "not a loopback target"})
            log.warning("sandbox: not delivering to non-loopback %s", d.url)
            return
        try:
            resp = self._session.post(d.url, data=d.body, headers=headers, timeout=self.timeout)
            d.last_status = resp.status_code
            d.history.append({"attempt": d.attempts, "status": resp.status_code})
            ok = 200 <= resp.status_code < 300
        except requests.RequestException as exc:
            d.history.append({"attempt": d.attempts, "error": type(exc).__name__})
            ok = False
        if ok:
            d.status = "delivered"
        elif d.attempts >= self.max_attempts:
            d.status = "failed"
        else:
            self._put(time.monotonic() + self.backoff * 2 ** (d.attempts - 1), d)

    def log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "webhook": d.webhook,
                    "url": d.url,
                    "event": d.event,
                    "id": d.event_id,
                    "status": d.status,
                    "attempts": d.attempts,
                    "history": list(d.history),
                }
                for d in self._deliveries
            ]

    def clear(self) -> None:
        """Forget every delivery; pending retries are cancelled (a sandbox reset)."""
        with self._lock:
            for d in self._deliveries:
                if d.status == "pending":
                    d.status = "cancelled"
            self._deliveries.clear()

    def stop(self) -> None:
        for _ in self._threads:
            self._put(float("-inf"), None)
        for t in self._threads:
            t.join(timeout=2)
        self._session.close()
