"""Departments: list, create, get, replace, update, delete."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from connector.sandbox import validate as v
from connector.sandbox.resources.base import Resource, _public, detail
from connector.sandbox.tables import NEWEST


class Departments(Resource):
    DEPT_RULES: dict[str, v.Rule] = {
        "name": v.text(200),
        "description": v.nullable(v.text(5000, allow_blank=True)),
        "is_global": v.boolean,
        "branding": v.nullable(
            v.nested(
                {
                    "logo_url": v.nullable(v.url),
                    "primary_colour": v.nullable(
                        v.matches(v.COLOUR, "This value does not match the required pattern.")
                    ),
                }
            )
        ),
    }

    def dept_out(self, d: dict[str, Any]) -> dict[str, Any]:
        return _public(d)

    def departments_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        items = self.listing(
            request,
            "departments",
            search=("name", "description"),
            order=NEWEST,
            visible=None if self.privileged(user) else lambda d: self.dept_visible(user, d),
            viewer=user["key"],
        )
        return self.page(request, items, self.dept_out)

    def departments_create(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        data = self.clean(body, self.DEPT_RULES, ("name",), partial=False)
        if data.get("is_global"):
            self.require_admin(user)
        record = {"description": None, "is_global": False, "branding": None, **data, "_owner": user["key"]}
        return 201, self.dept_out(self.store.insert("departments", record))

    def _dept(self, user: dict[str, Any], key: str, write: bool) -> dict[str, Any]:
        d = self.get("departments", key)
        allowed = self.privileged(user) or d["_owner"] == user["key"]
        if not allowed and not (d.get("is_global") and not write):
            raise detail(403, "You do not have permission to perform this action.")
        return d

    def department_get(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        return 200, self.dept_out(self._dept(user, key, write=False))

    def department_put(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        d = self._dept(user, key, write=True)
        data = self.clean(body, self.DEPT_RULES, ("name",), partial=False)
        self.store.update(
            "departments", d, {"description": None, "is_global": False, "branding": None, **data}
        )
        return 200, self.dept_out(d)

    def department_patch(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        d = self._dept(user, key, write=True)
        self.store.update("departments", d, self.clean(body, self.DEPT_RULES, (), partial=True))
        return 200, self.dept_out(d)

    def department_delete(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        self._dept(user, key, write=True)
        del self.store.table("departments")[key]
        for itv in list(self.store.table("interviews").bucket({"department": key}).values()):
            self.store.update("interviews", itv, {"department": None})
        return 204, None
