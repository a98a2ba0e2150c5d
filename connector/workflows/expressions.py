"""Expressions: Jinja2's immutable sandbox with StrictUndefined.

A string that is exactly one ``{{ expression }}`` evaluates to the expression's
native value (list, int, dict...); any other string renders as text. Nothing in
scope but data: no environment variables, no attribute access beyond data, no
file or network access, no mutation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from jinja2 import StrictUndefined, Undefined
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from connector.errors import ConnectorError

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.S)


class ExpressionError(ConnectorError):
    """An expression that failed to parse or evaluate; the message names it."""


class Omit(Exception):
    """Internal: a single-expression value whose input is absent."""


_ENV: ImmutableSandboxedEnvironment | None = None
_PATH_ENV: ImmutableSandboxedEnvironment | None = None
_EXTRA_FILTERS: dict[str, Callable[..., Any]] = {}


def _make(finalize: Callable[[Any], Any] | None = None) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, finalize=finalize, keep_trailing_newline=True
    )
    env.globals.clear()  # no range(), lipsum, dict(), cycler...
    env.filters.update(_EXTRA_FILTERS)
    return env


def environment() -> ImmutableSandboxedEnvironment:
    global _ENV
    if _ENV is None:
        _ENV = _make()
    return _ENV


def _path_environment() -> ImmutableSandboxedEnvironment:
    global _PATH_ENV
    if _PATH_ENV is None:
        _PATH_ENV = _make(finalize=lambda v: quote(str(v), safe=""))
    return _PATH_ENV


def add_filters(filters: Mapping[str, Callable[..., Any]]) -> None:
    """Make plugin filters available to every expression from now on. A built-in
    filter is never replaced (the plugin host records such a clash)."""
    from connector.catalog.plugins import builtin_filters

    filters = {k: v for k, v in filters.items() if k not in builtin_filters()}
    _EXTRA_FILTERS.update(filters)
    _CACHE.clear()
    for env in (_ENV, _PATH_ENV):
        if env is not None:
            env.filters.update(filters)


_CACHE: dict[tuple[int, str, str], Any] = {}
_CACHE_MAX = 2048


def _compiled(env: ImmutableSandboxedEnvironment, kind: str, text: str) -> Any:
    """A compiled template or expression, compiled once per environment and text."""
    key = (id(env), kind, text)
    found = _CACHE.get(key)
    if found is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        if kind == "expr":
            found = env.compile_expression(text, undefined_to_none=False)
        else:
            found = env.from_string(text)
        _CACHE[key] = found
    return found


def single_expression(text: str) -> str | None:
    """The expression inside ``text`` if it is exactly one ``{{ }}``, else None."""
    m = _SINGLE.match(text)
    if m is None or "{{" in m.group("expr") or "{%" in text:
        return None
    return m.group("expr").strip()


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _describe(exc: Exception, text: str) -> str:
    if isinstance(exc, SecurityError):
        return f"{text!r}: not allowed in the sandbox ({exc})"
    if isinstance(exc, UndefinedError):
        return f"{text!r}: {exc.message}"
    if isinstance(exc, TemplateError):
        return f"{text!r}: {exc.message or type(exc).__name__}"
    return f"{text!r}: {type(exc).__name__}: {exc}"


def evaluate(text: str, scope: Mapping[str, Any], *, omit_undefined: bool = False) -> Any:
    """Evaluate one string: native value for a single expression, else rendered text."""
    env = environment()
    expr = single_expression(text)
    try:
        if expr is not None:
            value = _compiled(env, "expr", expr)(**scope)
            if isinstance(value, Undefined):
                if omit_undefined:
                    raise Omit
                value._fail_with_undefined_error()
            return value
        if not is_expression(text):
            return text
        return _compiled(env, "template", text).render(**scope)
    except Omit:
        raise
    except Exception as exc:  # any failure inside the sandbox is the expression's fault
        raise ExpressionError(_describe(exc, text)) from None


def render(value: Any, scope: Mapping[str, Any], *, omit_undefined: bool = False) -> Any:
    """Render every string inside ``value`` (dicts and lists recursively).

    With ``omit_undefined``, a mapping key (or list item) whose value is a single
    expression that reads an absent field is left out.
    """
    if isinstance(value, str):
        return evaluate(value, scope, omit_undefined=omit_undefined)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            try:
                out[k] = render(v, scope, omit_undefined=omit_undefined)
            except Omit:
                continue
        return out
    if isinstance(value, list):
        items = []
        for v in value:
            try:
                items.append(render(v, scope, omit_undefined=omit_undefined))
            except Omit:
                continue
        return items
    return value


def render_path(template: str, scope: Mapping[str, Any]) -> str:
    """Render a URL path; every ``{{ }}`` value is percent-encoded (``/`` included)."""
    try:
        return _compiled(_path_environment(), "template", template).render(**scope)
    except Exception as exc:
        raise ExpressionError(_describe(exc, template)) from None
