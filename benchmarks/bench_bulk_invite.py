"""1,000 invites through a workflow foreach (concurrency 8) against a sandbox throttled
at 50 requests/s and 1,000/min, with the client's pacer set to match (issue 5).

Reports the share of the throttle's budget used over the run (aim: at least 95%) and
failures (aim: 0): requests the sandbox answered 429, and items that failed.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import requests
from common import sandbox_process

from connector.client import Settings
from connector.engine import Runner
from connector.runtime import Connector
from connector.workflows import load

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
        result = Runner(conn, wf, store=None, progress=False).start({"people": people})
        elapsed = time.perf_counter() - t0
        sent = conn.client.requests_sent
        count = requests.get(
            f"{base}/participants/",
            params={"interview": INTERVIEW, "page_size": 1},
            headers={"Authorization": key},
        ).json()["count"]
    failed = sum(1 for i in result.steps[0].items or [] if i["status"] != "succeeded")
    # the budget over `elapsed` seconds: the tighter of 50/s and 1,000/min
    budget = min(50 * elapsed, 1000 * elapsed / 60)
    out = {
        "invites": float(n),
        "elapsed (s)": elapsed,
        "requests sent": float(sent),
        "throttled (429) answers": float(sent - n),
        "failed items": float(failed),
        "participants created": float(count - 5),
        "share of budget used": n / budget,
    }
    for k, v in out.items():
        print(f"{k}: {v:.3f}")
    return out


if __name__ == "__main__":
    main()
