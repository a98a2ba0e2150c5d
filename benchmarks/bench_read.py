"""Reading a long list (issue 16.1): ``call willo.list_participants all=true`` as a whole
process, against a plain ``requests`` loop in its own process doing the same reads and
writing the same records (one JSON line each), on the same sandbox. Wall time (medians
of interleaved runs) and peak RSS of each child (``os.wait4``).

Aims: 30,000 participants within 1.3x the plain loop; peak RSS for 100,000 under
80 MiB and flat in N.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import cli, sandbox_process

PLAIN = r"""
import json, sys, requests
base, key = sys.argv[1], sys.argv[2]
s = requests.Session()
url = base + "/participants/?page_size=30"
write = sys.stdout.write
while url:
    page = s.get(url, headers={"Authorization": key}, timeout=30).json()
    for r in page["results"]:
        write(json.dumps(r, separators=(",", ":")) + "\n")
    url = page["next"]
"""


def child(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one child process, its stdout to /dev/null."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 0, err
    return elapsed, usage.ru_maxrss / 1024


def measure(n: int, rounds: int) -> dict[str, float]:
    with sandbox_process("--rate-limit", "0", "--seed", "none", "--participants", str(n)) as (base, key):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WILLO_")},
            "WILLO_BASE_URL": base,
            "WILLO_API_KEY": key,
            "WILLO_RATE_LIMIT": "0",
            "WILLO_STATE_DIR": tempfile.mkdtemp(),
        }
        plain = [sys.executable, "-c", PLAIN, base, key]
        ours = [*cli(), "call", "willo.list_participants", "-i", "all=true", "--jsonl"]
        ours_json = [*cli(), "call", "willo.list_participants", "-i", "all=true", "--json"]
        child(ours, env)  # warm: the catalog cache, the sandbox's index
        samples: dict[str, list[tuple[float, float]]] = {"plain": [], "jsonl": [], "json": []}
        for _ in range(rounds):
            samples["plain"].append(child(plain, env))
            samples["jsonl"].append(child(ours, env))
            samples["json"].append(child(ours_json, env))
    t = {k: statistics.median(s[0] for s in v) for k, v in samples.items()}
    rss = {k: max(s[1] for s in v) for k, v in samples.items()}
    return {
        f"{n:,}: plain loop (s)": t["plain"],
        f"{n:,}: call --jsonl (s)": t["jsonl"],
        f"{n:,}: call --jsonl / plain": t["jsonl"] / t["plain"],
        f"{n:,}: call --json / plain": t["json"] / t["plain"],
        f"{n:,}: peak RSS plain (MiB)": rss["plain"],
        f"{n:,}: peak RSS call --jsonl (MiB)": rss["jsonl"],
        f"{n:,}: peak RSS call --json (MiB)": rss["json"],
    }


def main(sizes: tuple[int, ...] = (3_000, 30_000, 100_000)) -> dict[str, float]:
    out: dict[str, float] = {}
    for n in sizes:
        out.update(measure(n, rounds=5 if n <= 30_000 else 3))
    for k, v in out.items():
        print(f"{k}: {v:.2f}")
    return out


if __name__ == "__main__":
    main()
