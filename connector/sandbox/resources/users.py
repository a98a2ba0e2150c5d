"""The organisation's users and their roles."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from connector.sandbox import validate as v
from connector.sandbox.resources.base import ApiError, Resource, _public, detail
from connector.sandbox.tables import NEWEST


class Users(Resource):
    USER_RULES: dict[str, v.Rule] = {
        "email": v.email,
        "first_name": v.nullable(v.text(100, allow_blank=True)),
        "last_name": v.nullable(v.text(100, allow_blank=True)),
        "role": v.choice("admin", "standard"),
    }

    def users_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        items = self.listing(
            request,
            "users",
            spec={"role": ("role", ("owner", "admin", "standard"))},
            search=("email", "full_name"),
            order=NEWEST,
        )
        return self.page(request, items, _public)

    def users_create(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        self.require_admin(user)
        data = self.clean(body, self.USER_RULES, ("email", "role"), partial=False)
        if any(u["email"] == data["email"] for u in self.store.table("users").values()):  # unique, exactly
            raise ApiError(400, {"email": ["user with this email already exists."]})
        record, _ = self.store.add_user(
            data["email"],
            data["role"],
            data.get("first_name") or "",
            data.get("last_name") or "",
            status="invited",
        )
        return 201, _public(record)

    def _user(self, user: dict[str, Any], key: str, write: bool) -> dict[str, Any]:
        target = self.get("users", key)
        if write:
            self.require_admin(user)
            if target["role"] == "owner":
                raise detail(403, "The account owner cannot be changed through the API.")
        return target

    def user_get(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        return 200, _public(self._user(user, key, write=False))

    def user_patch(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        target = self._user(user, key, write=True)
        data = self.clean(body, {k: r for k, r in self.USER_RULES.items() if k != "email"}, (), partial=True)
        merged = {**target, **data}
        full_name = f"{merged.get('first_name') or ''} {merged.get('last_name') or ''}".strip()
        self.store.update("users", target, {**data, "full_name": full_name})
        return 200, _public(target)

    def user_delete(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        self._user(user, key, write=True)
        del self.store.table("users")[key]
        for api_key in [k for k, u in self.store.api_keys.items() if u == key]:
            del self.store.api_keys[api_key]
        return 204, None
