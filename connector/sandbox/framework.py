"""What Django and Django REST framework decide, played as they play it.

Willo's API is DRF's; where the framework (not Willo) decides an answer, the sandbox
gives DRF 3.18's answer, never a kinder one (``tests/test_drf_contract.py`` sends the
same requests to a real DRF server): throttles, pages and their links, django-filter's
filters, Django's ``APPEND_SLASH`` redirect and its HTML 404 page.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlencode

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Request, Response

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 30
#: Django's 404 page when DEBUG is off: what a path that no route matches gets.
NOT_FOUND_HTML = (
    b'<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n'
    b"  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n"
)
#: The WWW-Authenticate of a 401 (without one, DRF turns a 401 into a 403).
AUTH_HEADER = "Api-Key"
#: Model names in DRF's 404 details ("No Participant matches the given query.").
MODELS = {
    "departments": "Department",
    "interviews": "Interview",
    "participants": "Participant",
    "message_templates": "MessageTemplate",
    "users": "User",
    "webhooks": "Webhook",
    "interview_templates": "InterviewTemplate",
}


def not_found(table: str) -> str:
    return f"No {MODELS.get(table, 'object')} matches the given query."


class Throttle:
    """DRF's ``SimpleRateThrottle``, one per window, per user.

    As DRF's ``check_throttles`` does, every window is asked and each that allows the
    request records it, whether or not another window refuses it: a refused request
    still counts against the per-minute budget. Times are taken when the request is
    checked (after authentication), not when the client sent it.
    """

    def __init__(
        self,
        per_second: int = 0,
        per_minute: int = 0,
        *,
        windows: list[tuple[int, float]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if windows is None:
            windows = [(n, span) for n, span in ((per_second, 1.0), (per_minute, 60.0)) if n]
        self.windows = windows
        self._logs: dict[str, list[deque[float]]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def check(self, who: str) -> float:
        """0 if allowed, else seconds until it would be (DRF's ``wait()``)."""
        if not self.windows:
            return 0.0
        now = self._clock()
        with self._lock:
            logs = self._logs.setdefault(who, [deque() for _ in self.windows])
            waits = []
            for (limit, span), log in zip(self.windows, logs, strict=True):
                while log and log[0] <= now - span:
                    log.popleft()
                if len(log) >= limit:
                    waits.append(span - (now - log[0]))
                else:
                    log.append(now)
            return max(waits, default=0.0)

    def counts(self, who: str) -> list[int]:
        """How many requests each window holds against ``who`` (tests)."""
        with self._lock:
            return [len(log) for log in self._logs.get(who, [])]


def throttled_detail(wait: float) -> tuple[str, str]:
    """DRF's 429 detail and ``Retry-After`` for a wait in seconds."""
    secs = max(1, math.ceil(wait))
    unit = "second" if secs == 1 else "seconds"
    return f"Request was throttled. Expected available in {secs} {unit}.", str(secs)


def _positive(text: str | None, default: int, cutoff: int | None = None) -> int:
    """DRF's ``_positive_int(strict=True)``, falling back to the default as it does."""
    try:
        value = int(text) if text is not None else default
    except ValueError:
        return default
    if value <= 0:
        return default
    return min(value, cutoff) if cutoff else value


def page_size(args: Mapping[str, str]) -> int:
    return _positive(args.get("page_size"), DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def page_link(base_url: str, args: Mapping[str, str], number: int) -> str:
    """A page link as DRF builds it: the query sorted, page 1 without ``page=``."""
    query = {k: v for k, v in args.items() if k != "page"}
    if number != 1:
        query["page"] = str(number)
    text = urlencode(sorted(query.items()))
    return f"{base_url}?{text}" if text else base_url


def model_choice(table: Mapping[str, Any], value: str | None) -> str | None:
    """django-filter's ModelChoiceFilter: an unknown key is a 400, not an empty page."""
    if value and value not in table:
        return "Select a valid choice. That choice is not one of the available choices."
    return None


def choice_filter(options: tuple[str, ...], value: str | None) -> str | None:
    if value and value not in options:
        return f"Select a valid choice. {value} is not one of the available choices."
    return None


def decimal_text(value: Any, places: int = 1) -> str | None:
    """A DecimalField as DRF sends it: a string (``4`` -> ``"4.0"``)."""
    if value is None:
        return None
    try:
        return str(Decimal(str(value)).quantize(Decimal(1).scaleb(-places)))
    except InvalidOperation:
        return str(value)


def unrouted(adapter: Any, request: Request) -> Response:
    """Django's answers where no route matches: ``APPEND_SLASH``'s 301 (any method,
    empty body) when the path with a slash would match, else its HTML 404 page."""
    if not request.path.endswith("/"):
        try:
            adapter.match(request.path + "/", method=request.method)
            matched = True
        except MethodNotAllowed:
            matched = True
        except (NotFound, RequestRedirect):
            matched = False
        if matched:
            query = request.query_string.decode("latin-1")
            path = quote(request.root_path + request.path + "/", safe="/:@&+$,-_.!~*'()")
            location = path + (f"?{query}" if query else "")
            return Response(b"", 301, {"Location": location}, content_type="text/html; charset=utf-8")
    return Response(NOT_FOUND_HTML, 404, content_type="text/html; charset=utf-8")
