"""The accounts a worker process serves: one :class:`Connector` each, built once and
shared by every activity of the process, and each account's rate budget as the
Temporal server enforces it (the rate of its task queue).

An account is named by its connection (``default`` is the environment's settings:
``WILLO_API_KEY``, ``WILLO_BASE_URL``, ``WILLO_RATE_LIMIT``). Everything in the
Temporal engine is keyed by that name: the task queue of its units, the workflow ids
of its events and pollers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.workflows.runtime import Connector

DEFAULT = "default"
#: the share of an account's budget its task queue is given: the rest absorbs the
#: jitter between the server handing out a task and the request reaching Willo
SHARE = 0.95


def build_default(name: str) -> Connector:
    """The connector of ``name``, from the environment's settings."""
    from connector.http.client import Settings
    from connector.workflows.runtime import Connector

    if name != DEFAULT:
        raise ConfigError(
            f"connection {name!r}: only the {DEFAULT!r} connection (the environment's WILLO_* "
            "settings) is known to this worker"
        )
    return Connector(settings=Settings.from_env())


class Fleet:
    """This process's accounts: ``make(name)`` builds one's connector on first use."""

    def __init__(self, make: Callable[[str], Connector] = build_default, names: Iterable[str] = (DEFAULT,)):
        self._make = make
        self.names = list(dict.fromkeys(names))
        self._built: dict[str, Connector] = {}
        self._lock = threading.Lock()

    def connector(self, name: str) -> Connector:
        with self._lock:
            found = self._built.get(name)
            if found is None:
                found = self._built[name] = self._make(name)
            return found

    def limits(self, name: str) -> tuple[int, int]:
        """``(per second, per minute)`` of the account (0: none)."""
        from connector.http.pacing import parse_rate

        return parse_rate(self.connector(name).client.settings.rate)

    def unit_rate(self, name: str) -> float | None:
        """Units per second the account's task queue may hand out, across every worker:
        within its per-second and its per-minute limit; None when it has none."""
        per_s, per_m = self.limits(name)
        rates = [r for r in (float(per_s), per_m / 60.0) if r > 0]
        return min(rates) * SHARE if rates else None

    def close(self) -> None:
        with self._lock:
            for conn in self._built.values():
                if conn._client is not None:
                    conn._client.close()
            self._built.clear()


_current: Fleet | None = None
_current_lock = threading.Lock()


def install(fleet: Fleet | None) -> None:
    """Make ``fleet`` the accounts this process's activities use (None: forget it)."""
    global _current
    with _current_lock:
        _current = fleet


def current() -> Fleet:
    with _current_lock:
        if _current is None:
            raise ConfigError("no worker accounts installed in this process (start `willo-connector worker`)")
        return _current
