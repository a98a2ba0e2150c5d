"""The sandbox's WSGI application: Willo's endpoints over an in-memory :class:`Store`.

Error bodies follow Django REST Framework, as Willo's API does: ``{"detail": ...}``
for 401/403/404/405/429 and ``{"field": ["message"]}`` for 400. What the framework
decides (throttles, pages, filters, redirects) is played in :mod:`.framework`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from connector.sandbox import framework as fw
from connector.sandbox.faults import Dropped, Faults
from connector.sandbox.framework import Throttle
from connector.sandbox.resources.base import ApiError, detail
from connector.sandbox.resources.children import Children
from connector.sandbox.resources.departments import Departments
from connector.sandbox.resources.interviews import Interviews
from connector.sandbox.resources.message_templates import MessageTemplates
from connector.sandbox.resources.participants import Participants
from connector.sandbox.resources.reference import Reference
from connector.sandbox.resources.simulation import Simulation
from connector.sandbox.resources.templates import Templates
from connector.sandbox.resources.users import Users
from connector.sandbox.resources.webhooks import Webhooks
from connector.sandbox.store import Store
from connector.sandbox.webhooks import Deliverer

__all__ = ["API_PREFIX", "Faults", "SandboxApp", "Throttle"]

API_PREFIX = "/api/integrations/v2"
MAX_BODY = 1024 * 1024


class SandboxApp(
    Departments,
    Templates,
    Interviews,
    Simulation,
    Participants,
    MessageTemplates,
    Users,
    Webhooks,
    Children,
    Reference,
):
    """One simulated Willo organisation."""

    def __init__(
        self,
        store: Store,
        *,
        throttle: Throttle | None = None,
        faults: Faults | None = None,
        deliverer: Deliverer | None = None,
        reset: Callable[[], None] | None = None,
    ):
        self.store = store
        self.throttle = throttle or Throttle(0, 0)
        self.faults = faults or Faults()
        self.deliverer = deliverer or Deliverer(store)
        self._reset = reset
        self.requests_served = 0
        self.url_map = Map(_rules(), strict_slashes=True, merge_slashes=False)

    # -------------------------------------------------------------- WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except Dropped:
            _drop(environ)
            response = Response(b"", status=500)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        self.requests_served += 1
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            try:
                endpoint, args = adapter.match()
            except MethodNotAllowed:
                raise detail(405, f'Method "{request.method}" not allowed.') from None
            except (NotFound, RequestRedirect):
                return fw.unrouted(adapter, request)
            except HTTPException as exc:
                raise detail(exc.code or 400, exc.description or "Bad request.") from None
            simulation = endpoint.startswith("sim_")
            user = self.authenticate(request, simulation)
            fault = None if simulation else self._fault_before()
            body = self.body(request)
            with self.store.lock:
                status, payload = getattr(self, endpoint)(request, user, body, **args)
            if fault in ("error_after", "drop_after"):
                if fault == "drop_after":
                    raise Dropped
                raise detail(500, "A server error occurred.")
            return _json(status, payload)
        except ApiError as err:
            return _json(err.status, err.body, err.headers)

    def authenticate(self, request: Request, simulation: bool) -> dict[str, Any]:
        raw = request.headers.get("Authorization", "").strip()
        challenge = {"WWW-Authenticate": fw.AUTH_HEADER}
        if not raw:
            raise detail(401, "Authentication credentials were not provided.", **challenge)
        parts = raw.split()
        key = parts[-1] if len(parts) == 2 and parts[0] in ("Bearer", "Token", "Api-Key") else raw
        user = self.store.user_for(key)
        if user is None:
            raise detail(401, "Invalid API key.", **challenge)
        if not simulation:
            wait = self.throttle.check(user["key"])  # per user, as DRF's UserRateThrottle
            if wait > 0:
                message, retry_after = fw.throttled_detail(wait)
                raise detail(429, message, **{"Retry-After": retry_after})
        return user

    def _fault_before(self) -> str | None:
        if self.faults.latency_ms:
            time.sleep(self.faults.latency_ms / 1000)
        fault = self.faults.next()
        if fault == "drop_before":
            raise Dropped
        if fault == "error_before":
            raise detail(503, "Service temporarily unavailable, try again later.")
        return fault

    def body(self, request: Request) -> dict[str, Any]:
        if request.method not in ("POST", "PUT", "PATCH"):
            return {}
        length = request.content_length
        if length is not None and length > MAX_BODY:
            raise detail(413, f"Request body too large (limit {MAX_BODY} bytes).")
        raw = request.stream.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise detail(413, f"Request body too large (limit {MAX_BODY} bytes).")
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise detail(400, f"JSON parse error - {exc}") from None
        if not isinstance(data, dict):
            kind = type(data).__name__
            raise ApiError(
                400, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]}
            )
        return data


def _rules() -> list[Rule]:
    p = API_PREFIX
    r: list[Rule] = []

    def collection(path: str, name: str, post: bool = True) -> None:
        r.append(Rule(f"{p}{path}", endpoint=f"{name}_list", methods=["GET"]))
        if post:
            r.append(Rule(f"{p}{path}", endpoint=f"{name}_create", methods=["POST"]))

    def item(path: str, name: str, methods: Iterable[str]) -> None:
        for m in methods:
            r.append(Rule(f"{p}{path}<key>/", endpoint=f"{name}_{m.lower()}", methods=[m]))

    crud = ("GET", "PUT", "PATCH", "DELETE")
    collection("/departments/", "departments")
    item("/departments/", "department", crud)
    collection("/interviews/", "interviews")
    item("/interviews/", "interview", crud)
    collection("/participants/", "participants")
    item("/participants/", "participant", crud)
    r.append(Rule(f"{p}/participants/<key>/idv-info/", endpoint="participant_idv_info", methods=["GET"]))
    r.append(Rule(f"{p}/participants/<key>/idv-media/", endpoint="participant_idv_media", methods=["GET"]))
    collection("/message-templates/", "message_templates")
    item("/message-templates/", "message_template", crud)
    collection("/users/", "users")
    item("/users/", "user", ("GET", "PATCH", "DELETE"))
    collection("/webhooks/", "webhooks")
    item("/webhooks/", "webhook", ("PUT", "PATCH", "DELETE"))
    collection("/categories/", "categories", post=False)
    collection("/interview-templates/", "interview_templates", post=False)
    item("/interview-templates/", "interview_template", ("GET",))
    r.append(
        Rule(
            f"{p}/interview-templates/<key>/interviews/", endpoint="interview_template_use", methods=["POST"]
        )
    )
    collection("/children/", "children")
    collection("/languages/", "languages", post=False)
    collection("/idv-counties/", "idv_countries", post=False)
    for action in ("respond", "comment", "score", "stage"):
        r.append(
            Rule(f"{p}/_sandbox/participants/<key>/{action}", endpoint=f"sim_{action}", methods=["POST"])
        )
    r.append(Rule(f"{p}/_sandbox/reset", endpoint="sim_reset", methods=["POST"]))
    r.append(Rule(f"{p}/_sandbox/faults", endpoint="sim_faults", methods=["POST"]))
    r.append(Rule(f"{p}/_sandbox/deliveries", endpoint="sim_deliveries", methods=["GET"]))
    return r


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    if status == 204:
        return Response(status=204, headers=headers)
    return Response(json.dumps(payload), status=status, headers=headers, content_type="application/json")


def _drop(environ: dict[str, Any]) -> None:
    """Close the client's connection without an answer (where the server allows it)."""
    drop = environ.get("sandbox.drop")
    if drop is not None:
        drop()
        return
    import socket

    sock = environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
