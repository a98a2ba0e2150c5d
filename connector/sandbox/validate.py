"""Field validation for sandbox request bodies, answering like Django REST Framework:
``{"field": ["message", ...]}``."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Rule = Callable[[Any], str | None]

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
KEY = re.compile(r"^[0-9a-f]{32}$")
URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$")
COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
LANG = re.compile(r"^[a-z]{2}(-[A-Za-z]{2,4})?$")
ANSWER_TYPES = ("video", "audio", "text", "file")
EVENTS = ("new_response", "stage_change", "new_comment", "new_score")


def text(max_length: int | None = None, allow_blank: bool = False) -> Rule:
    def rule(v: Any) -> str | None:
        if not isinstance(v, str):
            return "Not a valid string."
        if not allow_blank and not v.strip():
            return "This field may not be blank."
        if max_length and len(v) > max_length:
            return f"Ensure this field has no more than {max_length} characters."
        return None

    return rule


def matches(pattern: re.Pattern[str], message: str) -> Rule:
    def rule(v: Any) -> str | None:
        return None if isinstance(v, str) and pattern.match(v) else message

    return rule


def choice(*options: str) -> Rule:
    def rule(v: Any) -> str | None:
        return None if v in options else f'"{v}" is not a valid choice.'

    return rule


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "Must be a valid boolean."


def integer(minimum: int = 0) -> Rule:
    def rule(v: Any) -> str | None:
        if not isinstance(v, int) or isinstance(v, bool):
            return "A valid integer is required."
        return None if v >= minimum else f"Ensure this value is greater than or equal to {minimum}."

    return rule


def nullable(inner: Rule) -> Rule:
    def rule(v: Any) -> str | None:
        return None if v is None else inner(v)

    return rule


email = matches(EMAIL, "Enter a valid email address.")
phone = matches(E164, "Enter a valid phone number in E.164 format, e.g. +447700900123.")
url = matches(URL, "Enter a valid URL.")
language = matches(LANG, "Enter a valid language code.")


def events(v: Any) -> str | None:
    if not isinstance(v, list) or not v:
        return "Expected a non-empty list of events."
    bad = [e for e in v if e not in EVENTS]
    return f'"{bad[0]}" is not a valid choice.' if bad else None


def question_list(v: Any) -> str | None:
    if not isinstance(v, list):
        return f'Expected a list of items but got type "{type(v).__name__}".'
    for i, q in enumerate(v):
        if not isinstance(q, dict):
            return f"Item {i}: expected an object."
        if not isinstance(q.get("text"), str) or not q["text"].strip():
            return f"Item {i}: text: This field is required."
        if "answer_type" in q and q["answer_type"] not in ANSWER_TYPES:
            return f'Item {i}: answer_type: "{q["answer_type"]}" is not a valid choice.'
        for name in ("order", "max_retakes", "max_duration", "thinking_time", "max_characters"):
            if name in q and integer(0)(q[name]):
                return f"Item {i}: {name}: A valid integer is required."
    return None


def mapping(*allowed: str) -> Rule:
    def rule(v: Any) -> str | None:
        if not isinstance(v, dict):
            return "Expected an object."
        extra = sorted(set(v) - set(allowed))
        return f"Unknown field {extra[0]}." if extra else None

    return rule


def check(
    body: dict[str, Any], rules: dict[str, Rule], required: tuple[str, ...], partial: bool
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The known fields of ``body`` and the field errors, DRF style."""
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    if not partial:
        for name in required:
            if name not in body or body[name] is None:
                errors[name] = ["This field is required."]
    for name, rule in rules.items():
        if name in body and name not in errors:
            problem = rule(body[name])
            if problem:
                errors[name] = [problem]
            else:
                clean[name] = body[name]
    return clean, errors
