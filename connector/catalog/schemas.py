"""JSON Schema (draft 2020-12, format checking on) and error formatting."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from connector.catalog import formats
from connector.yamlio import pointer

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


def check_schema(schema: Any) -> list[tuple[str, str]]:
    """Problems with ``schema`` itself, as ``(pointer, message)`` pairs."""
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    return [(pointer(e.absolute_path), e.message) for e in meta.iter_errors(schema)]


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
    for err in v.iter_errors(instance):
        for leaf in _leaf_errors(err):
            found.append((pointer(leaf.absolute_path), _message(leaf)))
    found.sort(key=lambda pair: pair[0])
    return found


def _message(err: ValidationError) -> str:
    if err.validator == "additionalProperties":
        return err.message.replace("Additional properties are not allowed", "unknown field")
    if err.validator == "required":
        return err.message
    if err.validator == "format":
        why = f": {err.cause}" if isinstance(err.cause, formats.FormatProblem) else ""
        return f"{_short(err.instance)} is not a valid {err.validator_value}{why}"
    if err.validator == "pattern":
        return f"{_short(err.instance)} does not match {err.validator_value}"
    return err.message.replace("\n", " ")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
