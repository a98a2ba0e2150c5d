"""JSON Schema (draft 2020-12, format checking on) and error formatting.

jsonschema is imported on first need (a cold ``call`` whose inputs :func:`proves_valid`
settles needs none), and its "uri" and "date-time" libraries on first use.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from connector.errors import escape, pointer, short

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

#: The format libraries jsonschema imports for "uri" and "date-time": they are imported
#: the first time a value of that format is checked, not with jsonschema.
_FORMAT_LIBS = ("rfc3986_validator", "rfc3339_validator")


@cache
def _jsonschema() -> Any:
    """jsonschema, imported once, its format libraries kept for first use."""
    blocked = [name for name in _FORMAT_LIBS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # jsonschema's import of it fails
    try:
        import jsonschema
        import jsonschema.exceptions
    finally:
        for name in blocked:
            if sys.modules.get(name) is None:
                del sys.modules[name]
    if "date-time" not in jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers:
        _register_lazy_formats(blocked)
    return jsonschema


def _uri(instance: object) -> bool:
    from rfc3986_validator import validate_rfc3986

    return not isinstance(instance, str) or bool(validate_rfc3986(instance, rule="URI"))


def _uri_reference(instance: object) -> bool:
    from rfc3986_validator import validate_rfc3986

    return not isinstance(instance, str) or bool(validate_rfc3986(instance, rule="URI_reference"))


def _datetime(instance: object) -> bool:
    from rfc3339_validator import validate_rfc3339

    return not isinstance(instance, str) or bool(validate_rfc3339(instance.upper()))


def _time(instance: object) -> bool:
    return not isinstance(instance, str) or _datetime("1970-01-01T" + instance)


def _register_lazy_formats(blocked: list[str]) -> None:
    """Give jsonschema back the formats whose libraries were kept from its import, as it
    registers them itself (every draft), each importing its library on first use."""
    import importlib.util

    from jsonschema import _format

    if not hasattr(_format, "_checks_drafts"):  # pragma: no cover - jsonschema changed
        return
    if "rfc3986_validator" in blocked and importlib.util.find_spec("rfc3986_validator"):
        _format._checks_drafts(name="uri")(_uri)
        _format._checks_drafts(
            draft6="uri-reference",
            draft7="uri-reference",
            draft201909="uri-reference",
            draft202012="uri-reference",
            raises=ValueError,
        )(_uri_reference)
    if "rfc3339_validator" in blocked and importlib.util.find_spec("rfc3339_validator"):
        _format._checks_drafts(name="date-time")(_datetime)
        _format._checks_drafts(draft7="time", draft201909="time", draft202012="time")(_time)


def __getattr__(name: str) -> Any:
    if name == "FORMAT_CHECKER":  # draft 2020-12's, with every format
        return _jsonschema().Draft202012Validator.FORMAT_CHECKER
    raise AttributeError(name)


@cache
def shipped_schema(name: str) -> dict[str, Any]:
    """A schema shipped in ``manifests/schemas/`` (``manifest`` or ``workflow``)."""
    from willo_manifests import ROOT

    data: dict[str, Any] = json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text("utf-8"))
    return data


@cache
def _validator_for_shipped(name: str) -> Draft202012Validator:
    return validator(shipped_schema(name))


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    draft = _jsonschema().Draft202012Validator
    return draft(schema, format_checker=draft.FORMAT_CHECKER)


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
    draft = _jsonschema().Draft202012Validator
    meta = draft(draft.META_SCHEMA)
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
        best = _jsonschema().exceptions.best_match(error.context)
        if best is not None:
            yield best
            return
    yield error


def errors(instance: Any, schema_or_validator: Any) -> list[tuple[str, str]]:
    """Every error of ``instance``, as ``(json_pointer, message)``, in document order."""
    v = schema_or_validator
    if isinstance(v, dict) and proves_valid(instance, v):
        return []
    from referencing.exceptions import Unresolvable

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


# ---------------------------------------------------------------------- proof of validity

#: Keywords that assert nothing (annotations): a proof passes over them.
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)


def _is_type(x: Any, name: Any) -> bool:
    t = type(x)
    if name == "string":
        return isinstance(x, str)
    if name == "integer":
        return t is int or (t is float and x.is_integer())
    if name == "number":
        return t is int or t is float
    if name == "boolean":
        return t is bool
    if name == "null":
        return x is None
    if name == "object":
        return isinstance(x, dict)
    if name == "array":
        return isinstance(x, list)
    return False


def _same(x: Any, options: Any) -> bool:
    t = type(x)
    return t in (str, int, float, bool, type(None)) and any(type(o) is t and o == x for o in options)


def _number(x: Any) -> bool:
    return type(x) is int or type(x) is float


def _rule(key: str, x: Any, rule: Any, s: dict[str, Any]) -> bool:
    """Does ``x`` certainly satisfy keyword ``key`` (``rule``) of schema ``s``?"""
    if key == "type":
        return any(_is_type(x, n) for n in rule) if isinstance(rule, list) else _is_type(x, rule)
    if key == "properties":
        return not isinstance(x, dict) or all(proves_valid(x[k], sub) for k, sub in rule.items() if k in x)
    if key == "required":
        return not isinstance(x, dict) or all(k in x for k in rule)
    if key == "additionalProperties":
        if not isinstance(x, dict) or rule is True:
            return True
        known = s.get("properties") or {}
        return all(proves_valid(v, rule) for k, v in x.items() if k not in known)
    if key == "enum":
        return isinstance(rule, list) and _same(x, rule)
    if key == "const":
        return _same(x, [rule])
    if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if type(x) is bool or isinstance(x, (str, dict, list, type(None))):
            return True  # bounds apply to numbers only (a boolean is not one)
        if not _number(x) or not _number(rule):
            return False
        return {
            "minimum": x >= rule,
            "maximum": x <= rule,
            "exclusiveMinimum": x > rule,
            "exclusiveMaximum": x < rule,
        }[key]
    if key in ("minLength", "maxLength"):
        if not isinstance(x, str):
            return True
        return len(x) >= rule if key == "minLength" else len(x) <= rule
    if key == "pattern":
        return not isinstance(x, str) or re.search(rule, x) is not None
    if key == "format":
        check = _FORMATS.get(rule)
        return not isinstance(x, str) or (check is not None and bool(check(x)))
    if key == "items":
        return not isinstance(x, list) or all(proves_valid(i, rule) for i in x)
    if key in ("minItems", "maxItems"):
        if not isinstance(x, list):
            return True
        return len(x) >= rule if key == "minItems" else len(x) <= rule
    if key in ("minProperties", "maxProperties"):
        if not isinstance(x, dict):
            return True
        return len(x) >= rule if key == "minProperties" else len(x) <= rule
    if key == "uniqueItems":
        if not isinstance(x, list) or rule is False:
            return True
        return all(type(i) is str for i in x) and len(set(x)) == len(x)
    return False  # a keyword this proof does not know: ask jsonschema


#: Formats a proof checks, as jsonschema does (the same functions, for the lazy ones).
_FORMATS: dict[str, Callable[[str], object]] = {
    "email": lambda s: "@" in s,
    "uri": _uri,
    "uri-reference": _uri_reference,
    "date-time": _datetime,
    "time": _time,
}


def proves_valid(instance: Any, schema: Any) -> bool:
    """True only if ``instance`` certainly satisfies ``schema``, settled without
    jsonschema for the keywords manifests' inputs use (types, properties, required,
    additionalProperties, enum, const, bounds, lengths, pattern, items, uniqueItems of
    strings, min/maxProperties, the formats of ``_FORMATS``);
    False means "not proven": ask jsonschema, which also words the errors."""
    if schema is True:
        return True
    if not isinstance(schema, dict):
        return False
    for key, rule in schema.items():
        if key in _ANNOTATIONS or key.startswith("x-"):
            continue
        try:
            if not _rule(key, instance, rule, schema):
                return False
        except (TypeError, ValueError, re.error, RecursionError):
            return False
    return True


MESSAGE_LIMIT = 200


def _message(err: ValidationError) -> str:
    if err.validator == "additionalProperties":
        msg = err.message.replace("Additional properties are not allowed", "unknown field")
    elif err.validator == "required":
        msg = err.message
    elif err.validator == "format":
        msg = f"{_short(err.instance)} is not a valid {err.validator_value}"
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
