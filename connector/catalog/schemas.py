"""JSON Schema (draft 2020-12, format checking on) and error formatting.

jsonschema is imported on first need (a cold ``call`` whose inputs :func:`proves_valid`
settles needs none), and its "uri" and "date-time" libraries on first use.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from connector.catalog import formats
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
    """rfc3339_validator's verdict (as jsonschema asks it), its calendar check of the
    day remembered per date: a page of timestamps shares a few dates."""
    if not isinstance(instance, str):
        return True
    found = _rfc3339().match(instance.upper())
    return found is not None and _valid_date(*found.groups())


@cache
def _rfc3339() -> re.Pattern[str]:
    """rfc3339_validator's pattern, imported on first use (an import statement per value
    costs more than the match)."""
    from rfc3339_validator import RFC3339_REGEX

    return RFC3339_REGEX


@cache
def _valid_date(year: str, month: str, day: str) -> bool:
    from rfc3339_validator import validate_rfc3339

    return bool(validate_rfc3339(f"{year}-{month}-{day}T00:00:00Z"))  # the day is all it depends on


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


@cache
def _format_checker() -> Any:
    """Draft 2020-12's format checker with the dialect's own formats (cron, timezone);
    jsonschema's own stays as it is."""
    checker = copy.copy(_jsonschema().Draft202012Validator.FORMAT_CHECKER)
    checker.checkers = dict(checker.checkers)
    formats.register(checker)
    return checker


def __getattr__(name: str) -> Any:
    if name == "FORMAT_CHECKER":  # loaded on first use (see the module's docstring)
        return _format_checker()
    raise AttributeError(name)


@cache
def shipped_schema(name: str) -> dict[str, Any]:
    """A schema shipped in ``manifests/schemas/`` (``manifest`` or ``workflow``)."""
    from willo_manifests import ROOT

    data: dict[str, Any] = json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text("utf-8"))
    return data


@cache
def _shipped_proof(name: str) -> Any:
    """The shipped schema ``name`` with its local references inlined, for a proof (None
    when a reference is not local; a recursive one is inlined ``_REF_DEPTH`` deep, and
    a document nested deeper is left to jsonschema)."""
    root = shipped_schema(name)
    try:
        return _inline_refs(root, root, ())
    except ValueError:
        return None


def _inline_refs(node: Any, root: dict[str, Any], path: tuple[str, ...]) -> Any:
    """``node`` with each ``{"$ref": "#/$defs/NAME", ...}`` as ``{"allOf": [target], ...}``
    (the target inlined likewise); ValueError for a reference this cannot inline."""
    if isinstance(node, list):
        return [_inline_refs(x, root, path) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _inline_refs(v, root, path) for k, v in node.items() if k not in ("$ref", "$defs")}
    ref = node.get("$ref")
    if ref is not None:
        if not isinstance(ref, str) or not ref.startswith("#/$defs/") or "/" in ref[8:]:
            raise ValueError(ref)
        target = (root.get("$defs") or {}).get(ref[8:])
        if not isinstance(target, dict):
            raise ValueError(ref)
        if path.count(ref) >= _REF_DEPTH:  # (steps in branches in steps...): deeper, not proven
            target = _UNPROVEN
        out["allOf"] = [*out.get("allOf", []), _inline_refs(target, root, (*path, ref))]
    return out


_REF_DEPTH = 2  # a recursive reference inlined this many times deep
_UNPROVEN: dict[str, Any] = {"not": {}}  # a keyword the proof does not know: never proven (jsonschema says)


@cache
def _validator_for_shipped(name: str) -> Draft202012Validator:
    return validator(shipped_schema(name))


_VALIDATORS: dict[int, tuple[Any, Draft202012Validator]] = {}


def _validator_of(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of ``schema``, built once per schema object (building one costs more
    than using it: a poll must not build one per item)."""
    found = _VALIDATORS.get(id(schema))
    if found is not None and found[0] is schema:
        return found[1]
    if len(_VALIDATORS) >= 256:
        _VALIDATORS.clear()
    made = validator(schema)
    _VALIDATORS[id(schema)] = (schema, made)
    return made


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    draft = _jsonschema().Draft202012Validator
    return draft(schema, format_checker=_format_checker())


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
    if isinstance(v, str) and (proof := _shipped_proof(v)) is not None and proves_valid(instance, proof):
        return []  # (a valid workflow is settled without importing jsonschema)
    from referencing.exceptions import Unresolvable

    if isinstance(v, str):
        v = _validator_for_shipped(v)
    elif isinstance(v, dict):
        v = _validator_of(v)
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


def _yes(x: Any) -> bool:
    return True


def _no(x: Any) -> bool:
    return False


_NONE = type(None)
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda x: isinstance(x, str),
    "integer": lambda x: type(x) is int or (type(x) is float and x.is_integer()),
    "number": lambda x: type(x) is int or type(x) is float,
    "boolean": lambda x: type(x) is bool,
    "null": lambda x: x is None,
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
}
_SCALARS = (str, int, float, bool, _NONE)


def _number(x: Any) -> bool:
    return type(x) is int or type(x) is float


def _one_of_values(options: list[Any]) -> Callable[[Any], bool]:
    """``enum``/``const``: a scalar equal to an option of the same type (jsonschema tells
    1 from True; other values are left to it)."""
    found = {(type(o), o) for o in options if type(o) in _SCALARS}
    return lambda x: type(x) in _SCALARS and (type(x), x) in found


def _bound(key: str, rule: Any) -> Callable[[Any], bool]:
    compare = {
        "minimum": lambda x: x >= rule,
        "maximum": lambda x: x <= rule,
        "exclusiveMinimum": lambda x: x > rule,
        "exclusiveMaximum": lambda x: x < rule,
    }[key]
    numeric = _number(rule)

    def check(x: Any) -> bool:
        if type(x) is bool or isinstance(x, (str, dict, list, _NONE)):
            return True  # bounds apply to numbers only (a boolean is not one)
        return numeric and _number(x) and compare(x)

    return check


def _size(kind: type, least: bool, rule: Any) -> Callable[[Any], bool]:
    def check(x: Any) -> bool:
        if not isinstance(x, kind):
            return True
        n: int = len(x)  # type: ignore[arg-type]
        return n >= rule if least else n <= rule

    return check


def _rule(key: str, rule: Any, s: dict[str, Any]) -> Callable[[Any], bool] | None:
    """The check of keyword ``key`` (``rule``) of schema ``s``: True only where ``x``
    certainly satisfies it; None for a keyword this proof does not know."""
    if key == "type":
        names = rule if isinstance(rule, list) else [rule]
        checks = [_TYPES.get(n, _no) if isinstance(n, str) else _no for n in names]
        if len(checks) == 1:
            return checks[0]
        if len(checks) == 2:  # the common ["string", "null"]: no generator per value
            a, b = checks
            return lambda x: a(x) or b(x)
        return lambda x: any(c(x) for c in checks)
    if key == "properties":
        if not isinstance(rule, dict):
            return None
        table = {k: _compiled(sub) for k, sub in rule.items()}

        def properties(x: Any) -> bool:
            if not isinstance(x, dict):
                return True
            for k, v in x.items():
                check = table.get(k)
                if check is not None and not check(v):
                    return False
            return True

        return properties
    if key == "required":
        if not isinstance(rule, list):
            return None
        required = frozenset(rule)
        return lambda x: not isinstance(x, dict) or required <= x.keys()
    if key == "additionalProperties":
        if rule is True:
            return _yes
        known = set(s.get("properties") or {})
        extra = _compiled(rule)
        return lambda x: not isinstance(x, dict) or all(extra(v) for k, v in x.items() if k not in known)
    if key == "enum":
        return _one_of_values(rule) if isinstance(rule, list) else _no
    if key == "const":
        return _one_of_values([rule])
    if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return _bound(key, rule)
    if key in ("minLength", "maxLength"):
        return _size(str, key == "minLength", rule)
    if key in ("minItems", "maxItems"):
        return _size(list, key == "minItems", rule)
    if key in ("minProperties", "maxProperties"):
        return _size(dict, key == "minProperties", rule)
    if key == "pattern":
        try:
            regex = re.compile(rule)
        except (re.error, TypeError):
            return _no
        return lambda x: not isinstance(x, str) or regex.search(x) is not None
    if key == "format":
        check = _FORMATS.get(rule) if isinstance(rule, str) else None
        if check is None:
            return lambda x: not isinstance(x, str)
        return lambda x: not isinstance(x, str) or bool(check(x))
    if key == "items":
        item = _compiled(rule)
        return lambda x: not isinstance(x, list) or all(item(i) for i in x)
    if key == "allOf":
        if not isinstance(rule, list):
            return None
        parts = [_compiled(sub) for sub in rule]
        return lambda x: all(part(x) for part in parts)
    if key == "dependentRequired":
        if not isinstance(rule, dict) or not all(isinstance(v, list) for v in rule.values()):
            return None
        needs = {k: frozenset(v) for k, v in rule.items()}
        return lambda x: (
            not isinstance(x, dict) or all(need <= x.keys() for k, need in needs.items() if k in x)
        )
    if key == "uniqueItems":
        if rule is False:
            return _yes
        return lambda x: not isinstance(x, list) or (all(type(i) is str for i in x) and len(set(x)) == len(x))
    return None  # a keyword this proof does not know: ask jsonschema


#: Formats a proof checks, as jsonschema does (the same functions, for the lazy ones).
_FORMATS: dict[str, Callable[[str], object]] = {
    "email": lambda s: "@" in s,
    "uri": _uri,
    "uri-reference": _uri_reference,
    "date-time": _datetime,
    "time": _time,
    "cron": formats.check_cron,  # (raises on a bad one: not proven, jsonschema says why)
    "timezone": formats.check_timezone,
}

#: Compiled proofs by schema (the schema is kept with its proof, so that its id stays its own).
_PROOFS: dict[int, tuple[Any, Callable[[Any], bool]]] = {}
_COPIES: dict[tuple[tuple[str, int], ...], tuple[Any, Callable[[Any], bool]]] = {}
_PROOFS_MAX = 1024


def _compiled(schema: Any) -> Callable[[Any], bool]:
    """``schema`` as one function (compiled once per schema object, and once for the
    shallow copies of it that ``Manifest.input_schema`` and ``output_schema`` give)."""
    found = _PROOFS.get(id(schema))
    if found is not None and found[0] is schema:
        return found[1]
    parts = tuple((k, id(v)) for k, v in schema.items()) if isinstance(schema, dict) else None
    if parts is not None:
        copied = _COPIES.get(parts)
        if copied is not None and all(copied[0].get(k) is v for k, v in schema.items()):
            return copied[1]
    if schema is True:
        proof: Callable[[Any], bool] = _yes
    elif not isinstance(schema, dict):
        proof = _no
    else:
        checks: list[Callable[[Any], bool]] = []
        for key, rule in schema.items():
            if key in _ANNOTATIONS or key.startswith("x-"):
                continue
            check = _rule(key, rule, schema)
            if check is None:
                checks = [_no]
                break
            checks.append(check)
        if not checks:
            proof = _yes
        elif len(checks) == 1:
            proof = checks[0]
        else:

            def proof(x: Any) -> bool:
                for check in checks:  # noqa: SIM110 - a loop: no generator per value
                    if not check(x):
                        return False
                return True

    if len(_PROOFS) >= _PROOFS_MAX:
        _PROOFS.clear()
        _COPIES.clear()
    _PROOFS[id(schema)] = (schema, proof)
    if parts is not None:
        _COPIES[parts] = (schema, proof)
    return proof


def proves_valid(instance: Any, schema: Any) -> bool:
    """True only if ``instance`` certainly satisfies ``schema``, settled without
    jsonschema for the keywords manifests' inputs use (types, properties, required,
    additionalProperties, enum, const, bounds, lengths, pattern, items, uniqueItems of
    strings, min/maxProperties, the formats of ``_FORMATS``); False means "not proven":
    ask jsonschema, which also words the errors. The schema is compiled once."""
    try:
        return bool(_compiled(schema)(instance))
    except (TypeError, ValueError, RecursionError):
        return False


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
    """``value`` with each decimal string that ``tree`` marks turned into an int or float.
    What holds none is returned as it is, and a dict or list is copied only when
    something in it changes (a page of records is mostly left alone)."""
    if tree is True:
        if isinstance(value, str) and _DECIMAL_TEXT.match(value.strip()):
            return float(value) if "." in value else int(value)
        return value
    if not isinstance(tree, dict):
        return value
    for branch in tree.get("any", ()):
        value = numbers(value, branch)
    props = tree.get("properties")
    if props and isinstance(value, dict):
        changed: dict[str, Any] | None = None
        for k, sub in props.items():
            if k in value:
                v = value[k]
                n = numbers(v, sub)
                if n is not v:
                    if changed is None:
                        changed = {}
                    changed[k] = n
        if changed:
            value = {k: changed.get(k, v) for k, v in value.items()}
    if "items" in tree and isinstance(value, list):
        sub = tree["items"]
        converted = [numbers(v, sub) for v in value]
        if any(n is not v for n, v in zip(converted, value, strict=True)):
            value = converted
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
