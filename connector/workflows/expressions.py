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
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import quote

from jinja2 import StrictUndefined, Undefined, nodes, pass_environment, pass_eval_context
from jinja2 import filters as jfilters
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from connector.errors import ConnectorError, short

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.S)

#: characters (or items) one operation may build, and a template may output
MAX_SIZE = 1_000_000
#: characters or items all the operations of one evaluation may build together
MAX_BUILT = 10 * MAX_SIZE
#: bits of an integer an operation may build (about 4,900 decimal digits)
MAX_INT_BITS = 16_384
#: steps of one evaluation: calls, lookups, operators, loop turns
MAX_STEPS = 1_000_000
#: wall-clock seconds of one evaluation
MAX_SECONDS = 5.0
_clock = time.monotonic


class ExpressionError(ConnectorError):
    """An expression that failed to parse or evaluate; the message names it."""


class ExpressionLimit(Exception):
    """Internal: an evaluation went over one of the bounds above."""


class Omit(Exception):
    """Internal: a single-expression value whose input is absent."""


# --------------------------------------------------------------------------- the budget


class _Budget:
    __slots__ = ("built", "deadline", "steps")

    def __init__(self, steps: int, seconds: float):
        self.steps = steps
        self.deadline = _clock() + seconds
        self.built = 0


_local = threading.local()


@contextmanager
def _budget(steps: int = MAX_STEPS, seconds: float = MAX_SECONDS) -> Iterator[None]:
    """One evaluation's budget (an evaluation inside another shares the outer one)."""
    if getattr(_local, "budget", None) is not None:
        yield
        return
    _local.budget = _Budget(steps, seconds)
    try:
        yield
    finally:
        _local.budget = None


def _tick(n: int = 1) -> None:
    budget: _Budget | None = getattr(_local, "budget", None)
    if budget is None:  # compile-time constant folding: bounded by the checks alone
        return
    budget.steps -= n
    if budget.steps < 0:
        raise ExpressionLimit(f"more than {MAX_STEPS:,} steps (the step limit)")
    if _clock() > budget.deadline:
        raise ExpressionLimit(f"took longer than {MAX_SECONDS:g} s (the time limit)")


def _built(result: Any) -> Any:
    """Count what an operation built against :data:`MAX_BUILT`; return it."""
    n = _size(result)
    budget: _Budget | None = getattr(_local, "budget", None)
    if n and budget is not None:
        budget.built += n
        if budget.built > MAX_BUILT:
            raise ExpressionLimit(
                f"built more than {MAX_BUILT:,} characters or items in all (the size limit)"
            )
    return result


def _over(what: str, amount: int, limit: int = MAX_SIZE, unit: str = "characters or items") -> None:
    if amount > limit:
        raise ExpressionLimit(f"{what} would build {amount:,} {unit} (the limit is {limit:,})")


def _is_int(v: Any) -> bool:
    return isinstance(v, int)


def _size(v: Any) -> int:
    return len(v) if isinstance(v, Sized) else 0


# --------------------------------------------------------------------------- checks


def _check_binop(op: str, left: Any, right: Any) -> None:
    if op == "**":
        if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            bits = (abs(left).bit_length() - 1) * right
            _over(f"{short(left, 20)} ** {short(right, 20)}", bits, MAX_INT_BITS, "bits")
    elif op == "*":
        if _is_int(left) and _is_int(right):
            _over("this product", left.bit_length() + right.bit_length(), MAX_INT_BITS, "bits")
        elif _is_int(right) and isinstance(left, (str, bytes, list, tuple)):
            _over("repeating a sequence", len(left) * max(right, 0))
        elif _is_int(left) and isinstance(right, (str, bytes, list, tuple)):
            _over("repeating a sequence", len(right) * max(left, 0))
    elif op == "+":
        if isinstance(left, (str, bytes, list, tuple)) and isinstance(right, (str, bytes, list, tuple)):
            _over("joining two sequences", len(left) + len(right))
    elif op == "%" and isinstance(left, str):
        _check_printf(left, right)


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.S)


def _check_printf(fmt: str, args: Any) -> None:
    """``fmt % args``: the widths and precisions it asks for, summed, are bounded."""
    total = len(fmt)
    for m in _PRINTF.finditer(fmt):
        width, precision, _conversion = m.groups()
        if "*" in (width, precision):
            raise ExpressionLimit("a '*' width or precision in a format is over the expression limits")
        total += int(width or 0) + int(precision or 0)
    _over("this format", total)


_DIGITS = re.compile(r"\d+")


def _check_format_spec(spec: str) -> None:
    """A str.format spec: every number in it (width, precision) is bounded."""
    _over("this format", sum(int(n) for n in _DIGITS.findall(spec or "")))


class _BoundedFormatter(SandboxedFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        _tick()
        _check_format_spec(format_spec)
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(SandboxedEscapeFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        _tick()
        _check_format_spec(format_spec)
        return super().format_field(value, format_spec)


_PADDING = ("center", "ljust", "rjust", "zfill")


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _check_call(fn: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """The methods data types have that build something of a size their arguments say."""
    name = getattr(fn, "__name__", None)
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, (str, bytes)):
        if name in _PADDING:
            width = _arg(args, kwargs, 0, "width", 0)
            if _is_int(width):
                _over(f"{name}()", width)
        elif name == "expandtabs":
            tab = _arg(args, kwargs, 0, "tabsize", 8)
            if _is_int(tab):
                tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
                _over("expandtabs()", len(owner) + tabs * tab)
        elif name == "join":
            items = _arg(args, kwargs, 0, "iterable")
            if isinstance(items, (list, tuple)):
                _over("join()", sum(_size(x) for x in items) + len(owner) * max(len(items) - 1, 0))
        elif name == "replace":
            _check_replace(
                owner,
                _arg(args, kwargs, 0, "old"),
                _arg(args, kwargs, 1, "new"),
                _arg(args, kwargs, 2, "count", -1),
            )
        elif name == "translate":
            table = _arg(args, kwargs, 0, "table")
            if isinstance(table, Mapping):
                longest = max((_size(v) for v in table.values()), default=1)
                _over("translate()", len(owner) * max(longest, 1))
    elif _is_int(owner) and name == "to_bytes":
        length = _arg(args, kwargs, 0, "length", 1)
        if _is_int(length):
            _over("to_bytes()", length)


def _check_replace(s: Any, old: Any, new: Any, count: Any) -> None:
    if not (isinstance(s, str) and isinstance(old, str) and isinstance(new, str)):
        return
    if len(new) <= len(old):
        return
    found = s.count(old) if old else len(s) + 1
    if _is_int(count) and count >= 0:
        found = min(found, count)
    _over("replace()", len(s) + found * (len(new) - len(old)))


def _check_text(value: Any, text: str) -> Any:
    """Refuse a result holding a lone surrogate: it is not valid Unicode and nothing
    downstream (JSON, SQLite, a terminal) can encode it."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            m = _SURROGATE.search(v)
            if m:
                raise ExpressionError(
                    f"{short(text)}: the result holds a lone surrogate (U+{ord(m.group()):04X}), "
                    "which is not valid Unicode"
                )
        elif isinstance(v, Mapping):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


# --------------------------------------------------------------------------- bounded filters


def _center(value: Any, width: int = 80) -> str:
    if _is_int(width):
        _over("center", width)
    return _built(jfilters.do_center(value, width))


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_printf(str(value), args or kwargs)
    return _built(jfilters.do_format(value, *args, **kwargs))


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    unit = width if isinstance(width, str) else " " * width if _is_int(width) and width <= MAX_SIZE else None
    if unit is None:
        raise ExpressionLimit(f"indent({short(width, 20)}) is over the size limit")
    text = str(s)
    _over("indent", len(text) + (text.count("\n") + 1) * len(unit))
    return _built(jfilters.do_indent(s, width, first, blank))


@pass_environment
def _wordwrap(
    environment: Any,
    s: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    text = str(s)
    sep = wrapstring if wrapstring is not None else environment.newline_sequence
    lines = len(text) // max(width if _is_int(width) else 1, 1) + text.count("\n") + 1
    _over("wordwrap", len(text) + lines * len(str(sep)))
    return _built(jfilters.do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens))


@pass_eval_context
def _replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    _check_replace(str(s), str(old), str(new), -1 if count is None else count)
    return _built(jfilters.do_replace(eval_ctx, s, old, new, count))


@pass_eval_context
def _join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    if attribute is not None:
        value = map(jfilters.make_attrgetter(eval_ctx.environment, attribute), value)
    parts: list[str] = []
    total = 0
    sep = str(d)
    for item in value:
        _tick()
        part = str(item)
        total += len(part) + (len(sep) if parts else 0)
        _over("join", total)
        parts.append(part)
    return _built(sep.join(parts))


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
    if fill_with is not None and _is_int(linecount):
        _over("batch", linecount)
    return _built(jfilters.do_batch(value, linecount, fill_with))


def _slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    if _is_int(slices):
        _over("slice", slices)
    return _built(jfilters.sync_do_slice(value, slices, fill_with))


@pass_environment
def _sum(
    environment: Any, iterable: Iterable[Any], attribute: str | int | None = None, start: Any = 0
) -> Any:
    if isinstance(start, (str, list, tuple)):
        items = list(iterable)
        if attribute is not None:
            items = list(map(jfilters.make_attrgetter(environment, attribute), items))
        _over("sum", len(start) + sum(_size(x) for x in items))
        return _built(jfilters.sync_do_sum(environment, items, None, start))
    return _built(jfilters.sync_do_sum(environment, iterable, attribute, start))


@pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: Any = None) -> Markup:
    if _size(indent) > 64 or (_is_int(indent) and indent > 64):
        raise ExpressionLimit("tojson indent over 64 is over the expression limits")
    return _built(jfilters.do_tojson(eval_ctx, value, indent))


_BOUNDED_FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center,
    "format": _format,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "replace": _replace,
    "join": _join,
    "batch": _batch,
    "slice": _slice,
    "sum": _sum,
    "tojson": _tojson,
}


# --------------------------------------------------------------------------- the environment


class _Limits(Extension):
    """Loop turns and ``~`` joins, counted: the code generator routes them here."""

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _tick()
            yield item

    def join(self, parts: list[Any]) -> str:
        return _bounded_concat(parts)


class _Bounding(NodeTransformer):
    def _call(self, method: str, arg: nodes.Expr, lineno: int) -> nodes.Call:
        attr = nodes.ExtensionAttribute(_Limits.identifier, method, lineno=lineno)
        return nodes.Call(attr, [arg], [], None, None, lineno=lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)  # transforms the children in place
        node.iter = self._call("iterate", cast(nodes.Expr, node.iter), node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return self._call("join", nodes.List(node.nodes, lineno=node.lineno), node.lineno)


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Any = None) -> None:
        _Bounding().visit(node)
        super().visit_Template(node, frame)


def _bounded_concat(parts: Iterable[Any]) -> str:
    """Join a template's output (or a buffer) chunk by chunk, within :data:`MAX_SIZE`."""
    out: list[str] = []
    total = 0
    for part in parts:
        _tick()
        text = str(part)
        total += len(text)
        _over("the template's output", total)
        out.append(text)
    return _built("".join(out))


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with every operator, call, lookup, loop turn and join bounded."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    concat = staticmethod(_bounded_concat)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        _check_binop(operator, left, right)
        return _built(self.binop_table[operator](left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        _check_call(__obj, args, kwargs)
        return _built(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map`` through a formatter that bounds each field."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        f_self: str = value.__self__
        formatter: SandboxedFormatter = (
            _BoundedEscapeFormatter(self, escape=f_self.escape)
            if isinstance(f_self, Markup)
            else _BoundedFormatter(self)
        )
        is_format_map = value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one mapping")
                kwargs, args = args[0], ()
            _over("this format", len(f_self))
            return type(f_self)(formatter.vformat(f_self, args, kwargs))

        return bounded


_ENV: _BoundedEnvironment | None = None
_PATH_ENV: _BoundedEnvironment | None = None
_EXTRA_FILTERS: dict[str, Callable[..., Any]] = {}


def _make(finalize: Callable[[Any], Any] | None = None) -> _BoundedEnvironment:
    env = _BoundedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        finalize=finalize,
        keep_trailing_newline=True,
        extensions=[_Limits],
    )
    env.globals.clear()  # no range(), lipsum, dict(), cycler...
    env.filters.update(_BOUNDED_FILTERS)
    env.filters.update(_EXTRA_FILTERS)
    return env


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


def evaluate(text: str, scope: Mapping[str, Any], *, omit_undefined: bool = False) -> Any:
    """Evaluate one string: native value for a single expression, else rendered text."""
    if not is_expression(text):
        return text
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


# --------------------------------------------------------------------------- static check


class _NotConstant(Exception):
    pass


_BINOPS = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "FloorDiv": "//", "Mod": "%", "Pow": "**"}


def _fold(env: _BoundedEnvironment, node: nodes.Node) -> Any:
    """The value of a constant expression, computed with the runtime's bounds."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, (nodes.List, nodes.Tuple)):
        items = [_fold(env, n) for n in node.items]
        return tuple(items) if isinstance(node, nodes.Tuple) else items
    if isinstance(node, nodes.Neg):
        return -_fold(env, node.node)
    if isinstance(node, nodes.Pos):
        return +_fold(env, node.node)
    if isinstance(node, nodes.BinExpr) and type(node).__name__ in _BINOPS:
        return env.call_binop(
            None, _BINOPS[type(node).__name__], _fold(env, node.left), _fold(env, node.right)
        )
    if isinstance(node, nodes.Concat):
        return _bounded_concat(_fold(env, n) for n in node.nodes)
    if isinstance(node, nodes.Filter) and node.node is not None and not (node.dyn_args or node.dyn_kwargs):
        value = _fold(env, node.node)
        args = [_fold(env, a) for a in node.args]
        kwargs = {kw.key: _fold(env, kw.value) for kw in cast(list[nodes.Keyword], node.kwargs)}
        if node.name not in env.filters:
            raise _NotConstant
        return env.call_filter(node.name, value, args, kwargs)
    if isinstance(node, nodes.Getattr):
        return env.getattr(_fold(env, node.node), node.attr)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        if node.dyn_args or node.dyn_kwargs:
            raise _NotConstant
        fn = _fold(env, node.node)
        call_args = tuple(_fold(env, a) for a in node.args)
        call_kwargs = {kw.key: _fold(env, kw.value) for kw in cast(list[nodes.Keyword], node.kwargs)}
        if not callable(fn) or not env.is_safe_callable(fn):
            raise _NotConstant
        _check_call(fn, call_args, call_kwargs)
        return fn(*call_args, **call_kwargs)
    raise _NotConstant


def limit_problem(ast: nodes.Node) -> str | None:
    """What is over a limit in the constant parts of a parsed expression, if anything
    (for ``validate``: ``{{ 10 ** (10 ** 9) }}`` needs no data to be refused)."""
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
    try:
        with _budget():
            return str(_compiled(_path_environment(), "template", template).render(**scope))
    except Exception as exc:
        raise ExpressionError(_describe(exc, template)) from None
