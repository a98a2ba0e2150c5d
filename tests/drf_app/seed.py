"""The sandbox's own seed data, copied into the DRF app's database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from connector.sandbox import seed as seeds
from connector.sandbox.store import Store
from tests.drf_app import models as m

API_KEY = {"key": ""}  # the owner's key, set once at start


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _questions(owner: dict[str, Any], questions: list[dict[str, Any]]) -> None:
    fields = {f.name for f in m.Question._meta.fields} - {"key", "interview", "template"}
    for q in questions:
        m.Question.objects.create(**owner, **{k: q.get(k) for k in fields})


@transaction.atomic
def reset(which: str, host: str) -> None:
    for model in (
        m.Participant,
        m.Question,
        m.Interview,
        m.Department,
        m.MessageTemplate,
        m.Webhook,
        m.InterviewTemplate,
        m.Category,
        m.Child,
        m.ApiKey,
        m.User,
    ):
        model.objects.all().delete()
    store = Store()
    if which == "demo":
        seeds.demo(store, API_KEY["key"], host)
    else:
        seeds.base(store, API_KEY["key"])
    t = store.tables
    for u in t["users"].values():
        m.User.objects.create(
            **{k: u[k] for k in ("key", "email", "first_name", "last_name", "role", "status")}
        )
    for api_key, user in store.api_keys.items():
        m.ApiKey.objects.create(key=api_key, user_id=user)
    for c in t["categories"].values():
        m.Category.objects.create(key=c["key"], name=c["name"])
    for tpl in t["interview_templates"].values():
        row = m.InterviewTemplate.objects.create(
            key=tpl["key"], title=tpl["title"], category_id=tpl["category"], description=tpl["description"]
        )
        _questions({"template": row}, tpl["questions"])
    for tpl in t["message_templates"].values():
        fields = ("key", "name", "type", "channel", "subject", "body", "is_default")
        m.MessageTemplate.objects.create(owner_id=tpl["_owner"], **{k: tpl[k] for k in fields})
    for d in t["departments"].values():
        fields = ("key", "name", "description", "is_global", "branding")
        m.Department.objects.create(owner_id=d["_owner"], **{k: d[k] for k in fields})
    for i in t["interviews"].values():
        fields = (
            "key",
            "title",
            "default_language",
            "description",
            "salary",
            "settings",
            "message_templates",
            "stages",
        )
        row = m.Interview.objects.create(
            owner_id=i["_owner"], department_id=i["department"], **{k: i[k] for k in fields}
        )
        _questions({"interview": row}, i["questions"])
    for p in t["participants"].values():
        fields = ("key", "email", "first_name", "last_name", "phone", "stage", "status", "score")
        m.Participant.objects.create(
            interview_id=p["interview"], completed_at=_when(p["completed_at"]), **{k: p[k] for k in fields}
        )
    for c in t["children"].values():
        m.Child.objects.create(key=c["key"], name=c["name"], parent=c["parent"])
