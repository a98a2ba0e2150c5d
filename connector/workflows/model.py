"""Workflow files: loading and static validation, before anything is sent.

Checks: the workflow schema; unknown action and trigger ids (with suggestions);
duplicate step ids; references to unknown or later steps; ``steps.x.output.a.b``
paths that x's output schema does not have (through foreach lists too); names
outside the scope; literal inputs that break an action's input schema. Every
problem reads ``file:line: /pointer: step ID: message``.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError

from connector.catalog import schemas
from connector.catalog.index import Catalog
from connector.errors import ManifestError, UnknownIdError, short
from connector.workflows import expressions
from connector.yamlio import Document, YamlError, escape, load_text

log = logging.getLogger(__name__)

SCOPE = ("inputs", "trigger", "steps", "item", "index")
STEP_FIELDS = ("output", "status", "error")


@dataclass
class Workflow:
    """A validated workflow file."""

    doc: Document
    text: str

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
        return dict(trig) if trig else None


def load(path: str | Path, catalog: Catalog, text: str | None = None) -> Workflow:
    """Read and validate a workflow; raise :class:`ManifestError` with every problem."""
    try:
        if text is None:
            text = Path(path).read_text(encoding="utf-8")
        doc = load_text(text, str(path))
    except OSError as exc:
        raise ManifestError([f"{path}:1: cannot read: {exc.strerror}"]) from None
    except YamlError as exc:
        raise ManifestError([str(exc)]) from None
    problems = check_document(doc, catalog)
    if problems:
        raise ManifestError(problems)
    for warning in deprecations(doc, catalog):
        log.warning("%s", warning)
    return Workflow(doc, text)


# --------------------------------------------------------------------------- checks


class _Checker:
    def __init__(self, doc: Document, catalog: Catalog):
        self.doc = doc
        self.catalog = catalog
        self.problems: list[str] = []
        self.outputs: dict[str, Any] = {}  # step id -> output schema (list-wrapped for foreach)

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
        steps = data.get("steps")
        if isinstance(steps, list):
            self._steps(steps)
        return self.problems

    def _trigger(self, trig: Any) -> Any:
        if not isinstance(trig, dict) or not isinstance(trig.get("use"), str):
            return None
        try:
            m = self.catalog.get(trig["use"], "trigger")
        except UnknownIdError as exc:
            self.add("/trigger/use", str(exc))
            return None
        if isinstance(trig.get("with"), dict):
            self._literal_inputs(trig["with"], m.input_schema, "/trigger/with", None)
        return m.output_schema

    def _steps(self, steps: list[Any]) -> None:
        seen: dict[str, int] = {}
        all_ids = {s.get("id") for s in steps if isinstance(s, dict) and isinstance(s.get("id"), str)}
        for i, step in enumerate(steps):
            if not isinstance(step, dict) or not isinstance(step.get("id"), str):
                continue
            sid, base = step["id"], f"/steps/{i}"
            if sid in seen:
                self.add(f"{base}/id", f"duplicate step id (first at /steps/{seen[sid]})", sid)
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
                    foreach, f"{base}/foreach", sid, seen, all_ids, in_foreach=False, want_list=True
                )
            for key in ("if",):
                if isinstance(step.get(key), str):
                    self._expressions(
                        step[key],
                        f"{base}/{key}",
                        sid,
                        seen,
                        all_ids,
                        in_foreach=foreach is not None,
                        item_schema=item_schema,
                    )
            with_ = step.get("with")
            if isinstance(with_, dict):
                for ptr, text in _strings(with_, f"{base}/with"):
                    self._expressions(
                        text, ptr, sid, seen, all_ids, in_foreach=foreach is not None, item_schema=item_schema
                    )
                if manifest is not None:
                    self._literal_inputs(with_, manifest.input_schema, f"{base}/with", sid)
            elif manifest is not None and manifest.input_schema.get("required"):
                need = ", ".join(manifest.input_schema["required"])
                self.add(base, f"{manifest.id} needs inputs ({need}); add `with:`", sid)
            if sid not in self.outputs:  # a duplicate id keeps the first step's output
                out = manifest.output_schema if manifest is not None else None
                self.outputs[sid] = {"type": "array", "items": out} if foreach and out else out
            seen.setdefault(sid, i)

    def _literal_inputs(
        self, with_: dict[str, Any], schema: dict[str, Any], base: str, sid: str | None
    ) -> None:
        dynamic = {k for k, v in with_.items() if _has_expression(v)}
        literal = {k: v for k, v in with_.items() if k not in dynamic}
        for ptr, msg in schemas.errors(literal, schema):
            if not ptr and any(msg.startswith(f"{k!r} is a required") for k in dynamic):
                continue
            if not ptr and dynamic and msg.endswith("does not have enough properties"):
                continue  # minProperties counts the inputs given by expressions too
            self.add(f"{base}{ptr}", msg, sid)

    def _expressions(
        self,
        text: str,
        ptr: str,
        sid: str,
        earlier: dict[str, int],
        all_ids: set[Any],
        *,
        in_foreach: bool,
        want_list: bool = False,
        item_schema: Any = None,
    ) -> Any:
        """Check one string's expressions; return the schema of a single-chain value."""
        if not expressions.is_expression(text):
            return None
        try:
            ast = expressions.environment().parse(text)
        except TemplateSyntaxError as exc:
            self.add(ptr, f"bad expression {short(text)}: {exc.message}", sid)
            return None
        over = expressions.limit_problem(ast)
        if over is not None:
            self.add(ptr, f"expression {short(text)} is over a limit: {over}", sid)
        local = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
        result = None
        for name, keys in _chains(ast):
            if name in local:
                continue
            schema = self._reference(name, keys, ptr, sid, earlier, all_ids, in_foreach, item_schema)
            result = schema
        if want_list and isinstance(result, dict) and result.get("type") == "array":
            return result.get("items")
        return None

    def _reference(
        self,
        name: str,
        keys: list[Any],
        ptr: str,
        sid: str,
        earlier: dict[str, int],
        all_ids: set[Any],
        in_foreach: bool,
        item_schema: Any,
    ) -> Any:
        if name not in SCOPE:
            self.add(ptr, f"unknown name {name!r} (in scope: {', '.join(SCOPE)})", sid)
            return None
        if name in ("item", "index") and not in_foreach:
            self.add(ptr, f"{name!r} is only defined in a step with foreach", sid)
            return None
        if name == "item":
            return self._path(item_schema, keys, "item", ptr, sid)
        if name == "inputs":
            return self._path(self.inputs_schema, keys, "inputs", ptr, sid)
        if name == "trigger":
            return self._path(self.trigger_schema, keys, "trigger", ptr, sid)
        if name == "steps":
            if not keys:
                return None
            target = str(keys[0])
            if target == sid:
                self.add(ptr, f"steps.{target} refers to this step itself", sid)
                return None
            if target not in earlier:
                if target in all_ids:
                    self.add(ptr, f"steps.{target} runs after this step", sid)
                else:
                    close = difflib.get_close_matches(target, list(earlier), n=1)
                    hint = f"; did you mean {close[0]}?" if close else ""
                    self.add(ptr, f"no earlier step {target!r}{hint}", sid)
                return None
            if len(keys) < 2:
                return None
            if keys[1] not in STEP_FIELDS:
                self.add(ptr, f"steps.{target}.{keys[1]}: use steps.{target}.output", sid)
                return None
            if keys[1] != "output":
                return None
            return self._path(self.outputs.get(target), keys[2:], f"steps.{target}.output", ptr, sid)
        return None

    def _path(self, schema: Any, keys: list[Any], label: str, ptr: str, sid: str) -> Any:
        problem, found = walk_schema(schema, keys)
        if problem:
            self.add(ptr, f"{label}{_dotted(keys[: problem[0]])} {problem[1]}", sid)
        return found


def _dotted(keys: list[Any]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys)


def walk_schema(schema: Any, keys: list[Any]) -> tuple[tuple[int, str] | None, Any]:
    """Follow ``keys`` into ``schema``: ``((depth, problem) | None, schema found or None)``."""
    for depth, key in enumerate(keys):
        if not isinstance(schema, dict):
            return None, None
        branches = schema.get("anyOf") or schema.get("oneOf")
        if branches:
            results = [walk_schema(b, keys[depth:]) for b in branches]
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


def _chains(node: nodes.Node) -> list[tuple[str, list[Any]]]:
    """Every ``name.a.b[0]`` chain read by an expression (method calls trimmed)."""
    found: list[tuple[str, list[Any]]] = []

    def visit(n: nodes.Node) -> None:
        if isinstance(n, nodes.Call) and isinstance(n.node, nodes.Getattr):
            chain = _chain(n.node.node)
            if chain is not None:
                found.append(chain)
                for child in (*n.args, *n.kwargs):
                    visit(child)
                return
        if isinstance(n, (nodes.Getattr, nodes.Getitem, nodes.Name)):
            chain = _chain(n)
            if chain is not None:
                if not (isinstance(n, nodes.Name) and n.ctx != "load"):
                    found.append(chain)
                return
            if isinstance(n, nodes.Getitem):
                visit(n.node)
                visit(n.arg)
                return
        for child in n.iter_child_nodes():
            visit(child)

    visit(node)
    return found


def check_document(doc: Document, catalog: Catalog) -> list[str]:
    """Every static problem of a parsed workflow document."""
    found = _Checker(doc, catalog).run()
    return sorted(found, key=lambda p: int(p[len(doc.path) + 1 :].split(":", 1)[0]))


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
