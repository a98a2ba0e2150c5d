"""Sandbox throughput: requests per second it serves on this machine.

1. (issue 3) ``GET /interviews/`` of the demo with 8 client threads over keep-alive
   connections (``requests``), and the same load against a bare werkzeug app returning a
   fixed JSON body (the baseline).
2. (issue 16) A sandbox of 100,000 participants (``--participants``): random pages of 30
   (newest first, and by ``-completed_at``), a lookup by e-mail, one participant by key;
   the same pages against 1,000 participants (flat in N: the ratio), and seeding time.
   The client here is 2 processes of 4 threads on ``http.client``, so that the server,
   not the client, is what is measured.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import random
import threading
import time
from urllib.parse import urlsplit

import requests
from common import run_threads, sandbox_process
from werkzeug.serving import WSGIRequestHandler, make_server


def load(url: str, headers: dict[str, str], threads: int = 8, per_thread: int = 250) -> float:
    def worker() -> None:
        s = requests.Session()
        s.trust_env = False
        for _ in range(per_thread):
            r = s.get(url, headers=headers)
            assert r.status_code == 200, r.status_code

    return threads * per_thread / run_threads(worker, threads)


def _client(base: str, key: str, paths: list[str], per_thread: int, seed: int) -> None:
    u = urlsplit(base)

    def worker() -> None:
        conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port)
        rng = random.Random(seed + threading.get_ident())
        for _ in range(per_thread):
            conn.request("GET", u.path + rng.choice(paths), headers={"Authorization": key})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status

    run_threads(worker, 4)


def load_server(base: str, key: str, paths: list[str], procs: int = 2, per_thread: int = 300) -> float:
    """Requests/s from ``procs`` client processes of 4 threads, each asking random ``paths``."""
    ps = [mp.Process(target=_client, args=(base, key, paths, per_thread, i)) for i in range(procs)]
    t0 = time.perf_counter()
    for p in ps:
        p.start()
    for p in ps:
        p.join()
        assert p.exitcode == 0
    return procs * 4 * per_thread / (time.perf_counter() - t0)


class _Quiet(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, *a: object, **k: object) -> None:
        pass


def bare_app(environ: dict, start_response) -> list[bytes]:  # type: ignore[no-untyped-def]
    body = json.dumps({"count": 2, "next": None, "previous": None, "results": []}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _pages(n: int, extra: str = "") -> list[str]:
    rng = random.Random(n)
    return [f"/participants/?page={rng.randint(1, n // 30)}&page_size=30{extra}" for _ in range(500)]


def large(n: int = 100_000, small: int = 1_000) -> dict[str, float]:
    from connector.sandbox import Sandbox, SandboxOptions
    from connector.sandbox.seed import stable

    t0 = time.perf_counter()
    Sandbox(SandboxOptions(participants=n))
    seeding = time.perf_counter() - t0
    out: dict[str, float] = {f"seed {n:,} participants (s)": seeding}
    with sandbox_process("--rate-limit", "0", "--participants", str(small)) as (base, key):
        load_server(base, key, _pages(small)[:20], per_thread=5)  # warm up
        out[f"pages of 30, {small:,} participants (req/s)"] = load_server(base, key, _pages(small))
    with sandbox_process("--rate-limit", "0", "--participants", str(n)) as (base, key):
        t0 = time.perf_counter()
        requests.get(base + _pages(n)[0], headers={"Authorization": key}).raise_for_status()
        out["first page: builds its index (s)"] = time.perf_counter() - t0
        load_server(base, key, _pages(n, "&ordering=-completed_at")[:20], per_thread=5)
        out[f"pages of 30, {n:,} participants (req/s)"] = load_server(base, key, _pages(n))
        out[f"pages of 30 by -completed_at, {n:,} (req/s)"] = load_server(
            base, key, _pages(n, "&ordering=-completed_at")
        )
        rng = random.Random(1)
        emails = [f"/participants/?email=candidate{rng.randrange(n):06d}@example.com" for _ in range(500)]
        t0 = time.perf_counter()
        requests.get(base + emails[0], headers={"Authorization": key}).raise_for_status()
        out["first lookup by e-mail: builds its index (s)"] = time.perf_counter() - t0
        out[f"lookup by e-mail, {n:,} (req/s)"] = load_server(base, key, emails)
        keys = [f"/participants/{stable(f'participant:bulk:{rng.randrange(n)}')}/" for _ in range(500)]
        out[f"one participant by key, {n:,} (req/s)"] = load_server(base, key, keys)
        out["demo GET /interviews/, same client (req/s)"] = load_server(base, key, ["/interviews/"])
    out["pages: 100,000 / 1,000 participants"] = (
        out[f"pages of 30, {n:,} participants (req/s)"] / out[f"pages of 30, {small:,} participants (req/s)"]
    )
    return out


def main() -> dict[str, float]:
    with sandbox_process("--rate-limit", "0") as (base, key):
        rps = load(f"{base}/interviews/", {"Authorization": key})
    server = make_server("127.0.0.1", 0, bare_app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    bare = load(f"http://127.0.0.1:{server.server_port}/", {})
    server.shutdown()
    out = {"sandbox GET /interviews/ (req/s)": rps, "bare werkzeug (req/s, same process as client)": bare}
    out.update(large())
    for k, v in out.items():
        print(f"{k}: {v:.2f}" if v < 10 else f"{k}: {v:.0f}")
    return out


if __name__ == "__main__":
    main()
