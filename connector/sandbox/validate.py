"""Field validation for sandbox request bodies, answering as Django REST Framework 3.18
does: ``{"field": ["message", ...]}``, nested serializers as ``{"settings": {"deadline":
[...]}}``, lists of serializers and ListFields as ``{"questions": {"1": {"text": [...]}}}``.

A rule returns None (valid), a message, or a dict of nested errors (used as it is).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

Rule = Callable[[Any], Any]

# Django's EmailValidator (5.2): its user, domain and literal parts, IDN letters included
_UL = "\u00a1-\uffff"
EMAIL_USER = re.compile(
    r"(^[-!#$%&'*+/=?^_`{}|~0-9A-Z]+(\.[-!#$%&'*+/=?^_`{}|~0-9A-Z]+)*\Z"
    r'|^"([\001-\010\013\014\016-\037!#-\[\]-\177]|\\[\001-\011\013\014\016-\177])*"\Z)',
    re.IGNORECASE,
)
EMAIL_DOMAIN = re.compile(
    rf"^[a-z{_UL}0-9](?:[a-z{_UL}0-9-]{{0,61}}[a-z{_UL}0-9])?"
    rf"(?:\.(?!-)[a-z{_UL}0-9-]{{1,63}}(?<!-))*"
    rf"\.(?!-)(?:[a-z{_UL}-]{{2,63}}|xn--[a-z0-9]{{1,59}})(?<!-)\Z",
    re.IGNORECASE,
)
EMAIL_LITERAL = re.compile(r"\[([A-F0-9:.]+)\]\Z", re.IGNORECASE)
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
KEY = re.compile(r"^[0-9a-f]{32}$")
URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$")
COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
LANG = re.compile(r"^[a-z]{2}(-[A-Za-z]{2,4})?$")
ANSWER_TYPES = ("video", "audio", "text", "file")
EVENTS = ("new_response", "stage_change", "new_comment", "new_score")
DATETIME_FORMAT = "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]"


def _type(value: Any) -> str:
    return type(value).__name__


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
    """Exact, as DRF's ChoiceField: ``"hired"`` is not ``"Hired"``."""

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
    def rule(v: Any) -> Any:
        return None if v is None else inner(v)

    return rule


def is_email(value: str) -> bool:
    """Django's ``validate_email``: ``a@b.c`` is refused (a one-letter top-level domain)."""
    if not value or "@" not in value or len(value) > 320:
        return False
    user, domain = value.rsplit("@", 1)
    if not EMAIL_USER.match(user):
        return False
    return domain == "localhost" or bool(EMAIL_DOMAIN.match(domain) or EMAIL_LITERAL.match(domain))


def email(v: Any) -> str | None:
    if not isinstance(v, str):
        return "Not a valid string."
    return None if is_email(v.strip()) else "Enter a valid email address."


def datetime_iso(v: Any) -> str | None:
    try:
        datetime.fromisoformat(v)
    except (TypeError, ValueError):
        return f"Datetime has wrong format. Use one of these formats instead: {DATETIME_FORMAT}."
    return None


phone = matches(E164, "Enter a valid phone number in E.164 format, e.g. +447700900123.")
url = matches(URL, "Enter a valid URL.")
language = matches(LANG, "Enter a valid language code.")


def _not_a_dict(v: Any) -> dict[str, list[str]]:
    return {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {_type(v)}."]}


def nested(rules: dict[str, Rule]) -> Rule:
    """A nested serializer: its own field errors under its name; unknown keys ignored."""

    def rule(v: Any) -> Any:
        if not isinstance(v, dict):
            return _not_a_dict(v)
        _, errors = check(v, rules, (), partial=True)
        return errors or None

    return rule


def known(rules: dict[str, Rule], value: dict[str, Any]) -> dict[str, Any]:
    """The fields of a valid nested object that its serializer knows (the rest is dropped)."""
    return {k: v for k, v in value.items() if k in rules}


def list_of(item: Rule, allow_empty: bool = True) -> Rule:
    """A ListField: item errors keyed by index, as ``{"1": [...]}``."""

    def rule(v: Any) -> Any:
        if not isinstance(v, list):
            return f'Expected a list of items but got type "{_type(v)}".'
        if not v and not allow_empty:
            return "This list may not be empty."
        errors = {str(i): [problem] for i, x in enumerate(v) if (problem := item(x))}
        return errors or None

    return rule


def many(rules: dict[str, Rule], required: tuple[str, ...]) -> Rule:
    """A serializer with ``many=True``: each item's errors keyed by its index."""

    def rule(v: Any) -> Any:
        if not isinstance(v, list):
            return {"non_field_errors": [f'Expected a list of items but got type "{_type(v)}".']}
        errors: dict[str, Any] = {}
        for i, x in enumerate(v):
            if not isinstance(x, dict):
                errors[str(i)] = _not_a_dict(x)
                continue
            _, problems = check(x, rules, required, partial=False)
            if problems:
                errors[str(i)] = problems
        return errors or None

    return rule


QUESTION_RULES: dict[str, Rule] = {
    "text": text(1000),
    "order": nullable(integer(0)),
    "answer_type": choice(*ANSWER_TYPES),
    "max_retakes": nullable(integer(0)),
    "max_duration": nullable(integer(0)),
    "thinking_time": nullable(integer(0)),
    "max_characters": nullable(integer(0)),
}
SETTINGS_RULES: dict[str, Rule] = {
    "show_hints_and_tips": boolean,
    "show_availability_calendar": boolean,
    "deadline": nullable(datetime_iso),
}
#: an interview's settings where the request gives none
SETTINGS_DEFAULTS: dict[str, Any] = {
    "show_hints_and_tips": True,
    "show_availability_calendar": False,
    "deadline": None,
}
TEMPLATE_REF_RULES: dict[str, Rule] = dict.fromkeys(
    ("invitation_email", "invitation_sms", "reminder_email", "reminder_sms", "interview_completed_email"),
    nullable(text(allow_blank=True)),
)
question_list = many(QUESTION_RULES, ("text",))
events = list_of(choice(*EVENTS), allow_empty=False)


def check(
    body: dict[str, Any], rules: dict[str, Rule], required: tuple[str, ...], partial: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The known fields of ``body`` and the field errors, DRF style."""
    errors: dict[str, Any] = {}
    clean: dict[str, Any] = {}
    if not partial:
        for name in required:
            if name not in body:
                errors[name] = ["This field is required."]
            elif body[name] is None:
                errors[name] = ["This field may not be null."]
    for name, rule in rules.items():
        if name in body and name not in errors:
            problem = rule(body[name])
            if isinstance(problem, dict):
                errors[name] = problem
            elif problem:
                errors[name] = [problem]
            else:
                clean[name] = body[name]
    return clean, errors
