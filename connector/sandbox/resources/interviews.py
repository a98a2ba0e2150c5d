"""Interviews and their questions, settings and boards."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from connector.sandbox import validate as v
from connector.sandbox.resources.base import Resource, _public, detail, ordering
from connector.sandbox.store import DEFAULT_STAGES, question

ORDERING = {"created_at", "scheduled_at", "title"}
QUESTION_DEFAULTS = {"answer_type": "video", "max_retakes": 1, "max_duration": 120, "thinking_time": 30}


class Interviews(Resource):
    ITV_RULES: dict[str, v.Rule] = {
        "title": v.text(255),
        "department": v.nullable(v.matches(v.KEY, "Invalid key.")),
        "description": v.nullable(v.text(10000, allow_blank=True)),
        "default_language": v.language,
        "salary": v.nullable(v.text(200, allow_blank=True)),
        "questions": v.question_list,
        "settings": v.nested(v.SETTINGS_RULES),
        "message_templates": v.nested(v.TEMPLATE_REF_RULES),
    }

    def interview_out(self, itv: dict[str, Any]) -> dict[str, Any]:
        owner = self.store.table("users").get(itv["_owner"]) or {}
        out = _public(itv)
        out["owner"] = {
            "key": itv["_owner"],
            "email": owner.get("email", ""),
            "full_name": owner.get("full_name") or "",
        }
        return out

    def _interview_record(self, data: dict[str, Any], request: Request) -> dict[str, Any]:
        questions = [
            question({**QUESTION_DEFAULTS, **v.known(v.QUESTION_RULES, q), "order": q.get("order", i)})
            for i, q in enumerate(data.get("questions") or [])
        ]
        return {
            "title": data["title"],
            "department": data.get("department"),
            "default_language": data.get("default_language", "en"),
            "description": data.get("description"),
            "salary": data.get("salary"),
            "questions": questions,
            "settings": v.SETTINGS_DEFAULTS | v.known(v.SETTINGS_RULES, data.get("settings") or {}),
            "message_templates": dict.fromkeys(v.TEMPLATE_REF_RULES)
            | v.known(v.TEMPLATE_REF_RULES, data.get("message_templates") or {}),
            "stages": list(DEFAULT_STAGES),
        }

    def interviews_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        args = request.args
        items = self.listing(
            request,
            "interviews",
            spec={"department": ("department", "departments"), "owner": ("_owner", "users")},
            search=("title", "description"),
            order=ordering(args.get("ordering"), ORDERING, alias={"scheduled_at": "created_at"}),
            visible=None if self.privileged(user) else lambda i: self.interview_visible(user, i),
            viewer=user["key"],
        )
        return self.page(request, items, self.interview_out)

    def interviews_create(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        data = self.clean(body, self.ITV_RULES, ("title",), partial=False)
        self._check_dept(user, data.get("department"))
        record = self._interview_record(data, request)
        record["_owner"] = user["key"]
        record = self.store.insert("interviews", record)
        self.store.update("interviews", record, {"invite_link": f"{request.host_url}invite/{record['key']}"})
        return 201, self.interview_out(record)

    def _check_dept(self, user: dict[str, Any], key: str | None) -> None:
        if key is None:
            return
        self.ref("departments", key, "department")
        if not self.dept_visible(user, self.store.table("departments")[key]):
            raise detail(403, "You do not have permission to use this department.")

    def _interview(self, user: dict[str, Any], key: str) -> dict[str, Any]:
        itv = self.get("interviews", key)
        self.check_interview(user, itv)
        return itv

    def interview_get(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        return 200, self.interview_out(self._interview(user, key))

    def interview_put(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        itv = self._interview(user, key)
        data = self.clean(body, self.ITV_RULES, ("title",), partial=False)
        self._check_dept(user, data.get("department"))
        fresh = self._interview_record(data, request)
        fresh["stages"] = itv["stages"]
        self.store.update("interviews", itv, fresh)
        return 200, self.interview_out(itv)

    def interview_patch(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        itv = self._interview(user, key)
        data = self.clean(body, self.ITV_RULES, (), partial=True)
        self._check_dept(user, data.get("department"))
        if "questions" in data:
            data["questions"] = self._interview_record(
                {"title": itv["title"], "questions": data["questions"]}, request
            )["questions"]
        for name, rules in (("settings", v.SETTINGS_RULES), ("message_templates", v.TEMPLATE_REF_RULES)):
            if name in data:
                data[name] = {**itv[name], **v.known(rules, data[name])}
        self.store.update("interviews", itv, data)
        return 200, self.interview_out(itv)

    def interview_delete(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        self._interview(user, key)
        del self.store.table("interviews")[key]
        parts = self.store.table("participants")
        for pkey in list(parts.bucket({"interview": key})):
            del parts[pkey]
        return 204, None
