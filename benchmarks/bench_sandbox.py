"""Sandbox throughput: requests per second it serves on this machine (issue 3 asks for
at least a few hundred), with 8 client threads over keep-alive connections, and the
same load against a bare werkzeug app returning a fixed JSON body (the baseline)."""

from __future__ import annotations

import json
import threading

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


class _Quiet(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, *a: object, **k: object) -> None:
        pass


def bare_app(environ: dict, start_response) -> list[bytes]:  # type: ignore[no-untyped-def]
    body = json.dumps({"count": 2, "next": None, "previous": None, "results": []}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def main() -> dict[str, float]:
    with sandbox_process("--rate-limit", "0") as (base, key):
        rps = load(f"{base}/interviews/", {"Authorization": key})
    server = make_server("127.0.0.1", 0, bare_app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    bare = load(f"http://127.0.0.1:{server.server_port}/", {})
    server.shutdown()
    out = {"sandbox GET /interviews/ (req/s)": rps, "bare werkzeug (req/s, same process as client)": bare}
    for k, v in out.items():
        print(f"{k}: {v:.0f}")
    return out


if __name__ == "__main__":
    main()
