"""The plugin kit (issue 14): from ``willo-connector new plugin`` to passing tests.

In a fresh virtualenv holding this checkout (installed once, not timed), as an author
would: ``new plugin`` (which records the cassettes against an in-process sandbox),
``pip install -e '.[test]'`` of the plugin (local wheels, no build isolation), the
plugin's own test suite (locally, then as in CI: replay only), and ``plugins verify``.
Medians of a few rounds, each in a new folder. The baseline is ``python -m pytest
--version`` in the same venv (what any pytest run costs before a test), so the suite's
figure reads as a ratio too.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

ROUNDS = 3


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(rounds: int = ROUNDS) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="bench-scaffold-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WILLO_", "VIRTUAL_ENV", "CI"))}
    env.update(XDG_CACHE_HOME=str(work / "cache"), WILLO_STATE_DIR=str(work / "state"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "setuptools>=68", "wheel"], check=True, env=env)
    subprocess.run([*pip, "--no-build-isolation", str(ROOT)], check=True, env=env)
    cli = str(venv / "bin" / "willo-connector")
    runs: dict[str, list[float]] = {}
    for i in range(rounds):
        folder = work / f"round{i}"
        folder.mkdir()
        root = folder / "willo-acme"
        steps = {
            "new plugin (s)": ([cli, "new", "plugin", "acme"], folder, env),
            "pip install -e plugin (s)": ([*pip, "--no-build-isolation", "-e", ".[test]"], root, env),
            "plugin tests, local (s)": ([py, "-m", "pytest", "-q", "-p", "no:cacheprovider"], root, env),
            "plugin tests, CI replay (s)": (
                [py, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                root,
                {**env, "CI": "true"},
            ),
            "plugins verify (s)": ([cli, "plugins", "verify", "acme"], root, env),
            "pytest --version, baseline (s)": ([py, "-m", "pytest", "--version"], root, env),
        }
        for label, (cmd, cwd, e) in steps.items():
            runs.setdefault(label, []).append(timed(cmd, cwd, e))
    out = {k: statistics.median(v) for k, v in runs.items()}
    out["new plugin -> passing tests (s)"] = (
        out["new plugin (s)"] + out["pip install -e plugin (s)"] + out["plugin tests, local (s)"]
    )
    out["plugin tests / pytest --version"] = (
        out["plugin tests, local (s)"] / out["pytest --version, baseline (s)"]
    )
    for k, v in out.items():
        print(f"{k}: {v:.2f}")
    return out


if __name__ == "__main__":
    main()
