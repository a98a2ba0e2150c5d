"""Building the connectors a command runs with: live, dry run, cassette or sandbox,
one per connection (named with ``--connection``, a workflow's ``connection:``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from connector.workflows.runtime import Connector, ConnectorPool

if TYPE_CHECKING:
    from connector.state.store import StateStore


@contextlib.contextmanager
def connector_for(
    *,
    dry_run: bool = False,
    sandbox: bool = False,
    cassette: str | None = None,
    connection: str | None = None,
    store: StateStore | None = None,
    state_dir: str | None = None,
) -> Iterator[Connector]:
    """The :class:`Connector` of ``connection`` (default: ``default``), configured for
    this command, in a pool that builds the connector of any other connection a
    workflow names. Live connectors draw on their account's rate budget in the state
    store (``store``, else the one in ``state_dir``), shared with every other process.
    Cleans up what it started."""
    from connector import connections as accounts
    from connector.http.client import Settings

    with contextlib.ExitStack() as stack:
        known = accounts.load()
        known.get(connection, "--connection: ")  # unknown: say so before anything starts
        overrides: dict[str, Any] = {}
        if sandbox:
            from connector.sandbox import Sandbox, SandboxOptions

            box = stack.enter_context(Sandbox(SandboxOptions(seed="demo", rate_limit=(10, 100))))
            overrides = {"base_url": box.base_url, "api_key": box.api_key, "auth_scheme": ""}
        if cassette:
            from connector.http.cassettes import replay

            stack.enter_context(replay(cassette))
        live = not (dry_run or sandbox or cassette)
        budget_store: list[StateStore] = [store] if store is not None else []

        def shared_store() -> StateStore:
            if not budget_store:
                from connector.state.store import StateStore

                budget_store.append(StateStore(state_dir))
            return budget_store[0]

        def make(name: str) -> Connector:
            conn = known.get(name)
            if sandbox:
                return Connector(settings=conn.settings(**overrides), dry_run=dry_run, connection=conn)
            if cassette:
                replayed = conn.settings(key=False)
                if not replayed.api_key:
                    replayed.api_key = os.environ.get("WILLO_API_KEY") or "cassette-replay"
                made = Connector(settings=replayed, dry_run=dry_run, connection=conn)
                made.serial = True
                return made
            if not live:
                return Connector(settings=conn.settings(key=False), dry_run=True, connection=conn)
            key = conn.api_key()
            settings: Settings = conn.settings(api_key=key)
            pacer = conn.pacer(shared_store(), key) if key else None
            return Connector(settings=settings, connection=conn, pacer=pacer)

        pool = ConnectorPool(make, known.names())
        stack.callback(pool.close)
        yield pool.get(connection or accounts.DEFAULT)
