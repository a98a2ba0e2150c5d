"""Workflow files: loading and static validation, before anything is sent.

Checks: the workflow schema; unknown action and trigger ids (with suggestions);
step ids unique across the whole workflow, branches included; references to
unknown or later steps, and to steps of another branch; ``steps.x.output.a.b``
paths that x's output schema does not have (through foreach lists too); a step
that may not have run (it has an ``if``, ``on_error: continue``, or sits in a
branch the referring step is not in) read without a guard; names outside the
scope; unknown secrets; retry settings that make no sense; literal inputs that
break an action's or trigger's input schema (a bad cron names its field). Every
problem reads ``file:line: /pointer: step ID: message``.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError

from connector import secrets
from connector.catalog import schemas
from connector.catalog.index import Catalog
from connector.errors import ManifestError, UnknownIdError, short
from connector.workflows import expressions
from connector.yamlio import Document, YamlError, escape, load_text

log = logging.getLogger(__name__)

SCOPE = ("inputs", "trigger", "steps", "item", "index", "secrets")
STEP_FIELDS = ("output", "status", "error")
#: short trigger ids a workflow may use
TRIGGER_ALIASES = {"schedule": "schedule.cron"}
#: the output of a branching step (``if``/``then`` or ``switch``)
BRANCH_OUTPUT = {
    "type": "object",
    "required": ["branch"],
    "properties": {"branch": {"type": ["string", "null"], "description": "The branch taken, or null."}},
}
ACTION_ONLY = ("with", "foreach", "concurrency", "retry", "timeout")


@dataclass
class Workflow:
    """A validated workflow file."""

    doc: Document
    text: str
    secret_names: frozenset[str] = field(default_factory=frozenset)

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.doc.data
        return data

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def path(self) -> str:
        return self.doc.path

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list(self.data["steps"])

    @property
    def trigger(self) -> dict[str, Any] | None:
        trig = self.data.get("trigger")
        if not trig:
            return None
        trig = dict(trig)
        trig["use"] = TRIGGER_ALIASES.get(trig["use"], trig["use"])
        return trig

    def all_steps(self) -> list[dict[str, Any]]:
        """Every step, branches included, in document order."""
        return [step for step, _ptr, _path in walk_steps(self.steps)]


def walk_steps(
    steps: Any, base: str = "/steps", path: tuple[tuple[str, str], ...] = ()
) -> Iterator[tuple[dict[str, Any], str, tuple[tuple[str, str], ...]]]:
    """``(step, pointer, branch path)`` for every step, depth first in document order.
    The branch path lists ``(owner step id, branch label)`` from the top."""
    if not isinstance(steps, list):
        return
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        ptr = f"{base}/{i}"
        yield step, ptr, path
        sid = str(step.get("id"))
        for label, sub, sub_ptr in branches(step, ptr):
            yield from walk_steps(sub, sub_ptr, (*path, (sid, label)))


def branches(step: dict[str, Any], ptr: str = "") -> list[tuple[str, Any, str]]:
    """``(label, steps, pointer)`` of each branch of a step, in document order."""
    found: list[tuple[str, Any, str]] = []
    for key in ("then", "else"):
        if key in step:
            found.append((key, step[key], f"{ptr}/{key}"))
    cases = step.get("cases")
    if isinstance(cases, dict):
        for value, sub in cases.items():
            found.append((f"case {value}", sub, f"{ptr}/cases/{escape(str(value))}"))
    if "default" in step:
        found.append(("default", step["default"], f"{ptr}/default"))
    return found


def load(
    path: str | Path,
    catalog: Catalog,
    text: str | None = None,
    *,
    check_secrets: bool = True,
    connections: Collection[str] | None = None,
) -> Workflow:
    """Read and validate a workflow; raise :class:`ManifestError` with every problem.

    With ``check_secrets`` (the default), a ``secrets.NAME`` that no source holds is
    one of the problems; with ``connections``, a ``connection:`` that names none of
    them is one."""
    try:
        if text is None:
            text = Path(path).read_text(encoding="utf-8")
        doc = load_text(text, str(path))
    except OSError as exc:
        raise ManifestError([f"{path}:1: cannot read: {exc.strerror}"]) from None
    except YamlError as exc:
        raise ManifestError([str(exc)]) from None
    normalize(doc.data)
    checker = _Checker(doc, catalog, check_secrets)
    found = checker.run()
    if connections is not None:
        found += connection_problems(doc, connections)
    problems = _sorted(doc, found)
    if problems:
        raise ManifestError(problems)
    for warning in deprecations(doc, catalog):
        log.warning("%s", warning)
    return Workflow(doc, text, frozenset(checker.secret_names))


# --------------------------------------------------------------------------- checks


@dataclass
class _Info:
    """What the checker knows of one step."""

    step: dict[str, Any]
    ptr: str
    path: tuple[tuple[str, str], ...]
    order: int
    why_optional: str | None  # why this step may not run by itself, or None
    guards: list[str]  # the `if`/`switch` texts this step runs under (its own `if` first)


class _Checker:
    def __init__(self, doc: Document, catalog: Catalog, check_secrets: bool = True):
        self.doc = doc
        self.catalog = catalog
        self.check_secrets = check_secrets
        self.problems: list[str] = []
        self.outputs: dict[str, Any] = {}  # step id -> output schema (list-wrapped for foreach)
        self.infos: dict[str, _Info] = {}
        self.secret_names: set[str] = set()
        self.inputs_schema: Any = None
        self.trigger_schema: Any = None

    def add(self, ptr: str, msg: str, step: str | None = None) -> None:
        who = f"step {step}: " if step else ""
        self.problems.append(f"{self.doc.where(ptr)}: {ptr or '/'}: {who}{msg}")

    def run(self) -> list[str]:
        for ptr, msg in schemas.errors(self.doc.data, "workflow"):
            self.add(ptr, msg)
        data = self.doc.data
        if not isinstance(data, dict):
            return self.problems
        inputs_schema = data.get("inputs") if isinstance(data.get("inputs"), dict) else None
        if inputs_schema is not None:
            for ptr, msg in schemas.check_schema(inputs_schema):
                self.add(f"/inputs{ptr}", f"not a valid JSON Schema: {msg}")
        self.inputs_schema = inputs_schema
        self.trigger_schema = self._trigger(data.get("trigger"))
        self._index(data.get("steps"))
        for info in sorted(self.infos.values(), key=lambda i: i.order):
            self._step(info)
        return self.problems

    # ------------------------------------------------------------------ trigger

    def _trigger(self, trig: Any) -> Any:
        if not isinstance(trig, dict) or not isinstance(trig.get("use"), str):
            return None
        use = str(TRIGGER_ALIASES.get(trig["use"], trig["use"]))
        try:
            m = self.catalog.get(use, "trigger")
        except UnknownIdError as exc:
            self.add("/trigger/use", str(exc))
            return None
        if isinstance(trig.get("with"), dict):
            self._literal_inputs(trig["with"], m.input_schema, "/trigger/with", None)
        elif m.input_schema.get("required"):
            need = ", ".join(m.input_schema["required"])
            self.add("/trigger", f"{m.id} needs options ({need}); add `with:`")
        if "interval" in trig and m.data.get("strategy") != "polling":
            self.add("/trigger/interval", f"only a polling trigger takes an interval; {m.id} is not one")
        return m.output_schema

    # ------------------------------------------------------------------ steps

    def _index(self, steps: Any) -> None:
        """Number every step (branches included) and check ids are unique."""
        first: dict[str, str] = {}
        for order, (step, ptr, path) in enumerate(walk_steps(steps)):
            sid = step.get("id")
            if not isinstance(sid, str):
                continue
            key = sid
            if sid in first:
                self.add(f"{ptr}/id", f"duplicate step id (first at {first[sid]})", sid)
                key = f"{sid}#{order}"  # checked too, but never the target of a reference
            first.setdefault(sid, ptr)
            guards = [step["if"]] if isinstance(step.get("if"), str) and "use" in step else []
            for owner, _label in reversed(path):
                owner_step = self.infos[owner].step if owner in self.infos else {}
                for field_ in ("if", "switch"):
                    if isinstance(owner_step.get(field_), str):
                        guards.append(owner_step[field_])
            why = None
            if "use" in step and "if" in step:
                why = "it has an `if`"
            elif "use" in step and step.get("on_error") == "continue" and "foreach" not in step:
                why = "it has `on_error: continue`"
            self.infos[key] = _Info(step, ptr, path, order, why, guards)

    def _shape(self, info: _Info) -> bool:
        """Check which kind of step it is; False if it is none."""
        step, ptr, sid = info.step, info.ptr, info.step["id"]
        kinds = [k for k in ("use", "then", "switch") if k in step]
        if not kinds:
            self.add(ptr, "a step needs `use` (an action), `if` with `then`, or `switch` with `cases`", sid)
            return False
        if len(kinds) > 1:
            self.add(ptr, f"a step takes one of use, then, switch (this one has {', '.join(kinds)})", sid)
            return False
        if kinds[0] != "use":
            for key in ACTION_ONLY:
                if key in step:
                    self.add(f"{ptr}/{key}", f"only an action step (with `use`) takes {key}", sid)
        retry = step.get("retry")
        if isinstance(retry, dict):
            low, high = retry.get("backoff", 1), retry.get("max_backoff", 30)
            if isinstance(low, (int, float)) and isinstance(high, (int, float)) and high < low:
                self.add(
                    f"{ptr}/retry/max_backoff", f"max_backoff ({high}) is less than backoff ({low})", sid
                )
            if retry.get("attempts") == 1 and "on" in retry:
                self.add(f"{ptr}/retry/on", "`on` has no effect with attempts: 1 (no retry)", sid)
        return True

    def _step(self, info: _Info) -> None:
        step, base, sid = info.step, info.ptr, info.step["id"]
        if not self._shape(info):
            self.outputs.setdefault(sid, None)
            return
        if "use" not in step:
            for key in ("if", "switch"):
                if isinstance(step.get(key), str):
                    self._expressions(step[key], f"{base}/{key}", info, in_foreach=False, own_guard=False)
            self.outputs.setdefault(sid, BRANCH_OUTPUT)
            return
        manifest = None
        if isinstance(step.get("use"), str):
            try:
                manifest = self.catalog.get(step["use"], "action")
            except UnknownIdError as exc:
                self.add(f"{base}/use", str(exc), sid)
        foreach = step.get("foreach")
        item_schema = None
        if isinstance(foreach, str):
            item_schema = self._expressions(
                foreach, f"{base}/foreach", info, in_foreach=False, want_list=True
            )
        if isinstance(step.get("if"), str):
            self._expressions(step["if"], f"{base}/if", info, in_foreach=False, own_guard=False)
        with_ = step.get("with")
        if isinstance(with_, dict):
            for ptr, text in _strings(with_, f"{base}/with"):
                self._expressions(text, ptr, info, in_foreach=foreach is not None, item_schema=item_schema)
            if manifest is not None:
                self._literal_inputs(with_, manifest.input_schema, f"{base}/with", sid)
        elif manifest is not None and manifest.input_schema.get("required"):
            need = ", ".join(manifest.input_schema["required"])
            self.add(base, f"{manifest.id} needs inputs ({need}); add `with:`", sid)
        out = manifest.output_schema if manifest is not None else None
        self.outputs.setdefault(sid, {"type": "array", "items": out} if foreach and out else out)

    def _literal_inputs(
        self, with_: dict[str, Any], schema: dict[str, Any], base: str, sid: str | None
    ) -> None:
        dynamic = {k for k, v in with_.items() if _has_expression(v)}
        literal = {k: v for k, v in with_.items() if k not in dynamic}
        if schema.get("additionalProperties") is False:
            # a name the action does not take is wrong whatever its value: checked with
            # a stand-in value, which only additionalProperties judges
            literal.update((k, None) for k in dynamic if not _takes(schema, k))
        if dynamic and schemas.proves_valid(literal, _without_given(schema, frozenset(dynamic))):
            return  # nothing but what the expressions give is missing: no validator needed
        for ptr, msg in schemas.errors(literal, schema):
            if not ptr and any(msg.startswith(f"{k!r} is a required") for k in dynamic):
                continue
            if not ptr and dynamic and msg.endswith("does not have enough properties"):
                continue  # minProperties counts the inputs given by expressions too
            self.add(f"{base}{ptr}", msg, sid)

    # ------------------------------------------------------------------ expressions

    def _expressions(
        self,
        text: str,
        ptr: str,
        info: _Info,
        *,
        in_foreach: bool,
        want_list: bool = False,
        item_schema: Any = None,
        own_guard: bool = True,
    ) -> Any:
        """Check one string's expressions; return the schema of a single-chain value."""
        if not expressions.is_expression(text):
            return None
        sid = info.step["id"]
        try:
            ast = expressions.environment().parse(text)
        except TemplateSyntaxError as exc:
            self.add(ptr, f"bad expression {short(text)}: {exc.message}", sid)
            return None
        over = expressions.limit_problem(ast)
        if over is not None:
            self.add(ptr, f"expression {short(text)} is over a limit: {over}", sid)
        local = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
        own = 1 if "use" in info.step and isinstance(info.step.get("if"), str) else 0
        guards = info.guards if own_guard else info.guards[own:]
        guarded_by_context = set().union(*(_mentioned_steps(g) for g in guards)) if guards else set()
        result = None
        for name, keys, guarded in _chains(ast):
            if name in local:
                continue
            ok = guarded | guarded_by_context
            schema = self._reference(name, keys, ptr, info, in_foreach, item_schema, ok)
            result = schema
        if want_list and isinstance(result, dict) and result.get("type") == "array":
            return result.get("items")
        return None

    def _reference(
        self,
        name: str,
        keys: list[Any],
        ptr: str,
        info: _Info,
        in_foreach: bool,
        item_schema: Any,
        guarded: set[str],
    ) -> Any:
        sid = info.step["id"]
        if name not in SCOPE:
            self.add(ptr, f"unknown name {name!r} (in scope: {', '.join(SCOPE)})", sid)
            return None
        if name in ("item", "index") and not in_foreach:
            self.add(ptr, f"{name!r} is only defined in a step with foreach (in its `with`)", sid)
            return None
        if name == "item":
            return self._path(item_schema, keys, "item", ptr, sid)
        if name == "inputs":
            return self._path(self.inputs_schema, keys, "inputs", ptr, sid)
        if name == "trigger":
            return self._path(self.trigger_schema, keys, "trigger", ptr, sid)
        if name == "secrets":
            return self._secret(keys, ptr, sid)
        if name == "steps":
            return self._step_reference(keys, ptr, info, guarded)
        return None

    def _secret(self, keys: list[Any], ptr: str, sid: str) -> Any:
        if not keys or not isinstance(keys[0], str) or not secrets.NAME.match(keys[0]):
            self.add(ptr, "read a secret by name: secrets.NAME", sid)
            return None
        name = keys[0]
        self.secret_names.add(name)
        if self.check_secrets and secrets.lookup(name) is None:
            self.add(ptr, f"unknown secret {name!r} ({secrets.hint(name)})", sid)
        return {"type": "string"}

    def _step_reference(self, keys: list[Any], ptr: str, info: _Info, guarded: set[str]) -> Any:
        sid = info.step["id"]
        if not keys:
            return None
        target = str(keys[0])
        other = self.infos.get(target)
        if target == sid:
            self.add(ptr, f"steps.{target} refers to this step itself", sid)
            return None
        if other is None or other.order > info.order:
            if other is not None:
                self.add(ptr, f"steps.{target} runs after this step", sid)
            else:
                earlier = [i for i, o in self.infos.items() if o.order < info.order and "#" not in i]
                close = difflib.get_close_matches(target, earlier, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                self.add(ptr, f"no earlier step {target!r}{hint}", sid)
            return None
        common = _common(other.path, info.path)
        if len(common) < min(len(other.path), len(info.path)):
            mine, theirs = info.path[len(common)], other.path[len(common)]
            if mine[0] == theirs[0]:
                self.add(
                    ptr,
                    f"steps.{target} is in the {theirs[1]} branch of step {mine[0]}, and this step "
                    f"in its {mine[1]} branch: it cannot have run",
                    sid,
                )
                return None
        if len(keys) < 2:
            return None
        if keys[1] not in STEP_FIELDS:
            self.add(ptr, f"steps.{target}.{keys[1]}: use steps.{target}.output", sid)
            return None
        if keys[1] != "output":
            return None
        why = other.why_optional
        if why is None and len(other.path) > len(common):
            owner, label = other.path[len(common)]
            why = f"it is in the {label} branch of step {owner}"
        if why is not None and target not in guarded:
            self.add(
                ptr,
                f"steps.{target} may not have run ({why}); guard the reference, e.g. "
                f"if: \"{{{{ steps.{target}.status == 'succeeded' }}}}\", or add | default(...)",
                sid,
            )
            return None
        return self._path(self.outputs.get(target), keys[2:], f"steps.{target}.output", ptr, sid)

    def _path(self, schema: Any, keys: list[Any], label: str, ptr: str, sid: str) -> Any:
        problem, found = walk_schema(schema, keys)
        if problem:
            self.add(ptr, f"{label}{_dotted(keys[: problem[0]])} {problem[1]}", sid)
        return found


def _common(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _dotted(keys: list[Any]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys)


def walk_schema(schema: Any, keys: list[Any]) -> tuple[tuple[int, str] | None, Any]:
    """Follow ``keys`` into ``schema``: ``((depth, problem) | None, schema found or None)``."""
    for depth, key in enumerate(keys):
        if not isinstance(schema, dict):
            return None, None
        branches_ = schema.get("anyOf") or schema.get("oneOf")
        if branches_:
            results = [walk_schema(b, keys[depth:]) for b in branches_]
            ok = [r for r in results if r[0] is None]
            if ok:
                return None, ok[0][1]
            first = results[0][0]
            assert first is not None
            return (depth + first[0], first[1]), None
        types = schema.get("type")
        names = set(types) if isinstance(types, list) else {types} if types else set()
        if isinstance(key, int):
            if names and "array" not in names:
                return (depth, f"is {_kind(names)}, not a list; [{key}] does not apply"), None
            schema = schema.get("items")
            continue
        props = schema.get("properties")
        if isinstance(props, dict):
            if key in props:
                schema = props[key]
                continue
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                schema = extra
                continue
            fields = ", ".join(sorted(props)) or "none"
            return (depth, f"has no field {key!r} (fields: {fields})"), None
        if names and "object" not in names:
            if "array" in names:
                return (depth, f"is a list; use an index ([0]) or a filter to reach {key!r}"), None
            return (depth, f"is {_kind(names)} and has no field {key!r}"), None
        return None, None
    return None, schema


def _kind(names: set[Any]) -> str:
    return "a " + "/".join(sorted(str(n) for n in names if n))


def _takes(schema: dict[str, Any], name: str) -> bool:
    """Whether an object schema names ``name`` among its properties or patterns."""
    import re

    if name in (schema.get("properties") or {}):
        return True
    return any(re.search(p, name) for p in schema.get("patternProperties") or {})


def _has_expression(value: Any) -> bool:
    if isinstance(value, str):
        return expressions.is_expression(value)
    if isinstance(value, dict):
        return any(_has_expression(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_expression(v) for v in value)
    return False


def _strings(value: Any, ptr: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(ptr, value)]
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _strings(v, f"{ptr}/{escape(str(k))}")]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in _strings(v, f"{ptr}/{i}")]
    return []


def _chain(node: nodes.Node) -> tuple[str, list[Any]] | None:
    keys: list[Any] = []
    while True:
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            keys.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            return node.name, list(reversed(keys))
        else:
            return None


GUARD_FILTERS = ("default", "d")


def _chains(node: nodes.Node) -> list[tuple[str, list[Any], set[str]]]:
    """Every ``name.a.b[0]`` chain read by an expression (method calls trimmed), with
    the steps that a guard around it tests: the test of a conditional (``x if
    steps.a.status == 'succeeded' else y``, ``{% if %}``), the left side of ``and``/
    ``or``, a ``default`` filter or an ``is`` test applied to it."""
    found: list[tuple[str, list[Any], set[str]]] = []

    def visit(n: nodes.Node, guarded: set[str]) -> None:
        if isinstance(n, (nodes.CondExpr, nodes.If)):
            visit(n.test, guarded)
            inner = guarded | _steps_in(n.test)
            for child in n.iter_child_nodes():
                if child is not n.test:
                    visit(child, inner)
            return
        if isinstance(n, (nodes.And, nodes.Or)):
            visit(n.left, guarded)
            visit(n.right, guarded | _steps_in(n.left))
            return
        if (isinstance(n, nodes.Filter) and n.name in GUARD_FILTERS) or isinstance(n, nodes.Test):
            if n.node is not None:
                visit(n.node, guarded | _steps_in(n.node))
            for child in (*n.args, *n.kwargs):
                visit(child, guarded)
            return
        if isinstance(n, nodes.Call) and isinstance(n.node, nodes.Getattr):
            chain = _chain(n.node.node)
            if chain is not None:
                found.append((*chain, guarded))
                for child in (*n.args, *n.kwargs):
                    visit(child, guarded)
                return
        if isinstance(n, (nodes.Getattr, nodes.Getitem, nodes.Name)):
            chain = _chain(n)
            if chain is not None:
                if not (isinstance(n, nodes.Name) and n.ctx != "load"):
                    found.append((*chain, guarded))
                return
            if isinstance(n, nodes.Getitem):
                visit(n.node, guarded)
                visit(n.arg, guarded)
                return
        for child in n.iter_child_nodes():
            visit(child, guarded)

    visit(node, set())
    return found


def _steps_in(node: nodes.Node) -> set[str]:
    """The step ids a piece of an expression reads (``steps.<id>...``)."""
    out: set[str] = set()
    for n in node.find_all((nodes.Getattr, nodes.Getitem)):
        chain = _chain(n)
        if chain is not None and chain[0] == "steps" and chain[1]:
            out.add(str(chain[1][0]))
    return out


def _mentioned_steps(text: str) -> set[str]:
    try:
        return _steps_in(expressions.environment().parse(text))
    except TemplateSyntaxError:
        return set()


def _sorted(doc: Document, found: list[str]) -> list[str]:
    return sorted(found, key=lambda p: int(p[len(doc.path) + 1 :].split(":", 1)[0]))


def normalize(data: Any) -> Any:
    """Undo YAML 1.1's reading of ``on:`` as ``true`` where ``on`` is a key of ours
    (``retry: {on: [...]}``), in place."""
    if isinstance(data, dict):
        for step, _ptr, _path in walk_steps(data.get("steps")):
            retry = step.get("retry")
            if isinstance(retry, dict) and True in retry and "on" not in retry:
                retry["on"] = retry.pop(True)
    return data


def check_document(
    doc: Document, catalog: Catalog, *, check_secrets: bool = True, connections: Collection[str] | None = None
) -> list[str]:
    """Every static problem of a parsed workflow document; with ``connections``, a
    ``connection:`` that names none of them is one."""
    normalize(doc.data)
    found = _Checker(doc, catalog, check_secrets).run()
    if connections is not None:
        found += connection_problems(doc, connections)
    return _sorted(doc, found)


def connection_problems(doc: Document, names: Collection[str]) -> list[str]:
    """``file:line: /pointer: [step ID: ]unknown connection ...`` for every
    ``connection:`` (the workflow's, and any step's, branches included) not in ``names``."""
    found: list[str] = []
    known = sorted(names)

    def check(value: Any, ptr: str, step: Any) -> None:
        if isinstance(value, str) and value not in names:
            close = difflib.get_close_matches(value, known, n=2)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            who = f"step {step}: " if isinstance(step, str) else ""
            found.append(
                f"{doc.where(ptr)}: {ptr}: {who}unknown connection {short(value)} "
                f"({hint}connections: {', '.join(known)})"
            )

    if isinstance(doc.data, dict):
        check(doc.data.get("connection"), "/connection", None)
        for step, ptr, _path in walk_steps(doc.data.get("steps")):
            if "connection" in step:
                check(step["connection"], f"{ptr}/connection", step.get("id"))
    return found


def deprecations(doc: Document, catalog: Catalog) -> list[str]:
    """A warning for every step or trigger (at any depth) that uses a deprecated
    action or trigger: ``file:line: /pointer: step ID: X is deprecated...``."""
    found: list[str] = []

    def visit(value: Any, ptr: str) -> None:
        if isinstance(value, list):
            for i, v in enumerate(value):
                visit(v, f"{ptr}/{i}")
        elif isinstance(value, dict):
            use = value.get("use")
            manifest = catalog.manifests.get(use) if isinstance(use, str) else None
            line = manifest.deprecation() if manifest is not None else None
            if line is not None:
                who = f"step {value['id']}: " if isinstance(value.get("id"), str) else ""
                found.append(f"{doc.where(ptr + '/use')}: {ptr}/use: {who}{line}")
            for k, v in value.items():
                visit(v, f"{ptr}/{escape(str(k))}")

    if isinstance(doc.data, dict):
        for key in ("trigger", "steps"):
            visit(doc.data.get(key), f"/{key}")
    return found


_RELAXED: dict[tuple[int, frozenset[str]], tuple[Any, dict[str, Any]]] = {}


def _without_given(schema: dict[str, Any], given: frozenset[str]) -> dict[str, Any]:
    """``schema`` as the literal inputs of a step must meet when ``given`` come from
    expressions: those not required, no minProperties (what ``_literal_inputs`` leaves
    out of the errors); the same object for the same schema and names."""
    key = (id(schema), given)
    found = _RELAXED.get(key)
    if found is not None and found[0] is schema:
        return found[1]
    relaxed = {k: v for k, v in schema.items() if k != "minProperties"}
    if isinstance(schema.get("required"), list):
        relaxed["required"] = [r for r in schema["required"] if r not in given]
    if len(_RELAXED) >= 1024:
        _RELAXED.clear()
    _RELAXED[key] = (schema, relaxed)
    return relaxed
