"""One rate budget per account shared by every process (issue 10).

1. What the shared budget costs a request: ``SharedPacer.acquire`` and ``observe``
   (its slot reserved, then settled at the answer's time: two write transactions in
   the state store; a request that waited for its slot confirms it, a third) with
   limits that never bind, against the in-memory
   ``Pacer`` and against no pacing, in one process; then 3 and 6 processes reserving
   at once on one store (SQLite's write lock is the contended part): latency of one
   acquire, p50 and p99.
2. The share of the budget 3 processes use together: three ``run``s of a 40-item
   foreach (concurrency 4) at once on one key, against a sandbox in its own process
   throttled as Willo is (10/s, 100/min per key). The least time the limits allow
   for N requests (every 10th a second apart, every 100th a minute apart) over the
   time from the first slot to the last; the sandbox's 429s. And a per-second bound
   case (20/s, 1,000/min, 3 x 100 requests). Baseline: the same three runs with the
   in-memory pacer each (the budget before issue 10): its 429s.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from common import cli, percentile, sandbox_process

from connector.http.pacing import Pacer, SharedPacer
from connector.state.budget import Limits
from connector.state.store import StateStore

NEVER = Limits(1_000_000, 10_000_000, 100_000_000)


def per_acquire(pacer: object, n: int) -> float:
    """What one request costs the budget: its slot (``acquire``) and, once answered, the
    slot settled at the answer's time (``observe``)."""
    acquire = pacer.acquire  # type: ignore[attr-defined]
    observe = pacer.observe  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for _ in range(n):
        acquire()
        observe(0.001)
    return (time.perf_counter() - t0) / n


class _Nothing:
    def acquire(self) -> None:
        pass

    def observe(self, seconds: float) -> None:
        pass


_CONTENDER = """
import json, sys, time
from connector.http.pacing import SharedPacer
from connector.state.budget import Limits
from connector.state.store import StateStore
pacer = SharedPacer(StateStore(sys.argv[1]), "bench", Limits(1_000_000, 10_000_000, 100_000_000))
pacer.acquire()
sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
lat = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter(); pacer.acquire(); pacer.observe(0.001); lat.append(time.perf_counter() - t0)
print(json.dumps(lat))
"""


def contended(processes: int, n: int) -> tuple[float, float, float]:
    """p50, p99 (seconds) of one acquire, and reservations/s, with ``processes`` at once."""
    folder = tempfile.mkdtemp()
    StateStore(folder)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONTENDER, folder, str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    lat: list[float] = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        lat += json.loads(out)
    wall = time.perf_counter() - t0
    return percentile(lat, 50), percentile(lat, 99), len(lat) / wall


def overhead(n: int = 3000, rounds: int = 5) -> dict[str, float]:
    shared, memory, none = [], [], []
    for _ in range(rounds):
        store = StateStore(tempfile.mkdtemp())
        shared.append(per_acquire(SharedPacer(store, "bench", NEVER), n))
        memory.append(per_acquire(Pacer(NEVER.per_second, NEVER.per_minute), n))
        none.append(per_acquire(_Nothing(), n))
    quota_only = per_acquire(SharedPacer(StateStore(tempfile.mkdtemp()), "q", Limits(0, 0, 10**9)), n)
    figures = {
        "shared_us": statistics.median(shared) * 1e6,
        "memory_us": statistics.median(memory) * 1e6,
        "none_us": statistics.median(none) * 1e6,
        "quota_only_us": quota_only * 1e6,
    }
    print(
        f"one acquire, 1 process (median of {rounds} x {n}): shared {figures['shared_us']:.0f} us, "
        f"in memory {figures['memory_us']:.1f} us, none {figures['none_us']:.2f} us; "
        f"quota only (no windows) {figures['quota_only_us']:.0f} us"
    )
    for procs in (3, 6):
        p50, p99, rate = contended(procs, 1000)
        figures[f"p50_{procs}"], figures[f"p99_{procs}"] = p50 * 1e6, p99 * 1e6
        print(
            f"{procs} processes reserving at once (1,000 each): p50 {p50 * 1e6:.0f} us, "
            f"p99 {p99 * 1e6:.0f} us, {rate:,.0f} reservations/s together"
        )
    return figures


WORKFLOW = """\
workflow: 1
name: invite
inputs: {{type: object, properties: {{interview: {{type: string}}, tag: {{type: string}}}}}}
steps:
  - id: invite
    use: willo.invite_participant
    foreach: "{{{{ {items} }}}}"
    concurrency: 4
    with: {{interview: "{{{{ inputs.interview }}}}", email: "{{{{ inputs.tag }}}}{{{{ item }}}}@example.com"}}
"""

_IN_MEMORY = """
import sys
from pathlib import Path
from connector.engines.local import LocalExecutor
from connector.http.client import Settings
from connector.state.store import StateStore
from connector.workflows.model import load
from connector.workflows.runner import Runner
from connector.workflows.runtime import Connector
conn = Connector(settings=Settings.from_env(rate=sys.argv[3]))  # the in-memory pacer of one process
wf = load(Path(sys.argv[1]), conn.catalog)
inputs = {"interview": sys.argv[2], "tag": sys.argv[4]}
runner = Runner(conn, wf, store=StateStore(sys.argv[5]), progress=False, executor=LocalExecutor())
result = runner.start(inputs)
print(result.status)
"""


def least_time(n: int, per_second: int, per_minute: int) -> float:
    """When the n-th request may go at the earliest (the first at 0)."""
    t: list[float] = []
    for k in range(n):
        at = t[-1] if t else 0.0
        if k >= per_second:
            at = max(at, t[k - per_second] + 1.0)
        if k >= per_minute:
            at = max(at, t[k - per_minute] + 60.0)
        t.append(at)
    return t[-1]


def shared_runs(rate: str, items: int, shared: bool = True) -> dict[str, float]:
    per_s, per_m = (int(x) for x in rate.split("/"))
    folder = Path(tempfile.mkdtemp())
    wf = folder / "wf.yaml"
    wf.write_text(WORKFLOW.format(items=list(range(items))))
    with sandbox_process("--rate-limit", rate) as (base, key):
        auth = {"Authorization": key}
        env = {k: v for k, v in os.environ.items() if not k.startswith("WILLO_")}
        env.update(
            WILLO_BASE_URL=base, WILLO_API_KEY=key, WILLO_RATE_LIMIT=rate, WILLO_STATE_DIR=str(folder / "s")
        )
        # through the shared budget: a request it did not see would take a slot of the server's windows
        listed = subprocess.run(
            [*cli(), "call", "willo.list_interviews", "-i", "page_size=1", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        interview = json.loads(listed.stdout)["results"][0]["key"]
        t0 = time.perf_counter()
        if shared:
            cmds = [
                [*cli(), "run", str(wf), "-i", f"interview={interview}", "-i", f"tag=r{n}-"] for n in range(3)
            ]
        else:
            cmds = [
                [sys.executable, "-c", _IN_MEMORY, str(wf), interview, rate, f"r{n}-", str(folder / f"s{n}")]
                for n in range(3)
            ]
        procs = [
            subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in cmds
        ]
        codes = [p.wait(timeout=900) for p in procs]
        wall = time.perf_counter() - t0
        stats = requests.get(base + "/_sandbox/stats", headers=auth, timeout=10).json()
    n = 3 * items + 1  # the runs' requests and the one listing
    least = least_time(n, per_s, per_m)
    figures = {
        "wall": wall,
        "429": stats["by_status"].get("429", 0),
        "failed_runs": sum(c != 0 for c in codes),
    }
    if shared:
        slots = [r["at"] for r in StateStore(folder / "s").query("SELECT at FROM budget_slots ORDER BY at")]
        span = slots[-1] - slots[0]
        figures["share"] = least / span if span else 1.0
        figures["span"] = span
    label = "shared budget" if shared else "in-memory pacer each (before)"
    share = (
        f", {figures['share']:.1%} of the budget (least {least:.1f} s, "
        f"first to last slot {figures['span']:.1f} s)"
        if shared
        else ""
    )
    print(
        f"3 runs x {items} at {rate}, {label}: {figures['429']} x 429, {figures['failed_runs']} runs failed, "
        f"wall {wall:.1f} s" + share
    )
    return figures


def main() -> None:
    overhead()
    shared_runs("10/100", 40)
    shared_runs("20/1000", 100)
    shared_runs("10/100", 40, shared=False)


if __name__ == "__main__":
    main()
