"""1,000 invites through a workflow foreach (concurrency 8) against a sandbox throttled
at 50 requests/s and 1,000/min, with the client's pacer set to match (issue 5).

Reports the share of the throttle's budget used (the least time the throttle allows
for the requests, over the time the run took; aim: at least 95%) and
failures (aim: 0): requests the sandbox answered 429, and items that failed.
"""

from __future__ import annotations

import os
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

INTERVIEW = "927982d43d577f03e4877aab073a730e"
WF = """\
workflow: 1
name: bulk
steps:
  - id: invite
    use: willo.invite_participant
    foreach: "{{ inputs.people }}"
    concurrency: 8
    with: {interview: INTERVIEW, email: "{{ item }}"}
""".replace("INTERVIEW", INTERVIEW)


def least_time(n: int, windows: list[tuple[int, float]]) -> float:
    """When the n-th request may go at the earliest under sliding-window limits."""
    t: list[float] = []
    for i in range(n):
        t.append(max([0.0] + [t[i - limit] + span for limit, span in windows if i >= limit]))
    return t[-1]


def main(n: int = 1000) -> dict[str, float]:
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp()
    with sandbox_process("--rate-limit", "50/1000") as (base, key):
        conn = Connector(
            settings=Settings.from_env(base_url=base, api_key=key, rate="50/1000", max_retries=8)
        )
        path = Path(tempfile.mkdtemp()) / "bulk.yaml"
        path.write_text(WF)
        wf = load(path, conn.catalog)
        people = [f"bulk{i:04d}@example.com" for i in range(n)]
        t0 = time.perf_counter()
        result = Runner(conn, wf, store=None, progress=False, executor=LocalExecutor()).start(
            {"people": people}
        )
        elapsed = time.perf_counter() - t0
        sent = conn.client.requests_sent
        while True:  # the throttle's budget is spent: wait as it says
            r = requests.get(
                f"{base}/participants/",
                params={"interview": INTERVIEW, "page_size": 1},
                headers={"Authorization": key},
            )
            if r.status_code != 429:
                break
            time.sleep(float(r.headers["Retry-After"]))
        count = r.json()["count"]
    failed = sum(1 for i in result.steps[0].items or [] if i["status"] != "succeeded")
    # The least time the throttle allows for n requests from a standing start: the
    # last request can go at the start of its window under both limits. The share of
    # the budget used is that time over the time the run took.
    least = least_time(n, [(50, 1.0), (1000, 60.0)])
    out = {
        "invites": float(n),
        "elapsed (s)": elapsed,
        "requests sent": float(sent),
        "throttled (429) answers": float(sent - n),
        "failed items": float(failed),
        "participants created": float(count - 5),
        "least time the throttle allows (s)": least,
        "share of budget used": least / elapsed,
    }
    for k, v in out.items():
        print(f"{k}: {v:.3f}")
    return out


if __name__ == "__main__":
    import sys

    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
