"""Reference lists: languages and identity-check countries."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from connector.sandbox.resources.base import Resource


class Reference(Resource):
    def languages_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        from connector.sandbox.seed import LANGUAGES

        return self.page(request, [{"code": c, "name": n} for c, n in LANGUAGES])

    def idv_countries_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        from connector.sandbox.seed import IDV_COUNTRIES

        return self.page(request, [{"code": c, "name": n} for c, n in IDV_COUNTRIES])
