"""Webhook subscriptions (their secrets kept apart)."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from connector.sandbox import validate as v
from connector.sandbox.resources.base import Resource, _public
from connector.sandbox.tables import NEWEST


class Webhooks(Resource):
    HOOK_RULES: dict[str, v.Rule] = {
        "url": v.url,
        "events": v.events,
        "secret": v.nullable(v.text(500)),
        "is_active": v.boolean,
    }

    def hook_out(self, h: dict[str, Any]) -> dict[str, Any]:
        out = _public(h)
        out["has_secret"] = bool(self.store.secrets.get(h["key"]))
        return out

    def _save_hook(self, h: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        if "secret" in data:
            secret = data.pop("secret")
            if secret:
                self.store.secrets[h["key"]] = secret
            else:
                self.store.secrets.pop(h["key"], None)
        self.store.update("webhooks", h, data)
        return self.hook_out(h)

    def webhooks_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        self.require_admin(user)
        return self.page(request, self.listing(request, "webhooks", order=NEWEST), self.hook_out)

    def webhooks_create(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        self.require_admin(user)
        data = self.clean(body, self.HOOK_RULES, ("url", "events"), partial=False)
        h = self.store.insert("webhooks", {"url": data["url"], "events": [], "is_active": True})
        return 201, self._save_hook(h, data)

    def webhook_put(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        self.require_admin(user)
        h = self.get("webhooks", key)
        data = self.clean(body, self.HOOK_RULES, ("url", "events"), partial=False)
        data = {"is_active": True, "secret": None, **data}
        return 200, self._save_hook(h, data)

    def webhook_patch(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        self.require_admin(user)
        h = self.get("webhooks", key)
        return 200, self._save_hook(h, self.clean(body, self.HOOK_RULES, (), partial=True))

    def webhook_delete(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        self.require_admin(user)
        self.get("webhooks", key)
        del self.store.table("webhooks")[key]
        self.store.secrets.pop(key, None)
        return 204, None
