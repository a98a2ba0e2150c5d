"""Child organisations."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from connector.sandbox import validate as v
from connector.sandbox.resources.base import Resource, _public
from connector.sandbox.tables import NEWEST


class Children(Resource):
    def children_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        self.require_admin(user)
        return self.page(request, self.listing(request, "children", order=NEWEST), _public)

    def children_create(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        self.require_admin(user)
        data = self.clean(body, {"name": v.text(200)}, ("name",), partial=False)
        record = {"name": data["name"], "parent": self.store.organisation}
        return 201, _public(self.store.insert("children", record))
