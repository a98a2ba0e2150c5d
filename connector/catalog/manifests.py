"""Reading and validating manifest files (imported only when the cache is cold).

Shared resource schemas live in YAML files whose top level is ``resources:``
(a mapping of name to JSON Schema); a manifest refers to one as
``{$ref: "resource:NAME"}`` and the loader inlines it, so every schema the rest of
the host sees is self-contained.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, nodes
from jinja2.exceptions import TemplateSyntaxError

from connector.catalog import schemas
from connector.catalog.types import Manifest
from connector.yamlio import Document, YamlError, load_file

RESOURCE_PREFIX = "resource:"


def read_files(
    files: Iterable[tuple[str, Path]], problems: list[str]
) -> tuple[list[tuple[str, Document]], dict[str, Any]]:
    """Parse every file; split manifests from resource files."""
    docs: list[tuple[str, Document]] = []
    resources: dict[str, Any] = {}
    for plugin, path in files:
        try:
            doc = load_file(path)
        except YamlError as exc:
            problems.append(str(exc))
            continue
        if isinstance(doc.data, dict) and "resources" in doc.data and "manifest" not in doc.data:
            table = doc.data["resources"]
            if not isinstance(table, dict):
                problems.append(f"{doc.where('/resources')}: /resources: must be a mapping")
                continue
            for name, schema in table.items():
                if name in resources:
                    problems.append(f"{doc.where('/resources/' + name)}: /resources/{name}: defined twice")
                resources[name] = schema
        else:
            docs.append((plugin, doc))
    return docs, resources


def inline_refs(value: Any, resources: dict[str, Any], trail: tuple[str, ...] = ()) -> Any:
    """Replace every ``{$ref: resource:NAME}`` by a copy of that resource schema."""
    if isinstance(value, list):
        return [inline_refs(v, resources, trail) for v in value]
    if not isinstance(value, dict):
        return value
    ref = value.get("$ref")
    if isinstance(ref, str) and ref.startswith(RESOURCE_PREFIX):
        name = ref[len(RESOURCE_PREFIX) :]
        if name not in resources:
            raise KeyError(f"unknown resource schema {name!r}")
        if name in trail:
            raise KeyError(f"resource schema {name!r} refers to itself")
        merged = copy.deepcopy(resources[name])
        merged.update({k: v for k, v in value.items() if k != "$ref"})
        return inline_refs(merged, resources, (*trail, name))
    return {k: inline_refs(v, resources, trail) for k, v in value.items()}


@cache
def _parser() -> Environment:
    """Only parses request templates (to see which inputs they read); renders nothing."""
    return Environment()


def input_references(template: Any) -> list[tuple[str, str]]:
    """``(input_name, template_text)`` for every ``input.NAME`` a request template reads."""
    found: list[tuple[str, str]] = []
    for text in _strings(template):
        if "{{" not in text and "{%" not in text:
            continue
        ast = _parser().parse(text)
        for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
            target = getattr(node, "node", None)
            if not (isinstance(target, nodes.Name) and target.name == "input"):
                continue
            if isinstance(node, nodes.Getattr):
                found.append((node.attr, text))
            elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
                found.append((str(node.arg.value), text))
    return found


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def validate(doc: Document, plugin: str, resources: dict[str, Any], problems: list[str]) -> Manifest | None:
    """Every problem of one manifest document, appended as ``file:line: /ptr: msg``."""
    before = len(problems)

    def add(ptr: str, msg: str) -> None:
        problems.append(f"{doc.where(ptr)}: {ptr or '/'}: {msg}")

    for ptr, msg in schemas.errors(doc.data, "manifest"):
        add(ptr, msg)
    if len(problems) > before:
        return None
    data = doc.data
    try:
        data = inline_refs(data, resources)
    except KeyError as exc:
        add("", str(exc.args[0]))
        return None
    for part in ("input", "output"):
        for ptr, msg in schemas.check_schema(data[part]):
            add(f"/{part}{ptr}", f"not a valid JSON Schema: {msg}")
    if len(problems) > before:
        return None
    for ptr, msg in schemas.errors(data["sample"], data["output"]):
        add(f"/sample{ptr}", f"sample does not satisfy output: {msg}")
    _check_request(data, add)
    if len(problems) > before:
        return None
    return Manifest(data, doc.path, plugin)


def _check_request(data: dict[str, Any], add: Any) -> None:
    request = data.get("request")
    if request is None:
        return
    names = set((data["input"].get("properties") or {}).keys())
    path = request.get("path")
    if isinstance(path, str) and not path.split("?")[0].endswith("/"):
        add(
            "/request/path",
            f"{path!r} does not end with '/': Willo's routes (Django REST framework) do, and "
            "Django answers a path without its slash with a 301 redirect, so the request is lost",
        )
    for key in ("path", "query", "json"):
        if key not in request:
            continue
        try:
            refs = input_references(request[key])
        except TemplateSyntaxError as exc:
            add(f"/request/{key}", f"bad expression: {exc.message}")
            continue
        for name, text in refs:
            if name not in names and name != "all":
                add(f"/request/{key}", f"{text!r} reads input.{name}, which /input does not define")
    size = (request.get("pagination") or {}).get("page_size")
    if size is not None:
        prop = (data["input"].get("properties") or {}).get(size)
        if not isinstance(prop, dict) or not isinstance(prop.get("maximum"), int):
            add(
                "/request/pagination/page_size",
                f"names input {size!r}, which /input does not define with an integer maximum",
            )
