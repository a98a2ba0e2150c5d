"""The webhook receiver behind ``willo-connector listen``.

A delivery is checked (size, signature when ``WILLO_WEBHOOK_SECRET`` is set, JSON,
a known event), written to the durable inbox (the state store's event queue) and
only then answered 2xx. Duplicates (the same event id inside the body, else the same
body) are answered 200 and not queued again; the ``X-Willo-Delivery`` header is not
signed, so it never decides what is a duplicate. A dispatcher thread runs the workflows whose
trigger matches; queued events survive a crash and are processed at the next start.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connector import telemetry
from connector.limits import LimitError, loads_json
from connector.state.store import StateStore, dumps

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
TOLERANCE = 300  # seconds a signed timestamp may be off
EVENTS = {
    "new_response": "willo.new_response",
    "stage_change": "willo.stage_change",
    "new_comment": "willo.new_comment",
    "new_score": "willo.new_score",
}
SIGNATURE_HEADER = "X-Willo-Signature"
TIMESTAMP_HEADER = "X-Willo-Timestamp"
DELIVERY_HEADER = "X-Willo-Delivery"
PATH = "/willo/webhooks"


_DIGITS = re.compile(r"[0-9]{1,15}")
MAX_DEDUPE = 200


def dedupe_key(payload: Mapping[str, Any], body: bytes) -> str:
    """What makes two deliveries the same event: the event id inside the (signed) body,
    else the body itself. Ids over 200 characters are hashed, never cut (two long ids
    sharing a prefix are two events)."""
    eid = payload.get("id")
    if isinstance(eid, int) and not isinstance(eid, bool):
        eid = str(eid)
    if isinstance(eid, str) and eid:
        if len(eid) <= MAX_DEDUPE and not eid.startswith("sha256"):
            return eid
        return "sha256-id:" + hashlib.sha256(eid.encode("utf-8", "surrogatepass")).hexdigest()
    return "sha256:" + hashlib.sha256(body).hexdigest()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass
class Verdict:
    status: int
    body: dict[str, Any]

    @property
    def outcome(self) -> str:
        """The delivery's outcome as metrics and logs name it: ``queued``,
        ``duplicate``, ``bad_signature``, ``too_large``, ``invalid`` or ``error``."""
        if self.status >= 500:
            return "error"
        if self.status == 202:
            return "queued"
        if self.status == 200:
            return "duplicate"
        if self.status == 413:
            return "too_large"
        error = str(self.body.get("error", ""))
        if self.status == 401 or "timestamp" in error:
            return "bad_signature"
        return "invalid"


class Inbox:
    """Checks deliveries and writes accepted ones to the event queue."""

    def __init__(
        self,
        store: StateStore,
        secret: str | None = None,
        clock: Callable[[], float] = time.time,
        on_queued: Callable[[], None] | None = None,
        account: str = "",
    ):
        self.store = store
        self.account = account  # whose deliveries these are (the listener's connection)
        self.secret = secret or None
        self.clock = clock
        self.on_queued = on_queued

    def _check_signature(self, headers: Mapping[str, str], body: bytes) -> Verdict | None:
        if not self.secret:
            return None
        given = headers.get(SIGNATURE_HEADER, "")
        ts = headers.get(TIMESTAMP_HEADER, "")
        if not given:
            return Verdict(401, {"error": "missing signature"})
        if ts:
            if not _DIGITS.fullmatch(ts):  # Unix seconds: no sign, fraction, exponent, nan or inf
                return Verdict(400, {"error": "bad timestamp"})
            skew = abs(self.clock() - int(ts))
            if skew > TOLERANCE:
                return Verdict(401, {"error": "timestamp outside tolerance"})
        expected = (
            signature(self.secret, ts, body)
            if ts
            else "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(expected.encode(), given.strip().encode()):
            return Verdict(401, {"error": "bad signature"})
        return None

    def accept(self, headers: Any, body: bytes) -> Verdict:
        if len(body) > MAX_BODY:
            return Verdict(413, {"error": f"body over {MAX_BODY} bytes"})
        bad = self._check_signature(headers, body)
        if bad is not None:
            return bad
        try:
            payload = loads_json(body)
        except LimitError as exc:
            return Verdict(400, {"error": f"body is {exc}"})
        except (ValueError, UnicodeDecodeError):
            return Verdict(400, {"error": "body is not JSON"})
        if not isinstance(payload, dict):
            return Verdict(400, {"error": "body is not a JSON object"})
        event = payload.get("event")
        if not isinstance(event, str) or event not in EVENTS:
            return Verdict(400, {"error": "unknown or missing event"})
        if not isinstance(payload.get("data"), dict):
            return Verdict(400, {"error": "missing data"})
        trigger, dedupe = EVENTS[event], dedupe_key(payload, body)
        with self.store.tx() as db:
            cur = db.execute(
                "INSERT INTO events (source, account, trigger, dedupe, payload, status, received_at)"
                " VALUES ('webhook', ?, ?, ?, ?, 'queued', ?) ON CONFLICT DO NOTHING",
                (self.account, trigger, dedupe, dumps(payload), self.clock()),
            )
            fresh = bool(cur.rowcount)
            event_id = cur.lastrowid if fresh else None
        if fresh and self.on_queued is not None:
            self.on_queued()
        if log.isEnabledFor(logging.INFO):
            with telemetry.bind(account=self.account or None, trigger=trigger, event_id=event_id):
                if fresh:
                    log.info("delivery accepted: queued as event %s", event_id)
                else:
                    log.info("delivery of an event already queued (%r): not queued again", dedupe[:80])
        return Verdict(200 if not fresh else 202, {"status": "queued" if fresh else "duplicate"})


def make_app(
    inbox: Inbox, health: Callable[[], dict[str, Any]] | None = None
) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: POST ``/willo/webhooks``; GET ``/health`` (``{"status": "ok"}``,
    plus what ``health()`` adds, e.g. the state of this receiver's subscription)."""
    from werkzeug.wrappers import Request, Response

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        req = Request(environ)
        if req.path == "/health" and req.method == "GET":
            resp = Response(
                json.dumps({"status": "ok", **(health() if health else {})}), content_type="application/json"
            )
        elif req.path.rstrip("/") != PATH:
            resp = Response(json.dumps({"error": "not found"}), 404, content_type="application/json")
        elif req.method != "POST":
            resp = Response(
                json.dumps({"error": "method not allowed"}),
                405,
                content_type="application/json",
                headers={"Allow": "POST"},
            )
        else:
            length = req.content_length
            if length is not None and length > MAX_BODY:
                verdict = Verdict(413, {"error": f"body over {MAX_BODY} bytes"})
            else:
                body = req.stream.read(MAX_BODY + 1)
                try:
                    verdict = inbox.accept(req.headers, body)
                except Exception:  # the store failed: not queued, so not acknowledged (Willo resends)
                    log.exception("delivery not queued")
                    verdict = Verdict(503, {"error": "could not queue the delivery; send it again"})
            telemetry.inc("deliveries", outcome=verdict.outcome)
            if verdict.status >= 400:
                log.info("delivery refused (%s): %s", verdict.status, verdict.body.get("error"))
            resp = Response(json.dumps(verdict.body), verdict.status, content_type="application/json")
        return resp(environ, start_response)

    return app


#: connections served at once (fewer if the process may open fewer files)
CONNECTION_LIMIT = 1000
#: seconds a connection has to deliver a whole request (headers and body), from
#: opening it or from its previous request: a slow or silent sender is dropped
REQUEST_TIMEOUT = 30
#: seconds an idle keep-alive connection is kept
CHANNEL_TIMEOUT = 30


def default_connection_limit(wanted: int = CONNECTION_LIMIT) -> int:
    """``wanted``, or fewer if the open-files limit would not allow that many sockets."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        return min(wanted, 500)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - 64))


def _guard(server: Any, request_timeout: float) -> None:
    """Make a waitress server drop connections that do not deliver a request in time.

    waitress keeps a connection for as long as bytes trickle in (its channel_timeout
    counts silence), so 100 slow senders (its default connection limit) shut every
    delivery out. Here each connection must complete a request within
    ``request_timeout`` of opening or of its previous request."""
    from waitress.channel import HTTPChannel
    from waitress.server import BaseWSGIServer

    class GuardedChannel(HTTPChannel):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.quiet_since = time.monotonic()

        def received(self, data: bytes) -> Any:
            before = len(self.requests)
            result = super().received(data)
            if len(self.requests) > before or (self.request is None and not self.requests):
                self.quiet_since = time.monotonic()  # a whole request arrived
            return result

    def maintenance(self: Any, now: Any) -> None:
        BaseWSGIServer.maintenance(self, now)  # waitress's own idle timeout
        cutoff = time.monotonic() - request_timeout
        for channel in list(self.active_channels.values()):
            if not channel.requests and getattr(channel, "quiet_since", cutoff) < cutoff:
                channel.will_close = True

    servers = [server] if isinstance(server, BaseWSGIServer) else list(server.map.values())
    for one in servers:
        if isinstance(one, BaseWSGIServer):
            one.channel_class = GuardedChannel
            one.maintenance = maintenance.__get__(one)  # type: ignore[method-assign]


class Listener:
    """Serves the inbox and runs a dispatcher thread until stopped.

    Tuned against slow senders (see docs/webhooks.md): up to ``connection_limit``
    connections at once, each of which must deliver a whole request within
    ``request_timeout`` seconds; idle keep-alive connections close after
    ``channel_timeout``. ``stopping`` (set by :meth:`stop`) is also the dispatcher's
    and the runs' cancel signal: no new event or unit starts once it is set."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        host: str,
        port: int,
        dispatch_one: Callable[[], int] | None,
        stopping: threading.Event | None = None,
        *,
        connection_limit: int | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        channel_timeout: int = CHANNEL_TIMEOUT,
    ):
        import waitress.server

        # "Task queue depth is N" is waitress's note that all its threads are busy: under a
        # burst of deliveries that is expected, and they queue (durably) as designed.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)

        # waitress: a production WSGI server, about twice the werkzeug dev server's rate
        self.server: Any = waitress.server.create_server(
            app,
            host=host,
            port=port,
            threads=8,
            ident="willo-connector",
            clear_untrusted_proxy_headers=True,
            connection_limit=connection_limit or default_connection_limit(),
            channel_timeout=channel_timeout,
            cleanup_interval=max(1, min(5, int(request_timeout))),
            asyncore_use_poll=True,  # select() cannot watch more than 1024 sockets
        )
        _guard(self.server, request_timeout)
        self.dispatch_one = dispatch_one
        self.wake = threading.Event()
        self.stopping = stopping or threading.Event()
        self._serving: threading.Thread | None = None
        self._dispatching: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    def _dispatch_loop(self) -> None:
        dispatch_one = self.dispatch_one
        assert dispatch_one is not None  # started only when there is one
        while not self.stopping.is_set():
            try:
                busy = dispatch_one()
            except Exception:  # a dispatcher must outlive a bad event; it was logged
                log.exception("dispatcher error")
                busy = False
            if not busy:
                self.wake.wait(0.5)
                self.wake.clear()

    def start(self) -> None:
        """Serve; and dispatch, unless the owner dispatches itself (``dispatch_one`` None)."""
        self._serving = threading.Thread(target=self.server.run, name="willo-http", daemon=True)
        self._serving.start()
        if self.dispatch_one is not None:
            self._dispatching = threading.Thread(
                target=self._dispatch_loop, name="willo-dispatch", daemon=True
            )
            self._dispatching.start()

    def stop(self) -> None:
        """Stop at once: no new event or unit of work starts, every connection is
        closed (even one a sender holds open), the HTTP threads end. A unit already
        in flight may finish: see :meth:`join`."""
        from waitress import wasyncore

        self.stopping.set()
        self.wake.set()
        from waitress.server import BaseWSGIServer

        server = self.server
        # Close every socket inside waitress's loop thread (closing them from here
        # races its select() into "Bad file descriptor"); the loop then ends. One
        # address: one server; several (a name with IPv4 and IPv6): one shared map.
        single = isinstance(server, BaseWSGIServer)
        sock_map: dict[Any, Any] = server._map if single else server.map
        first: Any = server if single else next(v for v in sock_map.values() if isinstance(v, BaseWSGIServer))

        def close_all() -> None:
            wasyncore.close_all(sock_map, ignore_all=True)

        try:
            first.trigger.pull_trigger(close_all)
        except OSError:  # the loop already ended and closed its trigger (a second stop, or
            close_all()  # a loop that died): nothing races us now, close what is left here
        if self._serving is not None:
            self._serving.join(timeout=0.5)
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=0.2)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the dispatcher thread (a run's unit in flight);
        True when it has ended. A unit still in flight stays journaled as sending: the
        next start looks it up before it is ever sent again."""
        if self._dispatching is None:
            return True
        self._dispatching.join(max(0.0, timeout))
        return not self._dispatching.is_alive()
