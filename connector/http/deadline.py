"""A total deadline for each HTTP attempt, from sending to the last byte of the answer.

requests and urllib3 time out each socket read, not an answer: a server that
trickles its headers or body a byte at a time keeps a request alive for ever. Here a
watchdog thread shuts down the socket of an attempt that outlives its deadline; the
blocked read then fails at once and the client reports (or retries) it like a read
timeout.

The socket is found through the connection classes of :class:`DeadlineAdapter`'s
pools, which attach each connection to the attempt running in the current thread.
When vcrpy answers requests from a cassette it replaces those connection classes,
and nothing is watched: a cassette never trickles.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ReadTimeoutError
from urllib3.poolmanager import ProxyManager


class DeadlineExceeded(ReadTimeoutError):
    """The answer did not arrive complete within the deadline."""

    def __init__(self, seconds: float):
        super().__init__(None, "", f"no complete answer within {seconds:g} s")  # type: ignore[arg-type]
        self.seconds = seconds


class Attempt:
    """One attempt's deadline and the connections it used."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self.finished = False
        self._conns: list[Any] = []
        self._lock = threading.Lock()

    def attach(self, conn: Any) -> None:
        with self._lock:
            self._conns.append(conn)
            if self.expired:
                _shut(conn)

    def expire(self) -> None:
        with self._lock:
            if self.finished:
                return
            self.expired = True
            for conn in self._conns:
                _shut(conn)

    def finish(self) -> None:
        with self._lock:
            self.finished = True
            self._conns.clear()


def _shut(conn: Any) -> None:
    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    with contextlib.suppress(OSError):
        # the plain socket's shutdown, also for an SSLSocket: the blocked read fails at once
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread expiring attempts whose deadline has passed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Attempt]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, attempt: Attempt) -> None:
        with self._cond:
            heap = self._heap
            while heap and heap[0][2].finished:
                heapq.heappop(heap)  # done in time: forget it (the heap stays as long as what is in flight)
            # The thread sleeps until the earliest deadline: it is woken only when this one
            # comes first (not for every request: each wake is a thread switch, and a foreach's
            # threads wait for the GIL behind it).
            earlier = not heap or attempt.deadline < heap[0][0]
            heapq.heappush(heap, (attempt.deadline, next(self._order), attempt))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="willo-http-deadline", daemon=True)
                self._thread.start()
            elif earlier:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].finished:
                    heapq.heappop(self._heap)  # done in time: forget it
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, attempt = heapq.heappop(self._heap)
            attempt.expire()


_WATCHDOG = _Watchdog()
_current = threading.local()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[Attempt]:
    """Run one HTTP attempt in this thread under a deadline of ``seconds``."""
    attempt = Attempt(seconds)
    _current.attempt = attempt
    _WATCHDOG.watch(attempt)
    try:
        yield attempt
    finally:
        attempt.finish()
        _current.attempt = None


def _attach_current(conn: Any) -> None:
    attempt: Attempt | None = getattr(_current, "attempt", None)
    if attempt is not None:
        attempt.attach(conn)


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_current(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_current(self)
        super().request(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    @property
    def ConnectionCls(self) -> Any:  # type: ignore[override]
        # urllib3's class unless something (vcrpy replaying a cassette) replaced it
        base = HTTPConnectionPool.ConnectionCls
        return _WatchedHTTPConnection if base is HTTPConnection else base


class _HTTPSPool(HTTPSConnectionPool):
    @property
    def ConnectionCls(self) -> Any:  # type: ignore[override]
        base = HTTPSConnectionPool.ConnectionCls
        return _WatchedHTTPSConnection if base is HTTPSConnection else base


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter, with pools whose connections the deadline can watch."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:
            manager.pool_classes_by_scheme = _POOLS
        return manager
