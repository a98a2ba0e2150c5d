"""The plugin author's SDK: everything a handler needs, typed, in one import.

::

    from connector.sdk import Client, Inputs, Output, ActionError, hookimpl

    def shortlist_best(inputs: Inputs, client: Client) -> Output:
        ...

A **handler** (:data:`Handler`) is called as ``handler(inputs, client)`` with inputs
already validated against its manifest's ``input`` schema; it returns the output
dict, which the host checks against the manifest's ``output`` schema (a value that
is not of the schema's top-level type, or not JSON, is an error of the plugin).

A **poll handler** (:data:`PollHandler`) feeds a polling trigger whose manifest says
``polling: {handler: ID, id: FIELD, order: FIELD}`` instead of naming one list
action. It is called as ``poll(options, client, cursor)`` and returns the items it
can see (any order, duplicates allowed); the host does the rest, as for a list
action: an item is emitted once per ``id`` (dedupe), and with ``order`` only if its
``order`` value is not older than ``cursor``, the newest ``order`` value emitted so
far (``None`` on the first poll). ``cursor`` lets the handler stop early (fetch only
what is newer); ignoring it is correct, only slower.

**Errors**: raise :class:`ActionError` with a message for the user when the action
cannot be done, :class:`InputError` for inputs the schema could not rule out, and
let the client's :class:`WilloError` family (:class:`NotFound`...) propagate. The
host names the action and your plugin in the message. Any other exception is
reported as a :class:`PluginError` of your plugin, with the file and line it came
from, never as an internal error of the host.

This module sits on the floor: it imports nothing but :mod:`connector.errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from connector.errors import (
    ActionError,
    BadRequest,
    ConnectorError,
    Forbidden,
    InputError,
    NotFound,
    PluginError,
    RateLimited,
    ServerError,
    Unauthorized,
    WilloError,
)

if TYPE_CHECKING:
    import pluggy

    hookimpl: pluggy.HookimplMarker

#: A handler's inputs: validated against the manifest's ``input`` schema.
Inputs = dict[str, Any]
#: A handler's output: checked against the manifest's ``output`` schema.
Output = dict[str, Any]
#: One item a poll handler returns (an event, once it is new).
Item = dict[str, Any]


@runtime_checkable
class Client(Protocol):
    """What a handler (and a poll handler) receives as ``client``.

    Requests go to the configured Willo account (or the sandbox, or a cassette),
    paced, retried and with the key attached; errors are :class:`WilloError`.
    """

    def call(self, action_id: str, inputs: Mapping[str, Any]) -> Any:
        """Run another action of the catalog (inputs validated) and return its output."""
        ...

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send one request (path below the base URL) and return the decoded JSON.

        ``idempotent`` (default: by method, or the manifest's ``idempotent``) says
        whether it may be resent after an ambiguous failure."""
        ...

    def paginate(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        items: str = "results",
        next_field: str = "next",
        limit: int | None = None,
    ) -> list[Any]:
        """Every item of a paged list, following ``next`` links (at least ``limit``
        items when given, then stops)."""
        ...


#: ``handler(inputs, client) -> output``: registered through ``action_handlers``.
Handler = Callable[[Inputs, Client], Output]

#: ``poll(options, client, cursor) -> items``: registered through ``poll_handlers``.
PollHandler = Callable[[Inputs, Client, str | None], Iterable[Item]]


def __getattr__(name: str) -> Any:
    if name == "hookimpl":  # the same marker as ``connector.hookimpl`` (pluggy loads lazily)
        import connector

        return connector.hookimpl
    raise AttributeError(f"module 'connector.sdk' has no attribute {name!r}")


__all__ = [
    "ActionError",
    "BadRequest",
    "Client",
    "ConnectorError",
    "Forbidden",
    "Handler",
    "InputError",
    "Inputs",
    "Item",
    "NotFound",
    "Output",
    "PluginError",
    "PollHandler",
    "RateLimited",
    "ServerError",
    "Unauthorized",
    "WilloError",
    "hookimpl",
]
