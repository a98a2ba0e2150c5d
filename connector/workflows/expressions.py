"""Expressions: Jinja2's immutable sandbox with StrictUndefined, and bounds.

A string that is exactly one ``{{ expression }}`` evaluates to the expression's
native value (list, int, dict...); any other string renders as text. Nothing in
scope but data: no environment variables, no attribute access beyond data, no
file or network access, no mutation.

Every evaluation is bounded, so that an expression (or the data it is given) cannot
hang a run or exhaust memory:

- an operation may build at most :data:`MAX_SIZE` characters or items (``*``,
  ``+``, ``~``, ``%``, ``format``, ``center``, ``join``, ``replace``, ``indent``,
  ``wordwrap``, ``batch``, ``slice``, ``sum``, the string methods that pad, a
  template's output...), checked *before* it is built;
- all the operations of one evaluation may build :data:`MAX_BUILT` in all (a loop
  or a list of operations, each within bounds, cannot pile up gigabytes);
- an integer may have at most :data:`MAX_INT_BITS` bits (``10 ** 10 ** 9`` is
  refused before it is computed);
- an evaluation may take at most :data:`MAX_STEPS` steps (every call, attribute
  or item lookup, operator and loop turn is one) and :data:`MAX_SECONDS` seconds;
- text with a lone surrogate (not valid Unicode, and not encodable) is refused.

Going over a bound is an :class:`ExpressionError` that says which limit. ``validate``
evaluates the constant parts of each expression with the same bounds
(:func:`limit_problem`), so ``{{ 10 ** (10 ** 9) }}`` is flagged before a run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from connector.errors import short

# the bounds (and the errors) live in .bounds, shared with the Jinja2 environment
from connector.workflows.bounds import (
    MAX_BUILT,
    MAX_INT_BITS,
    MAX_SECONDS,
    MAX_SIZE,
    MAX_STEPS,
    ExpressionError,
    ExpressionLimit,
    _Budget,
    _budget,
    _check_text,
    _local,
)

if TYPE_CHECKING:
    from jinja2 import nodes

    from connector.workflows.sandboxing import _BoundedEnvironment

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.S)
#: ``input.NAME``: what most request templates are, answered without Jinja2 (whose import
#: a cold ``call`` would otherwise pay) exactly as Jinja2 answers it.
_INPUT_NAME = re.compile(r"\{\{\s*input\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_MISSING = object()

__all__ = [
    "MAX_BUILT",
    "MAX_INT_BITS",
    "MAX_SECONDS",
    "MAX_SIZE",
    "MAX_STEPS",
    "ExpressionError",
    "ExpressionLimit",
    "Omit",
    "add_filters",
    "environment",
    "evaluate",
    "is_expression",
    "limit_problem",
    "render",
    "render_path",
    "single_expression",
]


class Omit(Exception):
    """Internal: a single-expression value whose input is absent."""


_ENV: _BoundedEnvironment | None = None
_PATH_ENV: _BoundedEnvironment | None = None
_EXTRA_FILTERS: dict[str, Callable[..., Any]] = {}


def _make(finalize: Callable[[Any], Any] | None = None) -> _BoundedEnvironment:
    from connector.workflows import sandboxing  # Jinja2, on the first expression that needs it

    return sandboxing.make(finalize, _EXTRA_FILTERS)


def environment() -> _BoundedEnvironment:
    global _ENV
    if _ENV is None:
        _ENV = _make()
    return _ENV


def _path_environment() -> _BoundedEnvironment:
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


def _compiled(env: _BoundedEnvironment, kind: str, text: str) -> Any:
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
    """One line, of a bounded length: the messages of Jinja2 and Python quote values."""
    from jinja2.exceptions import SecurityError, TemplateError, UndefinedError

    if isinstance(exc, ExpressionLimit):
        why = f"over a limit: {exc}"
    elif isinstance(exc, SecurityError):
        why = f"not allowed in the sandbox ({exc})"
    elif isinstance(exc, UndefinedError):
        why = str(exc.message)
    elif isinstance(exc, TemplateError):
        why = str(exc.message or type(exc).__name__)
    elif isinstance(exc, MemoryError):
        why = "out of memory"
    elif isinstance(exc, RecursionError):
        why = "recursion too deep"
    else:
        why = f"{type(exc).__name__}: {exc}"
    why = " ".join(why[:400].split())
    return f"{short(text)}: {why if len(why) <= 200 else why[:197] + '...'}"


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
            return _check_text(value, text)
        if omit_undefined and type(scope.get("input")) is dict and not hasattr(dict, simple.group(1)):
            raise Omit
    from jinja2 import Undefined

    env = environment()
    expr = single_expression(text)
    own = getattr(_local, "budget", None) is None  # (a try/finally: cheaper than `with`)
    if own:
        _local.budget = _Budget(MAX_STEPS, MAX_SECONDS)
    try:
        if expr is not None:
            value = _compiled(env, "expr", expr)(**scope)
            if isinstance(value, Undefined):
                if omit_undefined:
                    raise Omit
                value._fail_with_undefined_error()
            return _check_text(value, text)
        return _check_text(_compiled(env, "template", text).render(**scope), text)
    except (Omit, ExpressionError):
        raise
    except Exception as exc:  # any failure inside the sandbox is the expression's fault
        raise ExpressionError(_describe(exc, text)) from None
    finally:
        if own:
            _local.budget = None


def limit_problem(ast: nodes.Node) -> str | None:
    """What is over a limit in the constant parts of a parsed expression, if anything
    (for ``validate``: ``{{ 10 ** (10 ** 9) }}`` needs no data to be refused)."""
    from jinja2 import nodes

    from connector.workflows.sandboxing import _fold

    env = environment()
    candidates = (nodes.BinExpr, nodes.Filter, nodes.Call, nodes.Concat)
    with _budget(steps=100_000, seconds=1.0):
        for node in ast.find_all(candidates):
            try:
                _fold(env, node)
            except ExpressionLimit as exc:
                return str(exc)
            except Exception:  # not constant, or fails for another reason: the run will say
                continue
    return None


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
            try:
                parts = [quote(str(v), safe="") for v in values]
            except Exception as exc:  # as Jinja2's finalize fails on it (a lone surrogate)
                raise ExpressionError(_describe(exc, template)) from None
            if len(template) + sum(map(len, parts)) <= MAX_SIZE:  # else the bound, by Jinja2
                found = iter(parts)
                return _INPUT_NAME.sub(lambda _m: next(found), template)
    try:
        with _budget():
            return str(_compiled(_path_environment(), "template", template).render(**scope))
    except Exception as exc:
        raise ExpressionError(_describe(exc, template)) from None
