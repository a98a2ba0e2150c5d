"""One action call through the host vs the same HTTP request with plain requests,
against the sandbox on loopback (in its own process). Aim (issue 2): at most 1.10x.

Also (issue 5): a workflow step's overhead, as a 200-item foreach of the same call vs
200 plain requests.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import requests
from common import sandbox_process

from connector.engines.local import LocalExecutor
from connector.http.client import Settings
from connector.workflows.model import load
from connector.workflows.runner import Runner
from connector.workflows.runtime import Connector

INTERVIEW = "927982d43d577f03e4877aab073a730e"  # the demo's Backend Engineer


def main(n: int = 400, rounds: int = 5) -> dict[str, float]:
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp()
    with sandbox_process("--rate-limit", "0") as (base, key):
        session = requests.Session()
        url = f"{base}/interviews/{INTERVIEW}/"
        headers = {"Authorization": key, "Accept": "application/json"}
        conn = Connector(settings=Settings.from_env(base_url=base, api_key=key, rate="0"))
        conn.call("willo.get_interview", {"interview": INTERVIEW})  # warm up both
        session.get(url, headers=headers).json()

        def plain() -> None:
            for _ in range(n):
                session.get(url, headers=headers, timeout=(5, 30)).json()

        def host() -> None:
            for _ in range(n):
                conn.call("willo.get_interview", {"interview": INTERVIEW})

        ratios = []
        for _ in range(rounds):  # interleaved, so drift in the machine hits both alike
            t0 = time.perf_counter()
            plain()
            t1 = time.perf_counter()
            host()
            t2 = time.perf_counter()
            ratios.append((t2 - t1) / (t1 - t0))
        per_call_plain = (t1 - t0) / n

        wf_path = Path(tempfile.mkdtemp()) / "wf.yaml"
        wf_path.write_text(
            "workflow: 1\nname: overhead\nsteps:\n  - id: get\n    use: willo.get_interview\n"
            '    foreach: "{{ inputs.interviews }}"\n    with: {interview: "{{ item }}"}\n'
        )
        wf = load(wf_path, conn.catalog)
        items = [INTERVIEW] * 200
        step_ratios = []
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in items:
                session.get(url, headers=headers, timeout=(5, 30)).json()
            t1 = time.perf_counter()
            assert (
                Runner(conn, wf, store=None, progress=False, executor=LocalExecutor())
                .start({"interviews": items})
                .status
                == "succeeded"
            )
            t2 = time.perf_counter()
            step_ratios.append((t2 - t1) / (t1 - t0))
    out = {
        "plain requests, per call (ms)": per_call_plain * 1000,
        "host call / plain requests": statistics.median(ratios),
        "workflow foreach step / plain requests": statistics.median(step_ratios),
    }
    for k, v in out.items():
        print(f"{k}: {v:.3f}")
    return out


if __name__ == "__main__":
    main()
