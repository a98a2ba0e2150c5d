"""Message templates (invitation, reminder, success; email or SMS)."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from connector.sandbox import validate as v
from connector.sandbox.resources.base import ApiError, Resource, _public, detail
from connector.sandbox.tables import NEWEST


class MessageTemplates(Resource):
    TPL_RULES: dict[str, v.Rule] = {
        "name": v.text(200),
        "type": v.choice("invite", "reminder", "success"),
        "channel": v.choice("email", "sms"),
        "subject": v.nullable(v.text(255, allow_blank=True)),
        "body": v.text(5000),
    }

    def _tpl_checked(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("type") == "success" and data.get("channel") == "sms":
            raise ApiError(400, {"channel": ["Success messages are sent by email only."]})
        return data

    def message_templates_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        spec = {"type": ("type", ("invite", "reminder", "success")), "channel": ("channel", ("email", "sms"))}
        return self.page(
            request, self.listing(request, "message_templates", spec=spec, order=NEWEST), _public
        )

    def message_templates_create(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        data = self._tpl_checked(
            self.clean(body, self.TPL_RULES, ("name", "type", "channel", "body"), partial=False)
        )
        record = {"subject": None, "is_default": False, **data, "_owner": user["key"]}
        return 201, _public(self.store.insert("message_templates", record))

    def _tpl(self, user: dict[str, Any], key: str, write: bool) -> dict[str, Any]:
        t = self.get("message_templates", key)
        if write and not self.privileged(user) and t.get("_owner") != user["key"]:
            raise detail(403, "You do not have permission to perform this action.")
        if write and t.get("is_default"):
            raise detail(403, "System default templates cannot be changed.")
        return t

    def message_template_get(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        return 200, _public(self._tpl(user, key, write=False))

    def message_template_put(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        t = self._tpl(user, key, write=True)
        data = self._tpl_checked(
            self.clean(body, self.TPL_RULES, ("name", "type", "channel", "body"), partial=False)
        )
        self.store.update("message_templates", t, {"subject": None, **data})
        return 200, _public(t)

    def message_template_patch(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        t = self._tpl(user, key, write=True)
        data = self.clean(body, self.TPL_RULES, (), partial=True)
        self._tpl_checked({**t, **data})
        self.store.update("message_templates", t, data)
        return 200, _public(t)

    def message_template_delete(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        self._tpl(user, key, write=True)
        del self.store.table("message_templates")[key]
        return 204, None
