"""Issue 9, items 13-15 (and the client half of issue 18, item 5): a hostile server
cannot make the client wait forever or take a redirect for success, and hostile
clients cannot starve or crash the webhook receiver.

The hostile servers and clients here are raw sockets on loopback; every wait is
bounded by a generous timeout, so a regression fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from connector import errors
from connector.cli import main
from connector.http.client import Settings, WilloClient
from connector.http.pacing import Pacer
from connector.state.store import StateStore
from connector.triggers.receiver import Inbox, Listener, make_app

API = "/api/integrations/v2"


class Hostile:
    """A raw HTTP server on loopback; ``answer(sock, method, path, hits)`` writes bytes."""

    def __init__(self, answer: Callable[[socket.socket, str, str, int], None]):
        self.answer = answer
        self.hits = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}{API}"
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            method, path, _ = data.split(b"\r\n", 1)[0].decode().split(" ", 2)
            self.hits += 1
            with contextlib.suppress(OSError):
                self.answer(conn, method, path, self.hits)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def respond(conn: socket.socket, status: str, body: bytes = b"", **headers: str) -> None:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    conn.sendall(head.encode() + b"\r\n" + body)


def page(conn: socket.socket, body: dict) -> None:
    respond(conn, "200 OK", json.dumps(body).encode(), Content_Type="application/json")


@pytest.fixture
def hostile() -> Iterator[Callable[..., Hostile]]:
    servers: list[Hostile] = []

    def make(answer: Callable[[socket.socket, str, str, int], None]) -> Hostile:
        servers.append(Hostile(answer))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def client(server: Hostile, **kw) -> WilloClient:
    settings = Settings(base_url=server.base_url, api_key="k_hostile_test", backoff=0.01, **kw)
    return WilloClient(settings, pacer=Pacer(0, 0))


# --------------------------------------------------------------------------- 9.13 the client


def test_a_huge_retry_after_is_not_obeyed(hostile, monkeypatch) -> None:
    def answer(conn, method, path, hits):
        respond(conn, "429 Too Many Requests", b'{"detail": "slow down"}', Retry_After="100000")

    def sleep(seconds: float) -> None:
        raise AssertionError(f"the client slept {seconds} s")

    monkeypatch.setattr("urllib3.util.retry.time.sleep", sleep)
    server = hostile(answer)
    with pytest.raises(errors.RateLimited, match="Retry-After") as err:
        client(server).request("GET", "/departments/")
    assert "100000" in str(err.value) and server.hits == 1


def test_a_next_link_to_itself_is_a_loop_error(hostile) -> None:
    def answer(conn, method, path, hits):
        if hits > 20:  # a client that loops is stopped here (and fails the test)
            return respond(conn, "400 Bad Request", b'{"detail": "enough"}')
        page(conn, {"count": 2, "next": f"{server.base_url}/departments/?page=1", "results": [{"k": hits}]})

    server = hostile(answer)
    with pytest.raises(errors.WilloError, match="already fetched"):
        client(server).paginate("GET", "/departments/?page=1")
    assert server.hits == 1  # the loop is seen in the link, before fetching it again


def test_pages_without_end_are_cut_off(hostile, monkeypatch) -> None:
    def answer(conn, method, path, hits):
        if hits > 20:
            return respond(conn, "400 Bad Request", b'{"detail": "enough"}')
        page(conn, {"count": 2, "next": f"{server.base_url}/departments/?page={hits + 1}", "results": [1]})

    server = hostile(answer)
    c = client(server)
    c.max_pages = 5
    with pytest.raises(errors.WilloError, match="more than 5 pages"):
        c.paginate("GET", "/departments/")
    assert server.hits == 5


def trickle(conn: socket.socket, data: bytes, every: float = 0.1) -> None:
    for i in range(len(data)):
        conn.sendall(data[i : i + 1])
        time.sleep(every)


@pytest.mark.parametrize("phase", ["body", "headers"])
def test_a_trickled_answer_meets_a_total_deadline(hostile, phase: str) -> None:
    body = json.dumps({"count": 0, "next": None, "results": []}).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"

    def answer(conn, method, path, hits):
        if phase == "body":
            conn.sendall(head.encode())
            trickle(conn, body)  # ~4 s at one byte per 0.1 s
        else:
            trickle(conn, head.encode() + body)

    server = hostile(answer)
    started = time.monotonic()
    c = client(server, total_timeout=1.0, read_timeout=5.0, max_retries=0)
    with pytest.raises(errors.NetworkError, match="within 1 s"):
        c.request("GET", "/departments/")
    assert time.monotonic() - started < 30  # generous: the point is that it ends
    with pytest.raises(errors.AmbiguousRequestError, match="within 1 s"):
        c.request("POST", "/departments/", json={"name": "x"})


def test_a_deadline_does_not_cut_a_healthy_connection(sandbox) -> None:
    c = WilloClient(Settings.from_env(total_timeout=0.5), pacer=Pacer(0, 0))
    for _ in range(5):
        assert c.request("GET", "/languages/")["count"] == 12
        time.sleep(0.2)  # keep-alive connections outlive many deadlines


@pytest.mark.parametrize(
    ("status", "location", "needle"),
    [
        ("302 Found", "/login/?next=/x", "302"),
        ("301 Moved Permanently", f"{API}/departments/", "trailing slash"),
        ("307 Temporary Redirect", "https://elsewhere.example/x", "elsewhere.example"),
    ],
)
def test_a_redirect_is_an_error_naming_the_location(hostile, status: str, location: str, needle: str) -> None:
    def answer(conn, method, path, hits):
        respond(conn, status, b"", Location=location)

    server = hostile(answer)
    with pytest.raises(errors.WilloError, match=needle) as err:
        client(server).request("GET", "/departments")
    assert location.split("?")[0] in str(err.value)


def test_a_redirect_through_the_cli_is_a_one_line_error(hostile) -> None:
    def answer(conn, method, path, hits):
        respond(conn, "302 Found", b"", Location="/accounts/login/")

    server = hostile(answer)
    r = CliRunner().invoke(
        main,
        ["call", "willo.list_departments", "--json"],
        env={"WILLO_BASE_URL": server.base_url, "WILLO_API_KEY": "k_hostile_test"},
    )
    assert r.exit_code == 1, r.output
    assert r.stdout == "" and r.stderr.count("\n") == 1 and "/accounts/login/" in r.stderr


# --------------------------------------------------------------------------- 9.14-9.15 the receiver


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Callable[..., Listener]]:
    made: list[Listener] = []

    def make(**kw) -> Listener:
        inbox = Inbox(StateStore(tmp_path / "st"))
        lis = Listener(make_app(inbox), "127.0.0.1", 0, lambda: 0, **kw)
        lis.start()
        made.append(lis)
        return lis

    yield make
    for lis in made:
        lis.stop()


def delivery() -> bytes:
    return json.dumps({"id": f"evt_{time.time_ns()}", "event": "new_score", "data": {"score": 4}}).encode()


def slow_clients(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /willo/webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")  # never finished
        socks.append(s)
    return socks


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(30)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_slow_connections_do_not_block_deliveries(listener) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 1024:  # both ends of 120 sockets live in this process
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    lis = listener()
    socks = slow_clients(lis.port, 120)  # waitress's default limit was 100
    try:
        r = requests.post(f"http://127.0.0.1:{lis.port}/willo/webhooks", data=delivery(), timeout=15)
        assert r.status_code == 202
    finally:
        for s in socks:
            s.close()


def keep_trickling(socks: list[socket.socket], stop: threading.Event) -> None:
    """Slowloris proper: a header byte now and then, so no idle timeout ever fires."""
    while not stop.wait(0.2):
        for s in socks:
            with contextlib.suppress(OSError):
                s.sendall(b"X")


def test_connections_that_never_finish_a_request_are_dropped(listener) -> None:
    lis = listener(connection_limit=20, request_timeout=1)
    socks = slow_clients(lis.port, 25)  # more than the limit: the listener stops accepting
    stop = threading.Event()
    threading.Thread(target=keep_trickling, args=(socks, stop), daemon=True).start()
    try:
        r = requests.post(f"http://127.0.0.1:{lis.port}/willo/webhooks", data=delivery(), timeout=30)
        assert r.status_code == 202  # the slow ones were dropped, and this one got in
        assert closed_by_server(socks[0])
    finally:
        stop.set()
        for s in socks:
            s.close()


def test_a_deeply_nested_body_is_a_400_not_a_500(listener, tmp_path: Path) -> None:
    deep = b'{"event": "new_score", "id": "e1", "data": {"x": ' + b"[" * 1000 + b"]" * 1000 + b"}}"
    assert len(deep) < 2100
    inbox = Inbox(StateStore(tmp_path / "st2"))
    assert inbox.accept({}, deep).status == 400
    lis = listener()
    r = requests.post(f"http://127.0.0.1:{lis.port}/willo/webhooks", data=deep, timeout=15)
    assert r.status_code == 400 and "nested" in r.json()["error"]
    r = requests.post(f"http://127.0.0.1:{lis.port}/willo/webhooks", data=delivery(), timeout=15)
    assert r.status_code == 202


def test_stopping_a_listener_whose_loop_has_ended_is_quiet(listener) -> None:
    """A second stop (or one after waitress's loop died) found the loop's trigger closed
    and raised `OSError: [Errno 9] Bad file descriptor`: the traceback of issue 9.7."""
    lis = listener()
    lis.stop()
    lis.stop()
