"""429s drawn by the client's pacer from Django REST framework's own throttles (issue 18).

The test-only DRF app (``tests/drf_app``: DRF 3.18's UserRateThrottle at 10/s and
100/min) in its own process; the client paced at 10/100 sends 40 requests one after
another, each delayed by 0-40 ms of random jitter between the pacer's slot and the
wire (what a network and a busy server add), from one thread and from four. Reports
429s per 40 requests and the run's time, for the pacer before issue 18 (a 2% margin
on each window, no reaction to a 429) and the pacer now, over several runs each with
the server's history cleared.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from common import ROOT

from connector.http.client import Settings, WilloClient
from connector.http.pacing import Pacer

RUNS = 8
REQUESTS = 40
JITTER = 0.04


class PacerBefore(Pacer):
    """The pacer before issue 18: each window 2% longer, a 429 changes nothing."""

    def __init__(self, per_second: int, per_minute: int):
        super().__init__(per_second, per_minute)
        self.windows = [(n, w * 1.02) for n, w in self.windows]
        self.slack = self.base_slack = 0.0
        self._log_lock = threading.Lock()
        self._plain: list[deque[float]] = [deque() for _ in self.windows]

    def reserve(self) -> float:
        with self._log_lock:
            now = time.monotonic()
            at = now
            for (limit, span), log in zip(self.windows, self._plain, strict=True):
                while log and log[0] <= now - span:
                    log.popleft()
                if log:
                    at = max(at, log[-1])
                if len(log) >= limit:
                    at = max(at, log[-limit] + span)
            for log in self._plain:
                log.append(at)
            return at - now

    def throttled(self, retry_after: float | None = None) -> None:
        self.throttles += 1


@contextmanager
def drf_app(throttle: str) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WILLO_", "DJANGO_"))}
    env["DRF_APP_THROTTLE"] = throttle
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.drf_app"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def one_run(info: dict[str, str], pacer: Pacer, rng: random.Random, threads: int) -> tuple[int, float]:
    rates = {"burst": "10/s", "sustained": "100/min"}
    requests.post(
        info["base_url"] + "/_sandbox/reset",
        json={"seed": "base", "throttle": rates},
        headers={"Authorization": info["api_key"]},
        timeout=30,
    ).raise_for_status()
    time.sleep(1.2)  # the reset itself is not throttled, but let any earlier window pass
    client = WilloClient(
        Settings.from_env(base_url=info["base_url"], api_key=info["api_key"], rate="10/100", max_retries=8),
        pacer=pacer,
    )
    send = client._send_once
    statuses: list[int] = []

    lock = threading.Lock()

    def jittered(*args: Any, **kwargs: Any) -> requests.Response:
        with lock:
            delay = rng.uniform(0, JITTER)
        time.sleep(delay)
        resp = send(*args, **kwargs)
        statuses.append(resp.status_code)
        return resp

    def worker() -> None:
        for _ in range(REQUESTS // threads):
            client.request("GET", "/languages/")

    client._send_once = jittered  # type: ignore[method-assign]
    t0 = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return statuses.count(429), time.perf_counter() - t0


def main() -> dict[str, Any]:
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp()
    figures: dict[str, Any] = {}
    with drf_app("burst=10/s,sustained=100/min") as info:
        for threads in (1, 4):
            for name, make in (("before", PacerBefore), ("after", Pacer)):
                rng = random.Random(18)
                runs = [one_run(info, make(10, 100), rng, threads) for _ in range(RUNS)]
                throttled = [n for n, _ in runs]
                label = f"{name}, {threads} thread{'s' if threads > 1 else ''}"
                figures[label] = {"429s": throttled, "seconds": [round(t, 2) for _, t in runs]}
                median = sorted(t for _, t in runs)[RUNS // 2]
                print(
                    f"{label:17}: 429s per {REQUESTS} requests {throttled} "
                    f"(mean {sum(throttled) / RUNS:.2f}); median seconds {median:.2f}"
                )
    return figures


if __name__ == "__main__":
    main()
