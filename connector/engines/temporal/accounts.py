"""The accounts a worker process serves: one :class:`Connector` each, built once and
shared by every activity of the process, and each account's rate budget as the
Temporal server enforces it (the rate of its task queue).

An account is named by its connection (``default`` is the environment's settings:
``WILLO_API_KEY``, ``WILLO_BASE_URL``, ``WILLO_RATE_LIMIT``). Everything in the
Temporal engine is keyed by that name: the task queue of its units, the workflow ids
of its events and pollers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.connections import Connections
    from connector.workflows.runtime import Connector

DEFAULT = "default"
#: the task queue's rate over the account's per-second limit: the queue only keeps
#: workers from holding units they cannot send yet (a little over the limit, so that
#: the server's token buckets, one per queue partition, never leave a slot unused);
#: the budget workflow keeps the exact windows (see :mod:`.budget`)
SHARE = 1.25


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
    """This process's accounts: ``make(name)`` builds one's connector on first use;
    ``plan(name)`` one that only plans (expressions, branches: no request, no key),
    for runs of any account, whose plans every worker makes (default: ``make``)."""

    def __init__(
        self,
        make: Callable[[str], Connector] = build_default,
        names: Iterable[str] = (DEFAULT,),
        plan: Callable[[str], Connector] | None = None,
    ):
        self._make = make
        self._plan = plan
        self.names = list(dict.fromkeys(names))
        self._built: dict[str, Connector] = {}
        self._lock = threading.Lock()
        #: (client, loop, settings) once the worker is connected: requests then reserve
        #: their slots in the account's shared budget
        self._shared: tuple[Any, Any, Any] | None = None

    def share_budgets(self, client: Any, loop: Any, settings: Any) -> None:
        """From now on, every connector built here paces through its account's budget
        workflow (shared by all workers) instead of a pacer of this process."""
        self._shared = (client, loop, settings)

    def connector(self, name: str) -> Connector:
        with self._lock:
            found = self._built.get(name)
            if found is None:
                found = self._built[name] = self._make(name)
                self._pace_shared(name, found)
            return found

    def planner(self, name: str) -> Connector:
        """The connector a run of account ``name`` is planned with: it renders
        expressions and reads the catalog, and never sends, so a worker plans the runs
        of accounts whose keys it does not hold."""
        if self._plan is None:
            return self.connector(name)
        return self._plan(name)

    def _pace_shared(self, name: str, conn: Connector) -> None:
        limits = self._limits_of(conn)
        if self._shared is None or not any(limits) or conn.dry_run:
            return
        from connector.engines.temporal.budget import Budget, FleetPacer
        from connector.http.client import WilloClient

        client, loop, settings = self._shared
        old = conn.client
        conn._client = WilloClient(
            old.settings,
            prepare=conn._prepare,
            pacer=FleetPacer(Budget(client, loop, settings, name, limits)),
        )
        old.close()

    @staticmethod
    def _limits_of(conn: Connector) -> tuple[int, int, int]:
        """The account's per-second and per-minute limits and daily quota: its
        connection's (``rate_limit``, ``daily_quota``; the environment's for
        ``default``), or ``WILLO_DAILY_QUOTA`` for a connector built from settings."""
        from connector.http.pacing import parse_rate

        per_s, per_m = parse_rate(conn.client.settings.rate)
        quota = conn.connection.daily_quota if conn.connection is not None else daily_quota()
        return per_s, per_m, quota

    def limits(self, name: str) -> tuple[int, int, int]:
        """``(per second, per minute, per day)`` of the account (0: none)."""
        return self._limits_of(self.connector(name))

    def unit_rate(self, name: str) -> float | None:
        """Units per second the account's task queue may hand out, across every worker:
        its per-second limit (the per-minute one and the day's quota are kept by its
        budget workflow); None when it has none."""
        per_s, per_m, _ = self.limits(name)
        if per_s:
            return per_s * SHARE
        return per_m / 60.0 * SHARE if per_m else None

    def close(self) -> None:
        with self._lock:
            for conn in self._built.values():
                if conn._client is not None:
                    conn._client.close()
            self._built.clear()


def fleet_of(known: Connections, names: Iterable[str]) -> Fleet:
    """The accounts of ``worker -c NAME ...``: each a connection of ``known`` (the
    config file's, or the environment's ``default``), its key read when first used;
    a step's ``connection:`` reaches the others through the fleet; plans use
    connectors that need no key."""
    from connector.workflows.runtime import Connector, ConnectorPool

    def make(name: str) -> Connector:
        conn = known.get(name)
        return Connector(settings=conn.settings(api_key=conn.api_key()), connection=conn)

    def plan(name: str) -> Connector:
        conn = known.get(name)
        return Connector(settings=conn.settings(key=False), connection=conn)

    plans = ConnectorPool(plan, known.names())
    fleet = Fleet(make=make, names=names, plan=plans.get)
    pool = ConnectorPool(fleet.connector, known.names())
    build = fleet.connector

    def pooled(name: str) -> Connector:
        conn = build(name)
        conn.pool = pool  # a step's connection: the other accounts' connectors, through the fleet
        return conn

    fleet.connector = pooled  # type: ignore[method-assign]
    return fleet


def daily_quota(env: Any = None) -> int:
    """``WILLO_DAILY_QUOTA``: requests an account may send in a UTC day across every
    worker (0 or unset: no quota)."""
    env = os.environ if env is None else env
    raw = (env.get("WILLO_DAILY_QUOTA") or "0").strip().replace(",", "").replace("_", "")
    if not raw.isdigit():
        raise ConfigError(f"WILLO_DAILY_QUOTA={raw!r}: a whole number of requests a day (0: none)")
    return int(raw)


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
