"""Hostile input (issue 9): wall time and peak memory of the CLI on bombs, as ratios to
the same command on ordinary input, and the cost of bounding expressions.

Each command runs in a fresh process under a small wrapper that reports the child's
peak resident memory (``ru_maxrss``) and wall time, capped at 4 GiB of address space
and 120 s so that a regression cannot take the machine down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cli

WRAPPER = r"""
import json, resource, subprocess, sys, time
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
t0 = time.perf_counter()
try:
    p = subprocess.run(sys.argv[1:], capture_output=True, timeout=120, preexec_fn=cap)
    code, err = p.returncode, p.stderr.decode(errors="replace").strip().splitlines()[-1:]
except subprocess.TimeoutExpired:
    code, err = "timeout", []
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mb": peak / 1024, "exit": code, "stderr": err}))
"""

BOMB = (
    "workflow: 1\nname: bomb\n"
    + "l0: &l0 ["
    + ",".join(["lol"] * 9)
    + "]\n"
    + "".join(f"l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * 9) + "]\n" for n in range(1, 9))
    + "steps: []\n"
)
STEP = (
    "workflow: 1\nname: {name}\nsteps:\n"
    '  - id: d\n    use: willo.create_department\n    with: {{name: "{expr}"}}\n'
)


def measure(args: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", WRAPPER, *cli(), *args], capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout)


def expression_cost(repeat: int = 20000) -> float:
    """Typical expressions through ``evaluate`` with the bounded environment, against the
    same ``evaluate`` on Jinja2's plain immutable sandbox: what the bounds cost."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from connector.workflows import expressions

    scope = {"item": {"email": "a@b.c", "first_name": "Ada"}, "steps": {"i": {"output": {"key": "k" * 32}}}}
    texts = [
        "{{ item.email }}",
        "{{ steps.i.output.key }}",
        "{{ item.first_name | default('') }}",
        "Hi {{ item.first_name }}!",
    ]

    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(repeat):
            for text in texts:
                expressions.evaluate(text, scope)
        return time.perf_counter() - t0

    bounded = expressions.environment()
    plain = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    plain.globals.clear()  # as the connector's: no range(), lipsum... (a smaller context per call)
    timings = {"bounded": [], "plain": []}
    for _ in range(3):
        for name, env in (("plain", plain), ("bounded", bounded)):
            expressions._ENV = env  # type: ignore[assignment]
            expressions._CACHE.clear()
            timings[name].append(run())
    expressions._ENV = bounded
    return min(timings["bounded"]) / min(timings["plain"])


def main() -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp())
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLO_")}
    env.update(XDG_CACHE_HOME=str(tmp / "cache"), WILLO_STATE_DIR=str(tmp / "state"))
    (tmp / "bomb.yaml").write_text(BOMB)
    (tmp / "plain.yaml").write_text(STEP.format(name="plain", expr="{{ 1 + 1 }}"))
    (tmp / "pow.yaml").write_text(STEP.format(name="pow", expr="{{ 10 ** (10 ** 9) }}"))
    (tmp / "fmt.yaml").write_text(STEP.format(name="fmt", expr="{{ '%.1000000000f' | format(1) }}"))
    (tmp / "pow_in.yaml").write_text(STEP.format(name="pow_in", expr="{{ 10 ** inputs.n }}"))
    (tmp / "fmt_in.yaml").write_text(STEP.format(name="fmt_in", expr="{{ inputs.f | format(1) }}"))
    measure(["actions"], env)  # the catalog cache, once
    base_validate = measure(["validate", str(tmp / "plain.yaml")], env)
    base_run = measure(["run", str(tmp / "plain.yaml"), "--dry-run"], env)
    out: dict[str, float] = {
        "validate, ordinary workflow (s)": base_validate["seconds"],
        "validate, ordinary workflow (peak MB)": base_validate["peak_mb"],
        "run --dry-run, ordinary workflow (s)": base_run["seconds"],
        "run --dry-run, ordinary workflow (peak MB)": base_run["peak_mb"],
    }
    bomb = measure(["validate", str(tmp / "bomb.yaml")], env)
    print(f"validate alias bomb ({len(BOMB)} bytes): exit {bomb['exit']}, {bomb['stderr']}")
    out["validate alias bomb (s)"] = bomb["seconds"]
    out["validate alias bomb / ordinary (time)"] = bomb["seconds"] / base_validate["seconds"]
    out["validate alias bomb / ordinary (peak memory)"] = bomb["peak_mb"] / base_validate["peak_mb"]
    # the bombs of the issue are constant: validate (and so run) refuse them before running;
    # the same bombs fed from inputs are refused by the bounded sandbox while running
    cases = {
        "pow bomb, constant": ["run", str(tmp / "pow.yaml"), "--dry-run"],
        "format bomb, constant": ["run", str(tmp / "fmt.yaml"), "--dry-run"],
        "pow bomb, from inputs": ["run", str(tmp / "pow_in.yaml"), "--dry-run", "-i", "n=1000000000"],
        "format bomb, from inputs": ["run", str(tmp / "fmt_in.yaml"), "--dry-run", "-i", "f=%.1000000000f"],
    }
    for name, args in cases.items():
        r = measure(args, env)
        print(f"run --dry-run, {name}: exit {r['exit']}, {r['stderr']}")
        out[f"dry run, {name} (s)"] = r["seconds"]
        out[f"dry run, {name} (peak MB)"] = r["peak_mb"]
        out[f"dry run, {name} / ordinary (time)"] = r["seconds"] / base_run["seconds"]
        out[f"dry run, {name} / ordinary (peak memory)"] = r["peak_mb"] / base_run["peak_mb"]
    out["bounded expressions / plain Jinja2 sandbox (time)"] = expression_cost()
    for k, v in out.items():
        print(f"{k}: {v:.3f}")
    return out


if __name__ == "__main__":
    main()
