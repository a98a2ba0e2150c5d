"""Categories and interview templates (an interview from a template)."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from connector.sandbox.resources.base import _public
from connector.sandbox.resources.interviews import Interviews


def _undated(record: dict[str, Any]) -> dict[str, Any]:
    return _public(record, "created_at")


class Templates(Interviews):
    def categories_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        return self.page(request, self.listing(request, "categories"), _undated)

    def interview_templates_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        items = self.listing(
            request,
            "interview_templates",
            spec={"category": ("category", "categories")},
            search=("title", "description"),
        )
        return self.page(request, items, _undated)

    def interview_template_get(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        return 200, _public(self.get("interview_templates", key), "created_at")

    def interview_template_use(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        tpl = self.get("interview_templates", key)
        rules = {k: self.ITV_RULES[k] for k in ("title", "department", "default_language")}
        data = self.clean(body, rules, (), partial=True)
        self._check_dept(user, data.get("department"))
        data.setdefault("title", tpl["title"])
        data["questions"] = [{k: val for k, val in q.items() if val is not None} for q in tpl["questions"]]
        data["description"] = tpl.get("description")
        return self.interviews_create(request, user, data)
