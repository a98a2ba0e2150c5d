"""JSON Schema (draft 2020-12, format checking on) and error formatting."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from connector.yamlio import pointer

FORMAT_CHECKER = Draft202012Validator.FORMAT_CHECKER


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
    try:
        key = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError):  # not JSON (YAML dates...): the meta-schema says why
        return list(_check_schema(schema))
    return list(_checked(key))


@functools.lru_cache(maxsize=4096)
def _checked(key: str) -> tuple[tuple[str, str], ...]:
    """Checking against the meta-schema is the dearest part of loading a catalog; the
    same schemas come back each time a process builds one (tests, embedding)."""
    return _check_schema(json.loads(key))


def _check_schema(schema: Any) -> tuple[tuple[str, str], ...]:
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    return tuple((pointer(e.absolute_path), e.message) for e in meta.iter_errors(schema))


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
        return f"{_short(err.instance)} is not a valid {err.validator_value}"
    if err.validator == "pattern":
        return f"{_short(err.instance)} does not match {err.validator_value}"
    return err.message.replace("\n", " ")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
