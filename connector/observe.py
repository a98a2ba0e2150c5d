"""Health, readiness and Prometheus metrics for the long-lived commands: ``listen``
(on the receiver's port), ``poll --interval`` (``--metrics-port``) and ``serve``;
and the retention upkeep they run.

- ``GET /health``: liveness. 200 while the process serves, with what it knows
  (e.g. its subscription); it never fails for a reason a restart would not fix.
- ``GET /ready``: readiness. 200 when the state store takes a write within two
  seconds, the subscription (if this process manages one) is live, the backlog of
  due queued events is under ``WILLO_READY_MAX_INBOX`` (default 1000), and, for a
  poller, the last successful poll is recent; else 503 with every reason.
- ``GET /metrics``: Prometheus text (or OpenMetrics, as the scraper asks), from
  prometheus_client, which only these commands import (``WILLO_METRICS=off``: no
  /metrics, nothing counted).

Counters and histograms are this process's (``telemetry.inc`` and
``telemetry.observe`` from the receiver, the dispatcher, the pollers, the runner and
the client); gauges named ``willo_connector_stored_*``, ``inbox_*`` and
``poll_lag_seconds`` are read from the state store at each scrape, so they are the
same in every process sharing it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connector import telemetry
from connector.errors import ConfigError
from connector.state import upkeep
from connector.triggers.events import shown
from connector.triggers.polling import ledger_name

if TYPE_CHECKING:
    from connector.state.store import StateStore
    from connector.triggers.receiver import Listener

log = logging.getLogger(__name__)

PREFIX = "willo_connector_"
DEFAULT_MAX_INBOX = 1000
#: seconds a /ready answer and the store's gauges are reused: a flood of probes costs
#: the store one small write (and a few reads) a second, not one per request
CACHE_SECONDS = 1.0
#: seconds the readiness probe waits for the store's write lock
WRITE_PROBE_TIMEOUT = 2.0

#: telemetry name -> (kind, metric name, help, label names)
SPEC: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "deliveries": (
        "counter",
        "deliveries",
        "Webhook deliveries received, by outcome (queued, duplicate, bad_signature, too_large, invalid, "
        "error).",
        ("outcome",),
    ),
    "events_emitted": ("counter", "events_emitted", "Events queued by pollers.", ("source",)),
    "events_dispatched": (
        "counter",
        "events_dispatched",
        "Events dispatched, by outcome (done, retry, parked, requeued).",
        ("source", "outcome"),
    ),
    "runs": ("counter", "runs", "Workflow runs finished by this process, by status.", ("workflow", "status")),
    "run_duration": (
        "histogram",
        "run_duration_seconds",
        "How long workflow runs took, by status.",
        ("workflow", "status"),
    ),
    "api_requests": (
        "counter",
        "api_requests",
        "HTTP attempts to the Willo API, by action and status code (error: no answer).",
        ("action", "status"),
    ),
    "api_throttled": ("counter", "api_throttled", "429 answers from the Willo API.", ("action",)),
    "outbound_requests": (
        "counter",
        "outbound_requests",
        "HTTP attempts of http.request steps (chat webhooks...), by status code (error: no answer).",
        ("action", "status"),
    ),
    "polls": ("counter", "polls", "Successful polls, by trigger.", ("trigger",)),
}
RUN_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
WINDOW_NAMES = {1.0: "second", 60.0: "minute", 86400.0: "day"}


class Metrics:
    """This process's counters and histograms (prometheus_client), fed by
    :mod:`connector.telemetry`."""

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Histogram,
            disable_created_metrics,
            gc_collector,
            platform_collector,
            process_collector,
        )

        disable_created_metrics()  # no *_created series: a start time per label set is noise here

        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Any] = {}
        self._labels: dict[str, tuple[str, ...]] = {}
        for key, (kind, name, text, labels) in SPEC.items():
            if kind == "histogram":
                metric: Any = Histogram(
                    PREFIX + name, text, labels, registry=self.registry, buckets=RUN_BUCKETS
                )
            else:
                metric = Counter(PREFIX + name, text, labels, registry=self.registry)
            self._metrics[key] = metric
            self._labels[key] = labels
        process_collector.ProcessCollector(registry=self.registry)
        platform_collector.PlatformCollector(registry=self.registry)
        gc_collector.GCCollector(registry=self.registry)
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._warned: set[str] = set()

    def _child(self, name: str, labels: Mapping[str, str]) -> Any:
        names = self._labels.get(name)
        if names is None:
            return None
        values = tuple(str(labels.get(n, "")) for n in names)
        child = self._children.get((name, values))
        if child is None:
            child = self._children[(name, values)] = self._metrics[name].labels(*values)
        return child

    def inc(self, name: str, labels: Mapping[str, str], amount: float) -> None:
        self._record(name, labels, "counter", lambda child: child.inc(amount))

    def observe(self, name: str, value: float, labels: Mapping[str, str]) -> None:
        self._record(name, labels, "histogram", lambda child: child.observe(value))

    def _record(self, name: str, labels: Mapping[str, str], kind: str, act: Callable[[Any], None]) -> None:
        """A metric event; one that names no metric of this kind is ignored (with one
        warning): counting must never fail the delivery or run that counts."""
        try:
            if SPEC.get(name, ("",))[0] == kind:
                act(self._child(name, labels))
                return
            problem = f"not a known {kind}"
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if name not in self._warned:
            self._warned.add(name)
            log.warning("metric event %r ignored: %s", name, problem)


_metrics: Metrics | None = None
_metrics_lock = threading.Lock()


def metrics_enabled(env: Mapping[str, str] | None = None) -> bool:
    """``WILLO_METRICS``: ``on`` (default) or ``off`` (no /metrics, no counting)."""
    raw = (os.environ if env is None else env).get("WILLO_METRICS", "").strip().lower()
    if raw in ("", "1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise ConfigError(f"WILLO_METRICS={raw[:20]!r}: give on or off")


def metrics() -> Metrics:
    """The process's metrics, made (and plugged into :mod:`connector.telemetry`) once."""
    global _metrics
    with _metrics_lock:
        if _metrics is None:
            _metrics = Metrics()
            telemetry.set_recorder(_metrics)
        return _metrics


# --------------------------------------------------------------------------- the budget


def rate_budget() -> list[dict[str, Any]]:
    """The request budget as this process sees it: for each account and window,
    requests used and the limit: the shared budgets of the connections this process
    uses (every process's use of them), and in-memory pacers (``default``)."""
    from connector.http.pacing import pacers

    found = []
    for pacer in pacers():
        for window in pacer.usage():
            found.append(
                {
                    "account": getattr(pacer, "name", "default"),
                    "window": WINDOW_NAMES.get(window["window"], f"{window['window']:g}s"),
                    "used": window["used"],
                    "limit": window["limit"],
                    "configured": window["configured"],
                    "waited": pacer.waited,
                }
            )
    return found


# --------------------------------------------------------------------------- store gauges


class StoreCollector:
    """Gauges read from the state store at each scrape (prometheus_client collector)."""

    def __init__(
        self,
        store: StateStore,
        ledgers: Callable[[], Sequence[str]] | None = None,
        cache: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.ledgers = ledgers  # the polling ledgers to report the lag of (None: all polled)
        self.cache = cache
        self.clock = clock
        self._cache: tuple[float, list[Any]] | None = None
        self._lock = threading.Lock()

    def describe(self) -> list[Any]:
        return []  # computed at each scrape; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        """The gauges, read from the store at most once per ``cache`` seconds however
        often the endpoint is asked (it may be reachable by anyone who can reach the
        receiver)."""
        with self._lock:
            if self._cache is None or self.clock() - self._cache[0] >= self.cache:
                self._cache = (self.clock(), list(self._read()))
            families = self._cache[1]
        yield from families

    def _read(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        now = time.time()
        try:
            events = self.store.query("SELECT status, COUNT(*) AS n FROM events GROUP BY status")
            runs = self.store.query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
            depth = self.store.query(
                "SELECT source, COUNT(*) AS n, MIN(received_at) AS oldest FROM events"
                " WHERE status = 'queued' AND next_at <= ? GROUP BY source",
                (now,),
            )
            ledgers = self.store.query(
                "SELECT name, trigger, options, account, updated_at, polls FROM triggers"
            )
            sizes = upkeep.sizes(self.store)
        except sqlite3.Error as exc:
            log.warning("metrics: cannot read the state store: %s", exc)
            return
        g = GaugeMetricFamily(
            PREFIX + "stored_events", "Trigger events in the state store, by status.", labels=["status"]
        )
        for row in events:
            g.add_metric([shown(row["status"])], row["n"])
        yield g
        g = GaugeMetricFamily(
            PREFIX + "stored_runs", "Workflow runs in the state store, by status.", labels=["status"]
        )
        for row in runs:
            g.add_metric([row["status"]], row["n"])
        yield g
        g = GaugeMetricFamily(
            PREFIX + "inbox_depth", "Queued events due for dispatch, by source.", labels=["source"]
        )
        a = GaugeMetricFamily(
            PREFIX + "inbox_oldest_age_seconds",
            "Age of the oldest queued event due for dispatch, by source.",
            labels=["source"],
        )
        for row in depth:
            g.add_metric([row["source"]], row["n"])
            a.add_metric([row["source"]], max(0.0, now - row["oldest"]))
        yield g
        yield a
        wanted = set(self.ledgers()) if self.ledgers is not None else None
        g = GaugeMetricFamily(
            PREFIX + "poll_lag_seconds",
            "Seconds since the last successful poll, by ledger (trigger and options) and account.",
            labels=["ledger", "account"],
        )
        for row in ledgers:
            if (wanted is None and row["polls"]) or (wanted is not None and row["name"] in wanted):
                shown_as = ledger_name(row["trigger"], json.loads(row["options"] or "{}"))
                g.add_metric([shown_as, row["account"] or ""], max(0.0, now - row["updated_at"]))
        yield g
        g = GaugeMetricFamily(PREFIX + "state_bytes", "Size of the state store's files.", labels=["file"])
        g.add_metric(["db"], sizes["file"])
        g.add_metric(["wal"], sizes["wal"])
        g.add_metric(["free"], sizes["free"])
        yield g
        budget = rate_budget()
        used = GaugeMetricFamily(
            PREFIX + "rate_budget_used",
            "Requests used in the current rate window, by account and window (second, minute, day).",
            labels=["account", "window"],
        )
        limit = GaugeMetricFamily(
            PREFIX + "rate_budget_limit",
            "Requests the rate window admits now (lower than configured after 429s).",
            labels=["account", "window"],
        )
        for entry in budget:
            used.add_metric([entry["account"], entry["window"]], entry["used"])
            limit.add_metric([entry["account"], entry["window"]], entry["limit"])
        yield used
        yield limit
        waited = CounterMetricFamily(
            PREFIX + "rate_wait_seconds", "Seconds requests waited for the rate budget.", labels=["account"]
        )
        seen: set[str] = set()
        for entry in budget:
            if entry["account"] not in seen:
                seen.add(entry["account"])
                waited.add_metric([entry["account"]], entry["waited"])
        yield waited


class _Both:
    """The process's metrics and one store's gauges, as one registry for exposition."""

    def __init__(self, *sources: Any):
        self.sources = sources

    def collect(self) -> Iterator[Any]:
        for source in self.sources:
            yield from source.collect()


# --------------------------------------------------------------------------- probes

Check = Callable[[], "str | None"]


def max_inbox(env: Mapping[str, str] | None = None) -> int:
    raw = (os.environ if env is None else env).get("WILLO_READY_MAX_INBOX", "").strip()
    if not raw:
        return DEFAULT_MAX_INBOX
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"WILLO_READY_MAX_INBOX={raw[:20]!r}: give a whole number of events (at least 1)")
    return int(raw)


def store_writable(store: StateStore, timeout: float = WRITE_PROBE_TIMEOUT) -> Check:
    """Ready when the store takes a small write (a probe row, added and removed in
    one transaction) within ``timeout`` seconds: its disk, permissions and locks."""

    def check() -> str | None:
        try:
            db = sqlite3.connect(store.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            return f"state store {store.path}: {exc}"
        try:
            db.execute("BEGIN IMMEDIATE")
            probe = f"ready-probe:{store.leases.owner}"
            db.execute(
                "INSERT OR REPLACE INTO leases (resource, owner, shared, acquired_at, heartbeat_at,"
                " expires_at) VALUES (?, ?, 1, 0, 0, 0)",
                (probe, store.leases.owner),
            )
            db.execute("DELETE FROM leases WHERE resource = ?", (probe,))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            return f"state store {store.path} does not take writes: {exc}"
        finally:
            db.close()
        return None

    return check


def inbox_below(store: StateStore, limit: int, sources: Sequence[str] | None = None) -> Check:
    """Ready while fewer than ``limit`` queued events are due (of ``sources``)."""

    def check() -> str | None:
        sql = "SELECT COUNT(*) FROM events WHERE status = 'queued' AND next_at <= ?"
        args: list[Any] = [time.time()]
        if sources:
            sql += f" AND source IN ({','.join('?' * len(sources))})"
            args += list(sources)
        n = store.query(sql, tuple(args))[0][0]
        if n >= limit:
            return f"{n} queued events are due, over WILLO_READY_MAX_INBOX={limit}: the dispatcher is behind"
        return None

    return check


def polled_recently(store: StateStore, ledger: str, interval: float) -> Check:
    """Ready while ``ledger`` was polled successfully within three intervals (at
    least a minute past one): a poller failing for longer says so."""
    allowed = max(3 * interval, interval + 60)
    started = time.time()

    def check() -> str | None:
        rows = store.query("SELECT updated_at, polls FROM triggers WHERE name = ?", (ledger,))
        last = rows[0]["updated_at"] if rows and rows[0]["polls"] else None
        since = time.time() - (last if last is not None and last >= started else started)
        if since > allowed:
            return f"{ledger}: no successful poll for {since:.0f}s (interval {interval:g}s)"
        return None

    return check


@dataclass
class Probes:
    """What ``/health``, ``/ready`` and ``/metrics`` answer for one process."""

    store: StateStore
    health: Callable[[], dict[str, Any]] | None = None
    checks: list[Check] = field(default_factory=list)
    ledgers: Callable[[], Sequence[str]] | None = None

    with_metrics: bool = True
    cache: float = CACHE_SECONDS
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._ready: tuple[float, tuple[bool, dict[str, Any]]] | None = None
        self._ready_lock = threading.Lock()
        self.source: _Both | None = None
        if self.with_metrics:
            gauges = StoreCollector(self.store, self.ledgers, self.cache, self.clock)
            self.source = _Both(metrics().registry, gauges)

    def live(self) -> dict[str, Any]:
        return {"status": "ok", **(self.health() if self.health else {})}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Every check's verdict (reused for ``cache`` seconds)."""
        with self._ready_lock:
            if self._ready is not None and self.clock() - self._ready[0] < self.cache:
                return self._ready[1]
            found = self._check()
            self._ready = (self.clock(), found)
            return found

    def _check(self) -> tuple[bool, dict[str, Any]]:
        reasons = []
        for check in self.checks:
            try:
                problem = check()
            except Exception as exc:  # a probe that fails is a reason, never a 500
                problem = f"{getattr(check, '__qualname__', 'check')}: {type(exc).__name__}: {exc}"
            if problem:
                reasons.append(problem)
        body: dict[str, Any] = {"status": "ready" if not reasons else "not ready"}
        if reasons:
            body["reasons"] = reasons
        return not reasons, body

    def exposition(self, accept: str | None) -> tuple[bytes, str] | None:
        """The metrics as the scraper asks for them; None when they are off."""
        if self.source is None:
            return None
        from prometheus_client import exposition

        encoder, content_type = exposition.choose_encoder(accept or "")
        return encoder(self.source), content_type


def wsgi(probes: Probes, app: Callable[..., Iterable[bytes]] | None = None) -> Callable[..., Iterable[bytes]]:
    """``/health``, ``/ready`` and ``/metrics`` (GET) in front of ``app`` (which gets
    every other request; without one, 404)."""
    from werkzeug.wrappers import Request, Response

    def respond(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/health", "/ready", "/metrics") and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            if path == "/metrics":
                found = probes.exposition(Request(environ).headers.get("Accept"))
                if found is None:
                    resp = Response(json.dumps({"error": "metrics are off (WILLO_METRICS)"}), 404)
                    resp.content_type = "application/json"
                else:
                    resp = Response(found[0], 200, content_type=found[1])
            elif path == "/ready":
                ok, info = probes.ready()
                resp = Response(json.dumps(info), 200 if ok else 503, content_type="application/json")
            else:
                resp = Response(json.dumps(probes.live()), 200, content_type="application/json")
            resp.headers["Cache-Control"] = "no-store"
            return resp(environ, start_response)
        if app is not None:
            return app(environ, start_response)
        resp = Response(json.dumps({"error": "not found"}), 404, content_type="application/json")
        return resp(environ, start_response)

    return respond


def local_url(host: str, port: int) -> str:
    """The URL this process's own probes answer at (loopback for a wildcard address)."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_probes(probes: Probes, host: str, port: int) -> Listener:
    """A small HTTP server of ``/health``, ``/ready`` and ``/metrics`` alone (for
    ``poll --interval --metrics-port``), started."""
    from connector.triggers.receiver import Listener

    server = Listener(wsgi(probes), host, port, None)
    server.start()
    return server


# --------------------------------------------------------------------------- systemd


def sd_notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``...) to systemd's
    notification socket (``NOTIFY_SOCKET``); False when there is none."""
    import socket

    path = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # "@": the abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("systemd notification %r not sent: %s", message, exc)
        return False
    return True


class SystemdNotifier:
    """Tells systemd (``Type=notify``, ``WatchdogSec=``) what this process's own probes
    say, over loopback HTTP: ``READY=1`` once ``/ready`` first answers 200, then
    ``WATCHDOG=1`` each time ``/health`` answers 200 (every third of the watchdog
    period). A process whose HTTP server hangs stops pinging, and systemd restarts it.
    Does nothing when systemd did not ask (no ``NOTIFY_SOCKET``)."""

    def __init__(self, base_url: str | None, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        self.base = base_url.rstrip("/") if base_url else None  # None: no probes to ask
        self.socket = env.get("NOTIFY_SOCKET", "")
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.every = int(usec) / 3e6 if usec.isdigit() and int(usec) > 0 and mine else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _answers(self, path: str) -> bool:
        import urllib.request

        if self.base is None:
            return True
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # own probes: no proxy
        try:
            with opener.open(self.base + path, timeout=5) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def start(self) -> SystemdNotifier:
        if self.socket and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="willo-systemd", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._answers("/ready"):
            if self._stop.wait(0.5):
                return
        sd_notify("READY=1\nSTATUS=ready")
        if self.every is None:
            return
        while not self._stop.wait(self.every):
            if self._answers("/health"):
                sd_notify("WATCHDOG=1")

    def stop(self) -> None:
        if self.socket:
            sd_notify("STOPPING=1")
        self._stop.set()


# --------------------------------------------------------------------------- upkeep


class Upkeep:
    """Prunes the store every ``every`` seconds (and once at start) when
    ``WILLO_RETENTION_DAYS`` is set, in a daemon thread; does nothing otherwise."""

    def __init__(self, store: StateStore, older_than: float | None = None, every: float = 3600.0):
        self.store = store
        self.older_than = upkeep.retention_seconds() if older_than is None else older_than
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: upkeep.Pruned | None = None

    def start(self) -> Upkeep:
        if self.older_than and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="willo-upkeep", daemon=True)
            self._thread.start()
        return self

    def once(self) -> upkeep.Pruned | None:
        if not self.older_than:
            return None
        try:
            done = upkeep.prune(self.store, self.older_than)
        except sqlite3.Error as exc:
            log.warning("retention: pruning the state store failed (%s); trying again later", exc)
            return None
        self.last = done
        if done.runs or done.events or done.leases:
            log.info(
                "retention: pruned %d runs (%d units) and %d events older than %g days",
                done.runs,
                done.units,
                done.events,
                self.older_than / 86400,
            )
        return done

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.once()
            if self._stop.wait(self.every):
                return

    def stop(self) -> None:
        self._stop.set()


__all__ = [
    "SPEC",
    "Metrics",
    "Probes",
    "StoreCollector",
    "SystemdNotifier",
    "Upkeep",
    "inbox_below",
    "local_url",
    "max_inbox",
    "metrics",
    "metrics_enabled",
    "polled_recently",
    "rate_budget",
    "sd_notify",
    "serve_probes",
    "store_writable",
    "wsgi",
]
