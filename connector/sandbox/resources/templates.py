"""Categories and interview templates (an interview from a template)."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from connector.sandbox.resources.base import _public, _search
from connector.sandbox.resources.interviews import Interviews


class Templates(Interviews):
    def categories_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        return self.page(request, [_public(c, "created_at") for c in self.store.table("categories").values()])

    def interview_templates_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        items = list(self.store.table("interview_templates").values())
        items = self.filtered(request, items, {"category": ("category", "categories")})
        items = _search(items, request.args.get("search"), ("title", "description"))
        return self.page(request, [_public(t, "created_at") for t in items])

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
