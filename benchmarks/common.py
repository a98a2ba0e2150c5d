"""Helpers for the benchmarks: a sandbox in its own process, medians, the CLI."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _byte_compile() -> None:
    """Byte-compile the project as an installed wheel has it. An editable install leaves
    the sources uncompiled, and with PYTHONDONTWRITEBYTECODE (set on this machine) every
    start would compile them again: a cost no installed copy pays (about 20 ms of a
    cold ``call``), while the baselines' libraries are compiled."""
    import compileall

    for folder in ("connector", "actions", "triggers", "manifests"):
        compileall.compile_dir(ROOT / folder, quiet=1)


_byte_compile()


def _check_install() -> None:
    """The CLI the benchmarks start must run this checkout: an editable install of
    another one (a git worktree) would be measured instead, silently."""
    probe = "import connector, willo_manifests; print(connector.__file__); print(*willo_manifests.__path__)"
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd="/", check=False
    ).stdout.split()
    if len(found) != 2 or not all(Path(p).resolve().is_relative_to(ROOT) for p in found):
        raise SystemExit(
            f"benchmarks: {sys.executable} runs willo-connector from {found or 'nowhere'}, not from "
            f"this checkout ({ROOT}): pip install -e {ROOT}"
        )


_check_install()


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("willo-connector")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "connector"]


@contextmanager
def sandbox_process(*args: str) -> Iterator[tuple[str, str]]:
    """``willo-connector sandbox`` in its own process (no GIL shared with the client)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLO_")}
    proc = subprocess.Popen(
        [*cli(), "sandbox", "--port", "0", "--api-key", "sk_bench", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip().split("=", 1)[1]
        key = proc.stdout.readline().strip().split("=", 1)[1]
        yield base, key
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_threads(worker: Callable[[], object], threads: int) -> float:
    """Run ``worker`` on ``threads`` threads at once; the seconds until all are done."""
    import threading

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0


def median_time(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
