"""Serving the sandbox: in a thread (tests, ``--sandbox``) or in the foreground."""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
from dataclasses import dataclass
from typing import Any

import waitress.server
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.task import WSGITask

from connector.sandbox import seed as seeds
from connector.sandbox.app import API_PREFIX, Faults, SandboxApp, Throttle
from connector.sandbox.store import Store
from connector.sandbox.webhooks import Deliverer

log = logging.getLogger(__name__)


#: Largest body the server reads; the app answers 413 above its own (smaller) limit.
MAX_REQUEST = 16 * 1024 * 1024


class _Task(WSGITask):
    """A request that can be dropped: the app's ``sandbox.drop`` closes the connection
    without an answer (a fault the client must survive)."""

    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        environ["sandbox.drop"] = self._drop
        return environ

    def _drop(self) -> None:
        self.close_on_finish = True
        sock = self.channel.socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Channel(HTTPChannel):
    task_class = _Task


@dataclass
class SandboxOptions:
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None
    seed: str | None = "demo"
    participants: int = 0  # more, in one "Bulk hiring" interview (benchmarks)
    rate_limit: tuple[int, int] = (10, 100)
    fail_rate: float = 0.0
    fault_seed: int | None = None
    latency_ms: int = 0
    webhook_backoff: float = 0.5
    webhook_attempts: int = 6
    allow_remote_webhooks: bool = False
    #: None: any of bare, Bearer, Token, Api-Key; else only that ("": the bare key)
    auth_scheme: str | None = None


class Sandbox:
    """A running simulator. Use as a context manager, or ``start()``/``stop()``."""

    def __init__(self, options: SandboxOptions | None = None, **kwargs: Any):
        self.options = options or SandboxOptions(**kwargs)
        self.api_key = self.options.api_key or "sk_sandbox_" + secrets.token_hex(16)
        self.keys: dict[str, str] = {}
        self.store = Store()
        self.deliverer = Deliverer(
            self.store,
            backoff=self.options.webhook_backoff,
            max_attempts=self.options.webhook_attempts,
            allow_remote=self.options.allow_remote_webhooks,
        )
        self.app = SandboxApp(
            self.store,
            throttle=Throttle(*self.options.rate_limit),
            faults=Faults(self.options.fail_rate, self.options.latency_ms, self.options.fault_seed),
            deliverer=self.deliverer,
            reset=self.reset,
            auth_scheme=self.options.auth_scheme,
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Back to the seeded state (webhook subscriptions included); stats start again."""
        self.deliverer.clear()
        self.app.reset_stats()
        with self.store.lock:
            fresh = Store()
            self.store.tables = fresh.tables
            self.store.api_keys = fresh.api_keys
            self.store.secrets = fresh.secrets
            self.store.responses = fresh.responses
            self.store.idv = fresh.idv
            host = f"http://{self.options.host}:{self.options.port}/"
            with self.store.clock.backdated(3600):  # the seed was there an hour ago
                if self.options.seed == "demo":
                    self.keys = seeds.demo(self.store, self.api_key, host)
                else:
                    self.keys = seeds.base(self.store, self.api_key)
            if self.options.participants:
                seeds.bulk(self.store, self.options.participants, host)

    @property
    def base_url(self) -> str:
        host = self.options.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{API_PREFIX}"

    @property
    def port(self) -> int:
        return int(self._server.effective_port) if self._server else self.options.port

    def bind(self) -> None:
        # waitress: a production WSGI server, several times the werkzeug dev server's rate
        # (the sandbox must keep up with benchmarks of 100,000 records)
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "all threads busy": they queue
        self._server = waitress.server.create_server(
            self.app,
            host=self.options.host,
            port=self.options.port,
            threads=32,  # a slow request (injected latency) holds one; the rest go on
            ident="willo-sandbox",
            max_request_body_size=MAX_REQUEST,
            channel_timeout=300,
        )
        self._server.channel_class = _Channel
        self.options.port = int(self._server.effective_port)
        self.reset()  # links now carry the real port

    def start(self) -> Sandbox:
        """Serve in a background thread on a free loopback port (unless one was given)."""
        self.bind()
        assert self._server is not None
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="willo-sandbox")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        if self._server is None:
            self.bind()
        assert self._server is not None
        self._server.run()

    def stop(self) -> None:
        server = self._server
        if server is not None:
            # run() returns once its map is empty: the listening socket, and every client's
            # kept-alive connection, closed in the loop's own thread
            def close_all() -> None:
                wasyncore.close_all(server._map, ignore_all=True)

            pulled = False
            if self._thread is not None and self._thread.is_alive():
                try:
                    server.trigger.pull_trigger(close_all)
                    pulled = True
                except OSError:  # the loop is closing already (its trigger is gone)
                    pass
                self._thread.join(timeout=5)
            if not pulled:
                close_all()
            server.task_dispatcher.shutdown()
            self._server, self._thread = None, None
        self.deliverer.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
