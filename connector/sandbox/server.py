"""Serving the sandbox: in a thread (tests, ``--sandbox``) or in the foreground."""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from connector.sandbox import seed as seeds
from connector.sandbox.app import API_PREFIX, Faults, SandboxApp, Throttle
from connector.sandbox.store import Store
from connector.sandbox.webhooks import Deliverer

log = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class SandboxOptions:
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None
    seed: str | None = "demo"
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
        self._server: BaseWSGIServer | None = None
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
            if self.options.seed == "demo":
                self.keys = seeds.demo(self.store, self.api_key, host)
            else:
                self.keys = seeds.base(self.store, self.api_key)

    @property
    def base_url(self) -> str:
        host = self.options.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{API_PREFIX}"

    @property
    def port(self) -> int:
        return self._server.server_port if self._server else self.options.port

    def bind(self) -> None:
        self._server = make_server(
            self.options.host, self.options.port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.options.port = self._server.server_port
        self.reset()  # links now carry the real port

    def start(self) -> Sandbox:
        """Serve in a background thread on a free loopback port (unless one was given)."""
        self.bind()
        assert self._server is not None
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name="willo-sandbox",
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        if self._server is None:
            self.bind()
        assert self._server is not None
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.deliverer.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
