"""How long `listen` takes to stop on SIGTERM (issue 9 item 7 aims: under 2 s in every
state): idle, in the middle of a run (its request hangs 8 s in the sandbox), right
after a run, and while a sender holds a connection open. SIGTERM to process exit,
the listener being its own process; the sandbox runs here, so that one request can
be made to hang. Absolute seconds (median and worst of N rounds)."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from common import ROOT, cli

sys.path.insert(0, str(ROOT))

from connector.sandbox import Sandbox, SandboxOptions
from connector.sandbox.seed import stable

ADA = stable("participant:ada@example.com")
WF = """\
workflow: 1
name: on-score
trigger: {use: willo.new_score}
steps:
  - id: who
    use: willo.get_participant
    with: {participant: "{{ trigger.data.participant.key }}"}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(box: Sandbox, tmp: Path) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WILLO_")},
        "WILLO_BASE_URL": box.base_url,
        "WILLO_API_KEY": box.api_key,
        "WILLO_RATE_LIMIT": "0",
        "WILLO_STATE_DIR": str(tmp / "state"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
    }
    proc = subprocess.Popen(
        [*cli(), "listen", "--port", str(port), "--workflow", str(tmp / "wf.yaml")],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    while not proc.stderr.readline().startswith("subscribed"):
        assert proc.poll() is None, "listener died"
    return proc, port


def score(box: Sandbox) -> None:
    requests.post(
        f"{box.base_url}/_sandbox/participants/{ADA}/score",
        json={"score": 3},
        headers={"Authorization": box.api_key},
        timeout=10,
    )


def stop(proc: subprocess.Popen[str]) -> tuple[float, bool]:
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return time.perf_counter() - t0, "Traceback" in err


def one_round(box: Sandbox, state: str) -> tuple[float, bool]:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "wf.yaml").write_text(WF)
    real = box.app.dispatch
    started = threading.Event()
    if state == "mid-run":

        def slow(request):  # type: ignore[no-untyped-def]
            if request.method == "GET" and f"/participants/{ADA}" in request.path:
                started.set()
                time.sleep(8)
            return real(request)

        box.app.dispatch = slow  # type: ignore[method-assign]
    try:
        proc, port = start(box, tmp)
        held: list[socket.socket] = []
        if state == "mid-run":
            score(box)
            started.wait(20)
        elif state == "after a run":
            score(box)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                import sqlite3

                with sqlite3.connect(tmp / "state" / "state.sqlite3") as db:
                    if db.execute("SELECT COUNT(*) FROM runs WHERE status = 'succeeded'").fetchone()[0]:
                        break
                time.sleep(0.05)
        elif state == "held connection":
            held.append(socket.create_connection(("127.0.0.1", port)))
            half = socket.create_connection(("127.0.0.1", port))
            half.sendall(b"POST /willo/webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            held.append(half)
        took, traceback = stop(proc)
        for s in held:
            s.close()
        return took, traceback
    finally:
        box.app.dispatch = real  # type: ignore[method-assign]


def main(rounds: int = 3) -> dict[str, float]:
    figures: dict[str, float] = {}
    with Sandbox(SandboxOptions(rate_limit=(0, 0), webhook_backoff=0.05)) as box:
        for state in ("idle", "mid-run", "after a run", "held connection"):
            samples, tracebacks = [], 0
            for _ in range(rounds):
                box.reset()
                took, traceback = one_round(box, state)
                samples.append(took)
                tracebacks += traceback
            figures[state] = statistics.median(samples)
            print(
                f"{state:<16} stop: median {statistics.median(samples):.2f} s, "
                f"worst {max(samples):.2f} s over {rounds} rounds; tracebacks: {tracebacks}"
            )
    return figures


if __name__ == "__main__":
    main()
