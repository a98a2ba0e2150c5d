"""What the run journal costs a workflow: a 200-item foreach of one GET, journaled in
the state store (each unit written as sending, then succeeded, each write fenced by
the run's lease) vs the same run with no journal (a dry store), against the sandbox
in its own process. The ratio is the journal's (and leases') overhead per unit; the
lease heartbeat itself is one UPDATE per process every WILLO_LEASE_SECONDS / 3."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from common import sandbox_process

from connector.engines.local import LocalExecutor
from connector.http.client import Settings
from connector.state.store import StateStore
from connector.workflows.model import load
from connector.workflows.runner import Runner
from connector.workflows.runtime import Connector

INTERVIEW = "927982d43d577f03e4877aab073a730e"  # the demo's Backend Engineer


def main(items: int = 200, rounds: int = 5) -> dict[str, float]:
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp()
    with sandbox_process("--rate-limit", "0") as (base, key):
        conn = Connector(settings=Settings.from_env(base_url=base, api_key=key, rate="0"))
        conn.call("willo.get_interview", {"interview": INTERVIEW})
        wf_path = Path(tempfile.mkdtemp()) / "wf.yaml"
        wf_path.write_text(
            "workflow: 1\nname: journal\nsteps:\n  - id: get\n    use: willo.get_interview\n"
            '    foreach: "{{ inputs.interviews }}"\n    with: {interview: "{{ item }}"}\n'
        )
        wf = load(wf_path, conn.catalog)
        inputs = {"interviews": [INTERVIEW] * items}
        store = StateStore(tempfile.mkdtemp())
        ratios, per_unit = [], []
        for _ in range(rounds):  # interleaved, so drift in the machine hits both alike
            t0 = time.perf_counter()
            assert Runner(conn, wf, store=None, progress=False, executor=LocalExecutor()).start(
                inputs
            ).status == ("succeeded")
            t1 = time.perf_counter()
            assert Runner(conn, wf, store=store, progress=False, executor=LocalExecutor()).start(
                inputs
            ).status == ("succeeded")
            t2 = time.perf_counter()
            ratios.append((t2 - t1) / (t1 - t0))
            per_unit.append((t2 - t1 - (t1 - t0)) / items * 1000)
    out = {
        "journaled foreach / unjournaled": statistics.median(ratios),
        "journal cost per unit (ms)": statistics.median(per_unit),
    }
    for k, v in out.items():
        print(f"{k}: {v:.2f}")
    return out


if __name__ == "__main__":
    main()
