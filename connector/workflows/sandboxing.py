"""The bounded Jinja2 environment behind :mod:`.expressions`: Jinja2's immutable sandbox
with every operator, call, lookup, loop turn, join and filter that builds something
bounded (the bounds and their checks live in :mod:`.expressions`).

Imported on the first expression that needs Jinja2 (``{{ input.x }}`` alone does not).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, cast

from jinja2 import StrictUndefined, nodes, pass_environment, pass_eval_context
from jinja2 import filters as jfilters
from jinja2.compiler import CodeGenerator
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from connector.errors import short
from connector.workflows.bounds import (
    MAX_SIZE,
    ExpressionLimit,
    _built,
    _check_binop,
    _check_call,
    _check_format_spec,
    _check_printf,
    _check_replace,
    _is_int,
    _over,
    _size,
    _tick,
)


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


def make(
    finalize: Callable[[Any], Any] | None, extra_filters: Mapping[str, Callable[..., Any]]
) -> _BoundedEnvironment:
    env = _BoundedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        finalize=finalize,
        keep_trailing_newline=True,
        extensions=[_Limits],
    )
    env.globals.clear()  # no range(), lipsum, dict(), cycler...
    env.filters.update(_BOUNDED_FILTERS)
    env.filters.update(extra_filters)
    return env


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
