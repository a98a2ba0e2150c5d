"""JSON Schema (draft 2020-12, format checking on) and error formatting."""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing.exceptions import Unresolvable

from connector.catalog import formats
from connector.errors import short
from connector.yamlio import escape, pointer

FORMAT_CHECKER = copy.copy(Draft202012Validator.FORMAT_CHECKER)  # jsonschema's own stays as it is
FORMAT_CHECKER.checkers = dict(FORMAT_CHECKER.checkers)
formats.register(FORMAT_CHECKER)


@cache
def shipped_schema(name: str) -> dict[str, Any]:
    """A schema shipped in ``manifests/schemas/`` (``manifest`` or ``workflow``)."""
    from willo_manifests import ROOT

    data: dict[str, Any] = json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text("utf-8"))
    return data


@cache
def _validator_for_shipped(name: str) -> Draft202012Validator:
    return Draft202012Validator(shipped_schema(name), format_checker=FORMAT_CHECKER)


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=FORMAT_CHECKER)


def check_schema(schema: Any, resources: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """Problems with ``schema`` itself, as ``(pointer, message)`` pairs: what the
    draft 2020-12 meta-schema rejects, keywords no vocabulary defines, and (for a schema
    the meta-schema accepts) every ``$ref`` that does not resolve: nothing is fetched,
    so a remote or relative reference cannot resolve. ``resources`` are the shared
    schemas a ``resource:NAME`` reference may name (before they are inlined)."""
    try:
        key = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError):  # not JSON (YAML dates...): the meta-schema says why
        found = list(_check_schema(schema))
    else:
        found = list(_checked(key))
    return found or unresolvable_refs(schema, resources)


@functools.lru_cache(maxsize=4096)
def _checked(key: str) -> tuple[tuple[str, str], ...]:
    """Checking against the meta-schema is the dearest part of loading a catalog; the
    same schemas come back each time a process builds one (tests, embedding)."""
    return _check_schema(json.loads(key))


def _check_schema(schema: Any) -> tuple[tuple[str, str], ...]:
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    found = [(pointer(e.absolute_path), _message(e)) for e in meta.iter_errors(schema)]
    return tuple(found + unknown_keywords(schema))


#: Where a schema keyword holds subschemas: a mapping of them, one, or a list of them.
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SCHEMA_ONE = (
    "items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
    "unevaluatedItems", "unevaluatedProperties", "contentSchema",
)  # fmt: skip
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")


@cache
def _keywords() -> frozenset[str]:
    """Every keyword of the draft 2020-12 vocabularies, read off their meta-schemas."""
    from jsonschema_specifications import REGISTRY

    found: set[str] = set()
    for uri in REGISTRY:
        if "/draft/2020-12/meta/" in uri:
            found |= set(REGISTRY.contents(uri).get("properties", {}))
    return frozenset(found)


def unknown_keywords(schema: Any, at: str = "") -> list[tuple[str, str]]:
    """Keys of schema objects that no vocabulary defines and that are not ``x-``
    extensions: a typo, or YAML that split a flow mapping at a comma
    (``{description: Owner, Admin or Standard.}`` has a key ``Admin or Standard.``)."""
    if not isinstance(schema, dict):
        return []
    found = [
        (f"{at}/{escape(str(k))}", f"unknown schema keyword {str(k)[:40]!r} (custom keywords start with x-;"
         " in a YAML flow mapping, quote text that holds a comma)")
        for k in schema
        if k not in _keywords() and not str(k).startswith("x-")
    ]  # fmt: skip
    for key in _SCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            for name, sub in schema[key].items():
                found += unknown_keywords(sub, f"{at}/{key}/{escape(str(name))}")
    for key in _SCHEMA_ONE:
        found += unknown_keywords(schema.get(key), f"{at}/{key}")
    for key in _SCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            for i, sub in enumerate(schema[key]):
                found += unknown_keywords(sub, f"{at}/{key}/{i}")
    return found


#: keywords whose values are data, not schemas: a "$ref" key inside them is no reference
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples", "example"})


def unresolvable_refs(schema: Any, resources: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """``(pointer, message)`` for every ``$ref`` in ``schema`` that does not resolve."""
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    root = Registry().resolver_with_root(DRAFT202012.create_resource(schema))
    found: list[tuple[str, str]] = []
    stack: list[tuple[Any, list[Any], Any]] = [(schema, [], root)]
    while stack:
        node, path, resolver = stack.pop()
        if isinstance(node, dict):
            if path and isinstance(node.get("$id"), str):
                resolver = resolver.in_subresource(DRAFT202012.create_resource(node))
            ref = node.get("$ref")
            if isinstance(ref, str):
                if resources is not None and ref.startswith("resource:"):
                    if ref[len("resource:") :] not in resources:
                        found.append((pointer([*path, "$ref"]), f"unknown resource schema {_short(ref)}"))
                else:
                    try:
                        resolver.lookup(ref)
                    except Unresolvable:
                        found.append((pointer([*path, "$ref"]), f"cannot resolve $ref {_short(ref)}"))
            for key, value in node.items():
                if key not in _DATA_KEYWORDS:
                    stack.append((value, [*path, key], resolver))
        elif isinstance(node, list):
            stack.extend((value, [*path, i], resolver) for i, value in enumerate(node))
    return sorted(found)


def _leaf_errors(error: ValidationError) -> Iterator[ValidationError]:
    """The most specific errors under a oneOf/anyOf, else the error itself."""
    if error.context:
        best = jsonschema.exceptions.best_match(error.context)
        if best is not None:
            yield best
            return
    yield error


def errors(instance: Any, schema_or_validator: Any) -> list[tuple[str, str]]:
    """Every error of ``instance``, as ``(json_pointer, message)``, in document order."""
    v = schema_or_validator
    if isinstance(v, str):
        v = _validator_for_shipped(v)
    elif isinstance(v, dict):
        v = validator(v)
    found: list[tuple[str, str]] = []
    try:
        for err in v.iter_errors(instance):
            for leaf in _leaf_errors(err):
                found.append((pointer(leaf.absolute_path), _message(leaf)))
    except Unresolvable as exc:  # a schema that was never checked with check_schema
        found.append(("", f"the schema has a $ref that cannot be resolved ({_short(exc.ref)})"))
    found.sort(key=lambda pair: pair[0])
    return found


MESSAGE_LIMIT = 200


def _message(err: ValidationError) -> str:
    if err.validator == "additionalProperties":
        msg = err.message.replace("Additional properties are not allowed", "unknown field")
    elif err.validator == "required":
        msg = err.message
    elif err.validator == "format":
        why = f": {err.cause}" if isinstance(err.cause, formats.FormatProblem) else ""
        msg = f"{_short(err.instance)} is not a valid {err.validator_value}{why}"
    elif err.validator == "pattern":
        msg = f"{_short(err.instance)} does not match {_short(err.validator_value)}"
    else:
        msg = err.message.replace("\n", " ")
    if len(msg) > MESSAGE_LIMIT:  # jsonschema quotes the whole instance: quote a prefix
        whole = repr(err.instance)
        if whole in msg:
            msg = msg.replace(whole, short(err.instance))
    if len(msg) > MESSAGE_LIMIT:
        msg = msg[: MESSAGE_LIMIT - 3] + "..."
    return msg


# ---------------------------------------------------------------------- decimals

#: A schema keyword of this project: the value is a decimal, which Django REST framework
#: sends as a string ("4.5"); the schema accepts the string, expressions get the number.
DECIMAL = "x-decimal"
_DECIMAL_TEXT = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def decimal_tree(schema: Any) -> Any:
    """The parts of ``schema`` that lead to an ``x-decimal`` (None if there are none):
    ``True`` at a decimal, ``{"properties": {...}}``, ``{"items": ...}``, ``{"any": [...]}``."""
    if not isinstance(schema, dict):
        return None
    if schema.get(DECIMAL):
        return True
    tree: dict[str, Any] = {}
    props = {k: t for k, p in (schema.get("properties") or {}).items() if (t := decimal_tree(p)) is not None}
    if props:
        tree["properties"] = props
    items = decimal_tree(schema.get("items"))
    if items is not None:
        tree["items"] = items
    branches = [
        t for key in ("anyOf", "oneOf", "allOf") for b in schema.get(key, []) if (t := decimal_tree(b))
    ]
    if branches:
        tree["any"] = branches
    return tree or None


def numbers(value: Any, tree: Any) -> Any:
    """``value`` with each decimal string that ``tree`` marks turned into an int or float."""
    if tree is True:
        if isinstance(value, str) and _DECIMAL_TEXT.match(value.strip()):
            return float(value) if "." in value else int(value)
        return value
    if not isinstance(tree, dict):
        return value
    for branch in tree.get("any", []):
        value = numbers(value, branch)
    props = tree.get("properties")
    if props and isinstance(value, dict):
        value = {k: numbers(v, props[k]) if k in props else v for k, v in value.items()}
    if "items" in tree and isinstance(value, list):
        value = [numbers(v, tree["items"]) for v in value]
    return value


def _short(value: Any) -> str:
    if isinstance(value, str):
        text = json.dumps(value[:61])
        return text if len(value) <= 60 else text[:57] + '..."'
    return short(value)


def apply_defaults(instance: Any, schema: Any) -> Any:
    """``instance`` with the ``default`` of every absent property filled in, through
    nested objects and array items (a copy; ``instance`` is left as it is)."""
    if not isinstance(schema, dict):
        return instance
    if isinstance(instance, dict):
        props = schema.get("properties")
        if not isinstance(props, dict):
            return instance
        out = dict(instance)
        for name, sub in props.items():
            if name not in out and isinstance(sub, dict) and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(out[name], sub)
        return out
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in instance]
    return instance
