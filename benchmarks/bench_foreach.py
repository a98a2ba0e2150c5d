"""A journaled foreach as a whole process (issue 16.5): ``willo-connector run`` of a
1,000-item foreach of one GET with concurrency 8, every unit journaled (``sending``
before its request, ``succeeded`` after), against a plain ``ThreadPoolExecutor(8)``
doing the same GETs with ``requests``, in its own process, on the same sandbox.
Medians of interleaved runs. Aim: within 1.15x.
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

from common import cli, sandbox_process

INTERVIEW = "927982d43d577f03e4877aab073a730e"  # the demo's Backend Engineer

PLAIN = r"""
import json, sys, requests
from concurrent.futures import ThreadPoolExecutor
base, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = requests.Session()
url = base + "/interviews/927982d43d577f03e4877aab073a730e/"
def get(_):
    return s.get(url, headers={"Authorization": key}, timeout=30).json()
with ThreadPoolExecutor(8) as pool:
    out = list(pool.map(get, range(n)))
json.dump({"items": len(out)}, sys.stdout)
"""

WORKFLOW = """\
workflow: 1
name: foreach-bench
steps:
  - id: get
    use: willo.get_interview
    foreach: "{{ inputs.interviews }}"
    concurrency: 8
    with: {interview: "{{ item }}"}
"""


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - t0


def main(items: int = 1000, rounds: int = 5) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp())
    (folder / "wf.yaml").write_text(WORKFLOW)
    (folder / "inputs.json").write_text(json.dumps({"interviews": [INTERVIEW] * items}))
    with sandbox_process("--rate-limit", "0") as (base, key):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WILLO_")},
            "WILLO_BASE_URL": base,
            "WILLO_API_KEY": key,
            "WILLO_RATE_LIMIT": "0",
            "WILLO_STATE_DIR": str(folder / "state"),
            "XDG_CACHE_HOME": str(folder / "cache"),
        }
        ours = [*cli(), "run", str(folder / "wf.yaml"), "--input-file", str(folder / "inputs.json"), "--json"]
        plain = [sys.executable, "-c", PLAIN, base, key, str(items)]
        timed(ours, env)  # warm: the catalog cache, the state file
        pairs = []
        for _ in range(rounds):  # interleaved, so drift in the machine hits both alike
            pairs.append((timed(plain, env), timed(ours, env)))
    plain_t = statistics.median(p for p, _ in pairs)
    ours_t = statistics.median(o for _, o in pairs)
    out = {
        f"plain ThreadPoolExecutor(8), {items} GETs (s)": plain_t,
        f"run: foreach of {items}, concurrency 8, journaled (s)": ours_t,
        "run / plain (whole process)": statistics.median(o / p for p, o in pairs),
    }
    for k, v in out.items():
        print(f"{k}: {v:.3f}")
    return out


if __name__ == "__main__":
    main()
