"""Typed errors. Each one prints as one line the CLI can show as it is."""

from __future__ import annotations

import reprlib
from typing import Any

from connector import redaction

#: how much of a value an error message quotes
QUOTE_LIMIT = 60


def short(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """A repr of ``value`` cut to about ``limit`` characters: an error message never
    quotes a whole (possibly huge, possibly secret) value. ``reprlib`` bounds every
    level while formatting, so a million-row list costs no more than a short one."""
    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 6
    r.maxlevel = 3
    text = redaction.scrub(r.repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConnectorError(Exception):
    """Base of every expected failure; ``str()`` is a one-line message, with every
    registered secret scrubbed (see :mod:`connector.redaction`)."""

    exit_code = 1

    def __str__(self) -> str:
        return redaction.scrub(super().__str__())


class ConfigError(ConnectorError):
    """A missing or unsafe setting (no API key, an http:// base URL)."""


class ManifestError(ConnectorError):
    """One or more manifests or workflows failed validation."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class UnknownIdError(ConnectorError):
    """An action or trigger id that is not in the catalog."""


class InputError(ConnectorError):
    """Inputs that do not satisfy an input schema."""


class OutputError(ConnectorError):
    """A response that does not satisfy the action's output schema (strict mode)."""

    sent = False  # True when Willo answered 2xx: the request landed
    output: Any = None  # then, the answer


class ActionError(ConnectorError):
    """Raised by a plugin's handler when its action cannot be done, with a message for
    the user (``raise ActionError("no participant has a score yet")``). The host adds
    the action's id and the plugin's name."""

    action: str | None = None
    plugin: str | None = None

    def attribute(self, action: str, plugin: str) -> None:
        """Name the action and plugin in the message (once: the innermost action wins)."""
        if self.action is None:
            self.action, self.plugin = action, plugin
            self.args = (f"{action} (plugin {plugin}): {self}",)


class PluginError(ActionError):
    """A plugin's code misbehaved: its handler raised an unexpected exception or
    returned the wrong type. The message names the plugin, the action and where."""


class WilloError(ConnectorError):
    """An error answer from Willo (or a failure to reach it)."""

    status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str = "",
        url: str = "",
        field_errors: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ):
        self.message = message
        if status is not None:
            self.status = status
        self.method = method
        self.url = url
        self.field_errors = field_errors or {}
        self.retry_after = retry_after
        super().__init__(self._line())

    def _line(self) -> str:
        where = f"{self.method} {self.url}: " if self.method else ""
        return where + self.short()

    def short(self) -> str:
        """The status, message and field errors, without the request."""
        code = f"{self.status} " if self.status else ""
        text = f"{code}{self.message}"
        if self.field_errors:
            shown = list(self.field_errors.items())[:SHOWN]
            fields = "; ".join(f"{name}: {_join(msgs)}" for name, msgs in shown)
            more = len(self.field_errors) - len(shown)
            text += f" ({fields}{f'; and {more} more' if more > 0 else ''})"
        return text


def _join(msgs: Any) -> str:
    if isinstance(msgs, list):
        return " ".join(str(m) for m in msgs)
    return str(msgs)


NON_FIELD = "non_field_errors"
#: Field errors shown in an error's one line (all are kept in ``field_errors``).
SHOWN = 10
#: Deeper than this, an error body is shown as text at the pointer it reached.
MAX_DEPTH = 16


def field_errors(body: Any) -> tuple[list[str], dict[str, list[str]]]:
    """Django REST framework's error body as ``(general messages, {pointer: messages})``.

    Every shape DRF gives: ``{"field": ["msg"]}``, a nested serializer's
    ``{"settings": {"deadline": [...]}}``, a list serializer's or ListField's
    ``{"questions": {"1": {"text": [...]}}}`` or ``{"questions": [{}, {"text": [...]}]}``,
    ``non_field_errors`` at any depth (its pointer is its parent's) and detailed errors
    (``{"message": ..., "code": ...}``). Pointers are JSON pointers without the leading
    slash: ``questions/1/text``.
    """
    general: list[str] = []
    found: dict[str, list[str]] = {}

    def add(at: list[str], message: Any) -> None:
        if at:
            found.setdefault("/".join(at), []).append(str(message))
        else:
            general.append(str(message))

    def leaf(value: Any) -> bool:  # a message, or DRF's get_full_details() {"message", "code"}
        if isinstance(value, dict):
            return isinstance(value.get("message"), str) and set(value) <= {"message", "code"}
        return not isinstance(value, list)

    def walk(value: Any, at: list[str]) -> None:
        if len(at) > MAX_DEPTH and not leaf(value):
            add(at, _text(value))
        elif isinstance(value, dict) and not leaf(value):
            for key, inner in value.items():
                walk(inner, at if key == NON_FIELD else [*at, escape(str(key))])
        elif isinstance(value, list):
            for i, inner in enumerate(value):
                walk(inner, at if leaf(inner) else [*at, str(i)])
        elif isinstance(value, dict):
            add(at, value["message"])
        elif value is not None:
            add(at, value)

    walk(body, [])
    return general, found


def _text(value: Any) -> str:
    import json

    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = "..."
    return text if len(text) <= 200 else text[:197] + "..."


def escape(token: str) -> str:
    """One JSON pointer token (RFC 6901): ``~`` and ``/`` escaped."""
    return token.replace("~", "~0").replace("/", "~1")


def pointer(parts: Any) -> str:
    """The JSON pointer of a path of keys and indexes (``""`` for the root)."""
    return "".join("/" + escape(str(p)) for p in parts)


class BadRequest(WilloError):
    status = 400


class Unauthorized(WilloError):
    status = 401


class Forbidden(WilloError):
    status = 403


class NotFound(WilloError):
    status = 404


class MethodNotAllowed(WilloError):
    status = 405


class RateLimited(WilloError):
    status = 429


class ServerError(WilloError):
    status = 500


class NetworkError(WilloError):
    """Willo could not be reached (DNS, refused, timed out)."""


class CassetteMiss(WilloError):
    """A replayed run made a request its cassette does not hold."""


class AmbiguousRequestError(WilloError):
    """A non-idempotent request failed after it may have landed; it was not resent."""


class TimedOut(WilloError):
    """A step's timeout ran out before a request could be sent (or its retry waited for)."""


BY_STATUS: dict[int, type[WilloError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    429: RateLimited,
}


def error_for_status(status: int) -> type[WilloError]:
    if status >= 500:
        return ServerError
    return BY_STATUS.get(status, WilloError)
