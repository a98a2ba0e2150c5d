"""Cold start of the CLI as a ratio to ``python -c pass`` (same interpreter, same run).

Aims (issue 2): ``--help`` at most 2.5x, ``actions --json`` at most 3x. And (issue 16.6) a
cold ``call`` of one action against the sandbox within 1.6x the plain ``requests``
one-liner doing the same GET and printing it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from common import cli, median_time, sandbox_process

INTERVIEW = "927982d43d577f03e4877aab073a730e"  # the demo's Backend Engineer
ONE_LINER = (
    f"import os, requests; print(requests.get(os.environ['WILLO_BASE_URL'] + '/interviews/{INTERVIEW}/', "
    "headers={'Authorization': os.environ['WILLO_API_KEY']}, timeout=30).json())"
)

FLOOR = "import click, pluggy, importlib.metadata as m; m.entry_points(group='willo_connector')"


def run(cmd: list[str], env: dict[str, str]) -> None:
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)


def main(repeat: int = 25) -> dict[str, float]:
    cache = tempfile.mkdtemp()
    env = {**os.environ, "XDG_CACHE_HOME": cache}
    base = median_time(lambda: run([sys.executable, "-c", "pass"], env), repeat)
    # floors: what the libraries a click CLI with entry-point plugins must import cost alone
    click_only = median_time(lambda: run([sys.executable, "-c", "import click"], env), repeat)
    floor = median_time(lambda: run([sys.executable, "-c", FLOOR], env), repeat)
    helps = median_time(lambda: run([*cli(), "--help"], env), repeat)
    run([*cli(), "actions", "--json"], env)  # the first ever run validates and caches the catalog
    actions = median_time(lambda: run([*cli(), "actions", "--json"], env), repeat)
    nocache = {**env, "WILLO_CONNECTOR_NO_CACHE": "1"}
    cold_catalog = median_time(lambda: run([*cli(), "actions", "--json"], nocache), max(5, repeat // 5))
    with sandbox_process("--rate-limit", "0") as (url, key):
        live = {**env, "WILLO_BASE_URL": url, "WILLO_API_KEY": key, "WILLO_RATE_LIMIT": "0"}
        call = [*cli(), "call", "willo.get_interview", "-i", f"interview={INTERVIEW}", "--json"]
        run(call, live)  # the catalog cache, as for actions
        plain_s, call_s = [], []
        for _ in range(repeat):  # interleaved, so drift in the machine hits both alike
            plain_s.append(median_time(lambda: run([sys.executable, "-c", ONE_LINER], live), 1))
            call_s.append(median_time(lambda: run(call, live), 1))
    plain_t, call_t = sorted(plain_s)[repeat // 2], sorted(call_s)[repeat // 2]
    out = {
        "python -c pass (s)": base,
        "floor: import click / python": click_only / base,
        "floor: import click, pluggy + entry points / python": floor / base,
        "--help / python": helps / base,
        "actions --json / python": actions / base,
        "actions --json, catalog not cached / python": cold_catalog / base,
        "plain requests one-liner (s)": plain_t,
        "cold call (s)": call_t,
        "cold call / plain requests one-liner": call_t / plain_t,
    }
    for k, v in out.items():
        print(f"{k}: {v:.3f}")
    return out


if __name__ == "__main__":
    main()
