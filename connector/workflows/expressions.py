"""Expressions: Jinja2's immutable sandbox with StrictUndefined.

A string that is exactly one ``{{ expression }}`` evaluates to the expression's
native value (list, int, dict...); any other string renders as text. Nothing in
scope but data: no environment variables, no attribute access beyond data, no
file or network access, no mutation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from connector.errors import ConnectorError

if TYPE_CHECKING:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.S)
#: ``input.NAME``: what most request templates are, answered without Jinja2 (whose import
#: a cold ``call`` would otherwise pay) exactly as Jinja2 answers it.
_INPUT_NAME = re.compile(r"\{\{\s*input\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_MISSING = object()


class ExpressionError(ConnectorError):
    """An expression that failed to parse or evaluate; the message names it."""


class Omit(Exception):
    """Internal: a single-expression value whose input is absent."""


_ENV: ImmutableSandboxedEnvironment | None = None
_PATH_ENV: ImmutableSandboxedEnvironment | None = None
_EXTRA_FILTERS: dict[str, Callable[..., Any]] = {}


def _make(finalize: Callable[[Any], Any] | None = None) -> ImmutableSandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

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
    """Make plugin filters available to every expression from now on."""
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
    from jinja2.exceptions import SecurityError, TemplateError, UndefinedError

    if isinstance(exc, SecurityError):
        return f"{text!r}: not allowed in the sandbox ({exc})"
    if isinstance(exc, UndefinedError):
        return f"{text!r}: {exc.message}"
    if isinstance(exc, TemplateError):
        return f"{text!r}: {exc.message or type(exc).__name__}"
    return f"{text!r}: {type(exc).__name__}: {exc}"


def _input_value(name: str, scope: Mapping[str, Any]) -> Any:
    """``input.NAME`` as Jinja2 reads it, or ``_MISSING`` where only Jinja2 can say (an
    absent value's error, a name that is a method of the mapping)."""
    data = scope.get("input")
    if type(data) is not dict or hasattr(data, name):
        return _MISSING
    return data.get(name, _MISSING)


def evaluate(text: str, scope: Mapping[str, Any], *, omit_undefined: bool = False) -> Any:
    """Evaluate one string: native value for a single expression, else rendered text."""
    if not is_expression(text):
        return text
    simple = _INPUT_NAME.fullmatch(text.strip())
    if simple is not None:
        value = _input_value(simple.group(1), scope)
        if value is not _MISSING:
            return value
        if omit_undefined and type(scope.get("input")) is dict and not hasattr(dict, simple.group(1)):
            raise Omit
    from jinja2 import Undefined

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
    names = _INPUT_NAME.findall(template)
    if "{%" not in template and "{#" not in template and template.count("{{") == len(names):
        values = [_input_value(name, scope) for name in names]
        if _MISSING not in values:
            parts = iter(values)
            return _INPUT_NAME.sub(lambda _m: quote(str(next(parts)), safe=""), template)
    try:
        return _compiled(_path_environment(), "template", template).render(**scope)
    except Exception as exc:
        raise ExpressionError(_describe(exc, template)) from None
