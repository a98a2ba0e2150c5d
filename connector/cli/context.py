"""Building the connector a command runs with: live, dry run, cassette or sandbox."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from connector.http.client import Settings
from connector.workflows.runtime import Connector


@contextlib.contextmanager
def connector_for(
    *, dry_run: bool = False, sandbox: bool = False, cassette: str | None = None
) -> Iterator[Connector]:
    """A :class:`Connector` configured for this command; cleans up what it started."""
    with contextlib.ExitStack() as stack:
        overrides: dict[str, Any] = {}
        if sandbox:
            from connector.sandbox import Sandbox, SandboxOptions

            box = stack.enter_context(Sandbox(SandboxOptions(seed="demo", rate_limit=(10, 100))))
            overrides = {"base_url": box.base_url, "api_key": box.api_key, "auth_scheme": ""}
        settings = Settings.from_env(**overrides)
        if cassette:
            from connector.http.cassettes import replay

            stack.enter_context(replay(cassette))
            if not settings.api_key:
                settings.api_key = os.environ.get("WILLO_API_KEY") or "cassette-replay"
        conn = Connector(settings=settings, dry_run=dry_run)
        conn.serial = bool(cassette)
        yield conn
        if conn._client is not None:
            conn._client.close()
