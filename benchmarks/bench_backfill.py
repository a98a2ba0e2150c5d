"""A backfill as a whole process (issue 16.4): ``poll willo.new_participant --backfill
--once --json`` (every participant becomes a queued event, is dispatched and printed as
a JSON line) against ``call willo.list_participants all=true --jsonl`` (the same
records read and printed), on a sandbox of N participants. Medians of interleaved
runs; wall time and CPU time (user + system) of each child, so that a loaded machine
shows in the first and not in the second. Aim: 30,000 in under 1.5x the call.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import cli, sandbox_process


def child(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and stdout lines of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    lines = sum(1 for _ in proc.stdout)
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    assert os.waitstatus_to_exitcode(status) == 0, err
    return elapsed, usage.ru_utime + usage.ru_stime, lines


def main(n: int = 30_000, rounds: int = 3) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp())
    with sandbox_process("--rate-limit", "0", "--seed", "none", "--participants", str(n)) as (base, key):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WILLO_")},
            "WILLO_BASE_URL": base,
            "WILLO_API_KEY": key,
            "WILLO_RATE_LIMIT": "0",
            "XDG_CACHE_HOME": str(folder / "cache"),
        }
        call = [*cli(), "call", "willo.list_participants", "-i", "all=true", "--jsonl"]
        child(call, {**env, "WILLO_STATE_DIR": str(folder / "warm")})  # the catalog cache
        samples: dict[str, list[tuple[float, float, int]]] = {"call": [], "poll": []}
        for i in range(rounds):  # interleaved; each backfill on a fresh state store
            samples["call"].append(child(call, {**env, "WILLO_STATE_DIR": str(folder / f"c{i}")}))
            poll = [*cli(), "poll", "willo.new_participant", "--backfill", "--once", "--json"]
            samples["poll"].append(child(poll, {**env, "WILLO_STATE_DIR": str(folder / f"p{i}")}))
    for kind, rows in samples.items():
        assert all(lines >= n for _, _, lines in rows), (kind, rows)
    wall = {k: statistics.median(s[0] for s in v) for k, v in samples.items()}
    cpu = {k: statistics.median(s[1] for s in v) for k, v in samples.items()}
    out = {
        f"{n:,}: call --jsonl (s)": wall["call"],
        f"{n:,}: poll --backfill --once --json (s)": wall["poll"],
        f"{n:,}: backfill / call (wall)": wall["poll"] / wall["call"],
        f"{n:,}: backfill / call (CPU)": cpu["poll"] / cpu["call"],
    }
    for k, v in out.items():
        print(f"{k}: {v:.2f}")
    return out


if __name__ == "__main__":
    main()
