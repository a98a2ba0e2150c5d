"""How each action is exercised for its cassette: setup (not recorded) returns the
inputs of the one recorded call. Setups create what they need through the catalog's
own actions, so the same scenarios record against the sandbox or a real Willo account.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Setup = Callable[[Any], dict[str, Any]]


def _make(conn: Any, action: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return dict(conn.call(action, inputs).output)


def department(conn: Any) -> str:
    return _make(conn, "willo.create_department", {"name": "Cassette department"})["key"]


def interview(conn: Any) -> str:
    return _make(
        conn,
        "willo.create_interview",
        {
            "title": "Cassette interview",
            "questions": [{"text": "Tell us about yourself.", "answer_type": "video"}],
        },
    )["key"]


def participant(conn: Any) -> str:
    return _make(
        conn,
        "willo.invite_participant",
        {
            "interview": interview(conn),
            "email": "cassette.candidate@example.com",
            "first_name": "Casey",
            "last_name": "Candidate",
        },
    )["key"]


def template(conn: Any) -> str:
    return _make(
        conn,
        "willo.create_message_template",
        {
            "name": "Cassette reminder",
            "type": "reminder",
            "channel": "email",
            "subject": "A reminder",
            "body": "Please record your interview.",
        },
    )["key"]


def user(conn: Any) -> str:
    return _make(conn, "willo.invite_user", {"email": "cassette.user@example.com", "role": "standard"})["key"]


def webhook(conn: Any) -> str:
    return _make(
        conn,
        "willo.create_webhook",
        {"url": "https://hooks.example.com/cassette", "events": ["new_response"]},
    )["key"]


def first(conn: Any, action: str) -> str:
    return str(conn.call(action, {"page_size": 1}).output["results"][0]["key"])


PAGE = {"page_size": 5}
DEPT = {"name": "Cassette department", "description": "Recorded for replay tests", "is_global": False}
ITV = {
    "title": "Cassette interview",
    "description": "Recorded for replay tests",
    "default_language": "en",
    "questions": [{"text": "Why this role?", "answer_type": "text", "max_characters": 500}],
}
TPL = {
    "name": "Cassette invite",
    "type": "invite",
    "channel": "sms",
    "body": "Hi, your interview link: {{link}}",
}

SCENARIOS: dict[str, Setup] = {
    "willo.list_departments": lambda c: PAGE,
    "willo.create_department": lambda c: DEPT,
    "willo.get_department": lambda c: {"department": department(c)},
    "willo.replace_department": lambda c: {"department": department(c), **DEPT, "name": "Replaced"},
    "willo.update_department": lambda c: {"department": department(c), "description": "Updated"},
    "willo.delete_department": lambda c: {"department": department(c)},
    "willo.list_interviews": lambda c: {**PAGE, "ordering": "-created_at"},
    "willo.create_interview": lambda c: ITV,
    "willo.get_interview": lambda c: {"interview": interview(c)},
    "willo.replace_interview": lambda c: {"interview": interview(c), **ITV, "title": "Replaced"},
    "willo.update_interview": lambda c: {"interview": interview(c), "salary": "GBP 50,000"},
    "willo.delete_interview": lambda c: {"interview": interview(c)},
    "willo.list_message_templates": lambda c: {**PAGE, "type": "invite"},
    "willo.create_message_template": lambda c: TPL,
    "willo.get_message_template": lambda c: {"message_template": template(c)},
    "willo.replace_message_template": lambda c: {"message_template": template(c), **TPL},
    "willo.update_message_template": lambda c: {"message_template": template(c), "name": "Renamed"},
    "willo.delete_message_template": lambda c: {"message_template": template(c)},
    "willo.list_participants": lambda c: {**PAGE, "status": "completed"},
    "willo.invite_participant": lambda c: {
        "interview": interview(c),
        "email": "ada@example.com",
        "first_name": "Ada",
        "phone": "+447700900123",
    },
    "willo.get_participant": lambda c: {"participant": participant(c)},
    "willo.replace_participant": lambda c: {
        "participant": participant(c),
        "email": "new@example.com",
        "first_name": "New",
    },
    "willo.update_participant": lambda c: {"participant": participant(c), "last_name": "Changed"},
    "willo.delete_participant": lambda c: {"participant": participant(c)},
    "willo.get_participant_idv_info": lambda c: {"participant": participant(c)},
    "willo.get_participant_idv_media": lambda c: {"participant": participant(c)},
    "willo.move_participant_stage": lambda c: {"participant": participant(c), "stage": "shortlisted"},
    "willo.find_or_invite_participant": lambda c: {"interview": interview(c), "email": "grace@example.com"},
    "willo.list_users": lambda c: {**PAGE, "role": "owner"},
    "willo.invite_user": lambda c: {
        "email": "new.colleague@example.com",
        "role": "admin",
        "first_name": "New",
    },
    "willo.get_user": lambda c: {"user": user(c)},
    "willo.update_user": lambda c: {"user": user(c), "role": "admin"},
    "willo.delete_user": lambda c: {"user": user(c)},
    "willo.list_webhooks": lambda c: PAGE,
    "willo.create_webhook": lambda c: {
        "url": "https://hooks.example.com/willo",
        "events": ["new_response", "stage_change"],
    },
    "willo.replace_webhook": lambda c: {
        "webhook": webhook(c),
        "url": "https://hooks.example.com/v2",
        "events": ["new_score"],
    },
    "willo.update_webhook": lambda c: {"webhook": webhook(c), "is_active": False},
    "willo.delete_webhook": lambda c: {"webhook": webhook(c)},
    "willo.list_categories": lambda c: PAGE,
    "willo.list_interview_templates": lambda c: PAGE,
    "willo.get_interview_template": lambda c: {"template": first(c, "willo.list_interview_templates")},
    "willo.create_interview_from_template": lambda c: {
        "template": first(c, "willo.list_interview_templates"),
        "title": "From a template",
    },
    "willo.list_child_organisations": lambda c: PAGE,
    "willo.create_child_organisation": lambda c: {"name": "Cassette Org"},
    "willo.list_languages": lambda c: {"all": True},
    "willo.list_idv_countries": lambda c: PAGE,
}
