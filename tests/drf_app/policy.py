"""Authentication, pagination and throttles: stock DRF classes, configured as Willo's
appear to be. (Apart from the views: DRF's settings import these while the views import DRF.)"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.pagination import PageNumberPagination
from rest_framework.throttling import UserRateThrottle

from tests.drf_app import models as m

#: Throttle rates by scope (``None``: off); set at start and by ``_sandbox/reset``.
RATES: dict[str, str | None] = {"burst": None, "sustained": None}


class ApiKeyAuthentication(BaseAuthentication):
    """The key in ``Authorization``, bare (the client's default) or after a scheme."""

    def authenticate(self, request: Any) -> tuple[m.User, str] | None:
        raw = request.META.get("HTTP_AUTHORIZATION", "").strip()
        if not raw:
            return None
        parts = raw.split()
        key = parts[-1] if len(parts) == 2 and parts[0] in ("Bearer", "Token", "Api-Key") else raw
        found = m.ApiKey.objects.select_related("user").filter(key=key).first()
        if found is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        return found.user, key

    def authenticate_header(self, request: Any) -> str:
        return "Api-Key"  # without one DRF answers 403, not 401, to a request with no key


class BurstThrottle(UserRateThrottle):
    scope = "burst"

    def get_rate(self) -> str | None:
        return RATES[self.scope]


class SustainedThrottle(BurstThrottle):
    scope = "sustained"


class Pagination(PageNumberPagination):
    page_size = 10
    page_size_query_param = "page_size"
    max_page_size = 30
