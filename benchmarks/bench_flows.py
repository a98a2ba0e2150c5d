"""Issue 12's figures, through the installed CLI against a sandbox in its own process.

1. A foreach of ``willo.find_or_invite_participant`` (concurrency 4, the default retry
   policy) against ``sandbox --fail-rate 0.2``: items, faults injected, retries, and runs
   that needed a resume (aim: 0), over several runs.
2. ``serve``'s idle CPU: CPU seconds over wall seconds of an idle serve (a schedule, and a
   webhook receiver), read from /proc.
3. The progress line on a non-terminal: stderr of a bulk run at Willo's 10/s, 100/min.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from common import ROOT, cli, sandbox_process

INTERVIEW = "927982d43d577f03e4877aab073a730e"
BULK = """\
workflow: 1
name: bulk
inputs: {type: object, properties: {people: {type: array}}}
steps:
  - id: invite
    use: willo.find_or_invite_participant
    foreach: "{{ inputs.people }}"
    concurrency: 4
    with: {interview: INTERVIEW, email: "{{ item }}"}
""".replace("INTERVIEW", INTERVIEW)


def env(base: str, key: str, state: str, **extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("WILLO_")}
    e.update(WILLO_BASE_URL=base, WILLO_API_KEY=key, WILLO_STATE_DIR=state, **extra)
    return e


def get(url: str, **kwargs: object) -> dict:
    """A GET of the bench's own, tried again past the sandbox's injected faults."""
    method = str(kwargs.pop("method", "GET"))
    for _ in range(50):
        try:
            r = requests.request(method, url, **kwargs)  # type: ignore[arg-type]
            if r.status_code == 200:
                return dict(r.json())
        except requests.RequestException:
            pass
    raise RuntimeError(url)


def faults(runs: int = 5, items: int = 200) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp())
    wf = tmp / "bulk.yaml"
    wf.write_text(BULK)
    totals = {"runs": runs, "items per run": items, "faults injected": 0, "retries": 0, "resumes needed": 0}
    seconds = []
    for n in range(runs):
        with sandbox_process("--rate-limit", "0", "--fail-rate", "0.2") as (
            base,
            key,
        ):
            people = tmp / f"people{n}.json"
            people.write_text(json.dumps([f"f{n}-{i}@example.com" for i in range(items)]))
            t0 = time.perf_counter()
            out = subprocess.run(
                [*cli(), "run", str(wf), "--json", "-i", f"people=@{people}"],
                env=env(base, key, str(tmp / f"s{n}"), WILLO_RATE_LIMIT="0"),
                capture_output=True,
                text=True,
            )
            seconds.append(time.perf_counter() - t0)
            result = json.loads(out.stdout)
            stats = requests.post(
                f"{base}/_sandbox/faults", json={"next": []}, headers={"Authorization": key}
            ).json()
            count = requests.get(
                f"{base}/participants/",
                params={"interview": INTERVIEW, "page_size": 1},
                headers={"Authorization": key},
            ).json()["count"]
        step = result["steps"][0]
        totals["retries"] += step.get("retries", 0)
        totals["faults injected"] += sum(stats["injected"].values())
        totals["resumes needed"] += result["status"] != "succeeded"
        injected = sum(stats["injected"].values())
        print(
            f"run {n}: {result['status']}, {injected} faults, {step.get('retries', 0)} retries, "
            f"{count} participants, {seconds[-1]:.1f}s"
        )
    totals["median run (s)"] = sorted(seconds)[len(seconds) // 2]
    return totals


def idle_cpu(seconds: float = 20.0) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp())
    d = tmp / "flows"
    d.mkdir()
    (d / "daily.yaml").write_text(
        "workflow: 1\nname: daily\ntrigger: {use: schedule, with: {cron: '0 8 * * *'}}\n"
        "steps:\n  - {id: a, use: willo.list_languages}\n"
    )
    (d / "hook.yaml").write_text(
        "workflow: 1\nname: hook\ntrigger: {use: willo.new_response}\n"
        "steps:\n  - {id: a, use: willo.list_languages}\n"
    )
    with sandbox_process() as (base, key):
        proc = subprocess.Popen(
            [*cli(), "serve", str(d), "--port", "0"],
            env=env(base, key, str(tmp / "s")),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)  # start-up: imports, catalog, subscription

        def cpu() -> float:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        c0, t0 = cpu(), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu(), time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    share = (c1 - c0) / (t1 - t0)
    print(f"serve idle: {c1 - c0:.3f} CPU s over {t1 - t0:.1f} s = {100 * share:.2f}% of one core")
    return {"idle CPU (% of a core)": 100 * share}


def progress(items: int = 80) -> list[str]:
    tmp = Path(tempfile.mkdtemp())
    rows = ["email,first_name"] + [f"p{i}@example.com,P{i}" for i in range(items)]
    (tmp / "people.csv").write_text("\n".join(rows) + "\n")
    with sandbox_process("--rate-limit", "10/100") as (base, key):
        out = subprocess.run(
            [
                *cli(),
                "run",
                str(ROOT / "examples" / "ops" / "invite_candidates.yaml"),
                "--json",
                "-i",
                f"candidates=@{tmp / 'people.csv'}",
            ],
            env=env(base, key, str(tmp / "s"), WILLO_RATE_LIMIT="10/100", WILLO_PROGRESS_INTERVAL="10"),
            capture_output=True,
            text=True,
        )
    lines = out.stderr.splitlines()
    for line in lines:
        print(f"  stderr: {line}")
    return lines


def main() -> None:
    which = sys.argv[1:] or ["faults", "idle", "progress"]
    if "faults" in which:
        for k, v in faults().items():
            print(f"{k}: {v}")
    if "idle" in which:
        idle_cpu()
    if "progress" in which:
        progress()


if __name__ == "__main__":
    main()
