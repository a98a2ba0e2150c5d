"""The hooks a willo-connector plugin may implement.

Every hook is optional. Built-in actions and triggers implement these same hooks.
Results of each hook are collected from every plugin (pluggy's default), so a
hook returns only what its own plugin contributes. The types a plugin's code uses
(:class:`~connector.sdk.Client`, :data:`~connector.sdk.Handler`,
:data:`~connector.sdk.PollHandler`, the errors to raise) live in :mod:`connector.sdk`;
``docs/plugin-guide.md`` documents every hook at length.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pluggy

from connector import PROJECT_NAME
from connector.sdk import Client, Handler, PollHandler

hookspec = pluggy.HookspecMarker(PROJECT_NAME)

__all__ = ["Client", "Handler", "PollHandler", "hookspec"]


@hookspec
def manifest_paths() -> list[str | Path]:
    """Return the YAML manifest files, or folders of them, that this plugin ships.

    Called once when the catalog is built. Folders are searched recursively for
    ``*.yaml`` and ``*.yml``; files whose top level has ``resources:`` define shared
    schemas that manifests reference as ``{$ref: "resource:NAME"}``.

    :return: paths (absolute, or made absolute by the plugin) to manifests.
    """


@hookspec
def action_handlers() -> dict[str, Handler]:
    """Return ``{manifest_id: handler}`` for actions that are not one HTTP request.

    A handler (:data:`connector.sdk.Handler`) is called as ``handler(inputs, client)``
    where ``inputs`` is the input dict already validated against the manifest's
    ``input`` schema and ``client`` is a :class:`connector.sdk.Client`:
    ``client.request(method, path, ...)`` and ``client.paginate(...)`` return decoded
    JSON and raise :mod:`connector.errors`; ``client.call(action_id, inputs)`` runs
    another action of the catalog. The handler returns the output dict, which the host
    checks against the manifest's ``output`` schema: a value that is not of its
    top-level type, or not JSON, is an error of the plugin. An exception other than
    :class:`connector.errors.ConnectorError` is reported as the plugin's and the
    action's error (:class:`connector.errors.PluginError`). A dry run never calls it.

    :return: a mapping of manifest id to callable.
    """


@hookspec
def poll_handlers() -> dict[str, PollHandler]:
    """Return ``{handler_id: poll}`` for polling triggers that are not one list action.

    A trigger manifest names one as ``polling: {handler: ID, id: FIELD, order: FIELD}``.
    Called on every poll as ``poll(options, client, cursor)``: ``options`` are the
    trigger's validated options (``--with`` / a workflow's ``trigger.with``),
    ``client`` a :class:`connector.sdk.Client`, ``cursor`` the newest ``order`` value
    emitted so far (an integer as an integer, a timestamp as UTC ISO 8601 with
    microseconds; ``None`` before the first emission, or when the manifest has no
    ``order``). It returns the items it sees, in any order; the host emits each item
    once per ``id`` and, with ``order``, never one older than the cursor, exactly as
    for a list action (the dedupe and cursor strategies of Activepieces'
    ``pollingHelper``, kept in the state store).

    :return: a mapping of poll handler id to callable.
    """


@hookspec
def prepare_request(manifest: Mapping[str, Any], request: dict[str, Any]) -> None:
    """Inspect or change an outgoing request just before it is sent.

    Called for every HTTP request an action makes (declarative or from a handler),
    and for every request a dry run shows. ``request`` has ``method``, ``url``,
    ``params``, ``json`` and ``headers``; change it in place. ``manifest`` is the
    action's manifest, or an empty mapping for a request outside an action.

    :return: nothing; the change is made to ``request``.
    """


@hookspec
def template_filters() -> dict[str, Callable[..., Any]]:
    """Return extra Jinja2 filters, ``{name: function}``, for workflow expressions.

    Called once when the expression environment is built. A filter runs inside the
    sandbox and receives only data values. A filter cannot replace a built-in Jinja2
    filter or another plugin's: such a clash is recorded as this plugin's problem,
    naming both (``willo-connector plugins`` shows it; strict mode makes it an error),
    and the built-in (or the first plugin's filter) stays.

    :return: a mapping of filter name to callable.
    """


@hookspec
def event_received(trigger: str, event: Mapping[str, Any]) -> None:
    """Observe every event a trigger emits, polling or webhook, before dispatch.

    ``trigger`` is the trigger's manifest id and ``event`` the validated event.
    Exceptions raised here are logged and do not stop the dispatch.

    :return: nothing.
    """
