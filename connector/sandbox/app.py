"""The sandbox's WSGI application: Willo's endpoints over an in-memory :class:`Store`.

Error bodies follow Django REST Framework, as Willo's API does: ``{"detail": ...}``
for 401/403/404/405/429 and ``{"field": ["message"]}`` for 400. What the framework
decides (throttles, pages, filters, redirects) is played in :mod:`.framework`.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from connector.sandbox import framework as fw
from connector.sandbox import validate as v
from connector.sandbox.framework import Throttle
from connector.sandbox.store import DEFAULT_STAGES, Store, new_key, question
from connector.sandbox.webhooks import Deliverer

API_PREFIX = "/api/integrations/v2"
MAX_BODY = 1024 * 1024
FAULTS = ("error_before", "drop_before", "error_after", "drop_after")


QUESTION_DEFAULTS = {"answer_type": "video", "max_retakes": 1, "max_duration": 120, "thinking_time": 30}


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def detail(status: int, message: str, **headers: str) -> ApiError:
    return ApiError(status, {"detail": message}, headers)


class Dropped(Exception):
    """Raised to drop the client's connection without an answer."""


# ------------------------------------------------------------------ faults


@dataclass
class Faults:
    """Injected failures: a random share of API requests, or a queued plan (tests)."""

    rate: float = 0.0
    latency_ms: int = 0
    seed: int | None = None
    planned: deque[str] = field(default_factory=deque)
    injected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULTS, 0))

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def next(self) -> str | None:
        with self._lock:
            if self.planned:
                fault = self.planned.popleft()
            elif self.rate and self._rng.random() < self.rate:
                fault = self._rng.choice(FAULTS)
            else:
                return None
            self.injected[fault] += 1
            return fault


# ------------------------------------------------------------------ the app


class SandboxApp:
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

    # -------------------------------------------------------------- helpers

    def page(self, request: Request, items: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        args = request.args
        size = fw.page_size(args)
        try:
            number = int(args.get("page", 1))
        except ValueError:
            raise detail(404, "Invalid page.") from None
        pages = max(1, math.ceil(len(items) / size))
        if number < 1 or number > pages:
            raise detail(404, "Invalid page.")
        start = (number - 1) * size

        def link(n: int) -> str | None:
            return fw.page_link(request.base_url, args, n) if 1 <= n <= pages else None

        return 200, {
            "count": len(items),
            "next": link(number + 1),
            "previous": link(number - 1),
            "results": items[start : start + size],
        }

    def get(self, table: str, key: str) -> dict[str, Any]:
        record = self.store.table(table).get(key)
        if record is None:
            raise detail(404, fw.not_found(table))
        return record

    def filtered(
        self, request: Request, items: list[dict[str, Any]], spec: dict[str, tuple[str, Any]]
    ) -> list[dict[str, Any]]:
        """django-filter's exact filters: ``{param: (field, table | choices | None)}``.

        A key that names no record of ``table``, or a value not among ``choices``, is a
        400 naming the parameter; values are compared exactly (case included)."""
        errors: dict[str, list[str]] = {}
        for name, (fld, kind) in spec.items():
            value = request.args.get(name)
            if not value:
                continue
            if isinstance(kind, str):
                problem = fw.model_choice(self.store.table(kind), value)
            else:
                problem = fw.choice_filter(kind, value) if kind else None
            if problem:
                errors[name] = [problem]
            items = [i for i in items if i.get(fld) == value]
        if errors:
            raise ApiError(400, errors)
        return items

    def clean(
        self, body: dict[str, Any], rules: dict[str, v.Rule], required: tuple[str, ...], partial: bool
    ) -> dict[str, Any]:
        data, errors = v.check(body, rules, required, partial)
        if errors:
            raise ApiError(400, errors)
        return data

    def ref(self, table: str, key: Any, name: str) -> None:
        if key is not None and key not in self.store.table(table):
            raise ApiError(400, {name: [f'Invalid pk "{key}" - object does not exist.']})

    def fire(self, event: str, participant: dict[str, Any], **extra: Any) -> None:
        interview = self.store.table("interviews")[participant["interview"]]
        data = {
            "participant": self.participant_out(participant),
            "interview": {"key": interview["key"], "title": interview["title"]},
            **extra,
        }
        self.deliverer.publish(event, data)

    # -------------------------------------------------------------- permissions

    @staticmethod
    def privileged(user: dict[str, Any]) -> bool:
        return user["role"] in ("owner", "admin")

    def require_admin(self, user: dict[str, Any]) -> None:
        if not self.privileged(user):
            raise detail(403, "You do not have permission to perform this action.")

    def dept_visible(self, user: dict[str, Any], dept: dict[str, Any]) -> bool:
        return self.privileged(user) or dept["_owner"] == user["key"] or dept.get("is_global", False)

    def interview_visible(self, user: dict[str, Any], itv: dict[str, Any]) -> bool:
        if self.privileged(user) or itv["_owner"] == user["key"]:
            return True
        dept = self.store.table("departments").get(itv.get("department") or "")
        return bool(dept and dept.get("is_global"))

    def check_interview(self, user: dict[str, Any], itv: dict[str, Any]) -> None:
        if not self.interview_visible(user, itv):
            raise detail(403, "You do not have permission to perform this action.")

    # -------------------------------------------------------------- departments

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
        items = [d for d in self.store.table("departments").values() if self.dept_visible(user, d)]
        items = _search(items, request.args.get("search"), ("name", "description"))
        return self.page(request, [self.dept_out(d) for d in _newest(items)])

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
        d.update({"description": None, "is_global": False, "branding": None, **data})
        return 200, self.dept_out(d)

    def department_patch(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        d = self._dept(user, key, write=True)
        d.update(self.clean(body, self.DEPT_RULES, (), partial=True))
        return 200, self.dept_out(d)

    def department_delete(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        self._dept(user, key, write=True)
        del self.store.table("departments")[key]
        for itv in self.store.table("interviews").values():
            if itv.get("department") == key:
                itv["department"] = None
        return 204, None

    # -------------------------------------------------------------- interviews

    ITV_RULES: dict[str, v.Rule] = {
        "title": v.text(255),
        "department": v.nullable(v.matches(v.KEY, "Invalid key.")),
        "description": v.nullable(v.text(10000, allow_blank=True)),
        "default_language": v.language,
        "salary": v.nullable(v.text(200, allow_blank=True)),
        "questions": v.question_list,
        "settings": v.nested(v.SETTINGS_RULES),
        "message_templates": v.nested(v.TEMPLATE_REF_RULES),
    }

    def interview_out(self, itv: dict[str, Any]) -> dict[str, Any]:
        owner = self.store.table("users").get(itv["_owner"]) or {}
        out = _public(itv)
        out["owner"] = {
            "key": itv["_owner"],
            "email": owner.get("email", ""),
            "full_name": owner.get("full_name") or "",
        }
        return out

    def _interview_record(self, data: dict[str, Any], request: Request) -> dict[str, Any]:
        questions = [
            question({**QUESTION_DEFAULTS, **v.known(v.QUESTION_RULES, q), "order": q.get("order", i)})
            for i, q in enumerate(data.get("questions") or [])
        ]
        return {
            "title": data["title"],
            "department": data.get("department"),
            "default_language": data.get("default_language", "en"),
            "description": data.get("description"),
            "salary": data.get("salary"),
            "questions": questions,
            "settings": {
                "show_hints_and_tips": True,
                "show_availability_calendar": False,
                "deadline": None,
                **v.known(v.SETTINGS_RULES, data.get("settings") or {}),
            },
            "message_templates": dict.fromkeys(v.TEMPLATE_REF_RULES)
            | v.known(v.TEMPLATE_REF_RULES, data.get("message_templates") or {}),
            "stages": list(DEFAULT_STAGES),
        }

    def interviews_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        args = request.args
        items = [i for i in self.store.table("interviews").values() if self.interview_visible(user, i)]
        items = self.filtered(
            request, items, {"department": ("department", "departments"), "owner": ("_owner", "users")}
        )
        items = _search(items, args.get("search"), ("title", "description"))
        items = _order(
            items,
            args.get("ordering"),
            {"created_at", "scheduled_at", "title"},
            alias={"scheduled_at": "created_at"},
        )
        return self.page(request, [self.interview_out(i) for i in items])

    def interviews_create(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        data = self.clean(body, self.ITV_RULES, ("title",), partial=False)
        self._check_dept(user, data.get("department"))
        record = self._interview_record(data, request)
        record["_owner"] = user["key"]
        record = self.store.insert("interviews", record)
        record["invite_link"] = f"{request.host_url}invite/{record['key']}"
        return 201, self.interview_out(record)

    def _check_dept(self, user: dict[str, Any], key: str | None) -> None:
        if key is None:
            return
        self.ref("departments", key, "department")
        if not self.dept_visible(user, self.store.table("departments")[key]):
            raise detail(403, "You do not have permission to use this department.")

    def _interview(self, user: dict[str, Any], key: str) -> dict[str, Any]:
        itv = self.get("interviews", key)
        self.check_interview(user, itv)
        return itv

    def interview_get(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        return 200, self.interview_out(self._interview(user, key))

    def interview_put(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        itv = self._interview(user, key)
        data = self.clean(body, self.ITV_RULES, ("title",), partial=False)
        self._check_dept(user, data.get("department"))
        fresh = self._interview_record(data, request)
        fresh["stages"] = itv["stages"]
        itv.update(fresh)
        return 200, self.interview_out(itv)

    def interview_patch(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        itv = self._interview(user, key)
        data = self.clean(body, self.ITV_RULES, (), partial=True)
        self._check_dept(user, data.get("department"))
        if "questions" in data:
            data["questions"] = self._interview_record(
                {"title": itv["title"], "questions": data["questions"]}, request
            )["questions"]
        for name, rules in (("settings", v.SETTINGS_RULES), ("message_templates", v.TEMPLATE_REF_RULES)):
            if name in data:
                data[name] = {**itv[name], **v.known(rules, data[name])}
        itv.update(data)
        return 200, self.interview_out(itv)

    def interview_delete(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        self._interview(user, key)
        del self.store.table("interviews")[key]
        parts = self.store.table("participants")
        for pkey in [k for k, p in parts.items() if p["interview"] == key]:
            del parts[pkey]
        return 204, None

    # -------------------------------------------------------------- participants

    PART_RULES: dict[str, v.Rule] = {
        "email": v.email,
        "first_name": v.nullable(v.text(100, allow_blank=True)),
        "last_name": v.nullable(v.text(100, allow_blank=True)),
        "phone": v.nullable(v.phone),
        "stage": v.text(100),
    }
    INVITE_RULES: dict[str, v.Rule] = {
        "interview": v.matches(v.KEY, "Invalid key."),
        "send_email": v.boolean,
        "send_sms": v.boolean,
        **{k: r for k, r in PART_RULES.items() if k != "stage"},
    }

    def participant_out(self, p: dict[str, Any]) -> dict[str, Any]:
        return {**_public(p), "score": fw.decimal_text(p.get("score"))}  # a DecimalField

    def participants_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        args = request.args
        interviews = self.store.table("interviews")
        items = [
            p
            for p in self.store.table("participants").values()
            if self.interview_visible(user, interviews[p["interview"]])
        ]
        spec = {
            "interview": ("interview", "interviews"),
            "stage": ("stage", None),
            "status": ("status", ("invited", "completed")),
            "email": ("email", None),  # exact, case included, as Django's
        }
        items = self.filtered(request, items, spec)
        items = _search(items, args.get("search"), ("email", "first_name", "last_name"))
        items = _order(items, args.get("ordering"), {"created_at", "completed_at", "updated_at"})
        return self.page(request, [self.participant_out(p) for p in items])

    def participants_create(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        data = self.clean(body, self.INVITE_RULES, ("interview", "email"), partial=False)
        self.ref("interviews", data["interview"], "interview")
        self.check_interview(user, self.store.table("interviews")[data["interview"]])
        if data.get("send_sms") and not data.get("phone"):
            raise ApiError(400, {"phone": ["A phone number is required to send an SMS."]})
        for p in self.store.table("participants").values():
            if p["interview"] == data["interview"] and p["email"] == data["email"]:  # unique_together
                raise ApiError(
                    400, {"non_field_errors": ["The fields interview, email must make a unique set."]}
                )
        now = self.store.clock.now()
        record = self.store.insert(
            "participants",
            {
                "interview": data["interview"],
                "email": data["email"],
                "first_name": data.get("first_name"),
                "last_name": data.get("last_name"),
                "phone": data.get("phone"),
                "stage": DEFAULT_STAGES[0],
                "status": "invited",
                "score": None,
                "created_at": now,
                "updated_at": now,
                "completed_at": None,
                "_comments": [],
            },
        )
        record["invite_link"] = f"{request.host_url}i/{record['key']}"
        return 201, self.participant_out(record)

    def _participant(self, user: dict[str, Any], key: str) -> dict[str, Any]:
        p = self.get("participants", key)
        self.check_interview(user, self.store.table("interviews")[p["interview"]])
        return p

    def _board_stage(self, p: dict[str, Any], stage: str) -> str:
        board = self.store.table("interviews")[p["interview"]]["stages"]
        match = stage if stage in board else None  # exact, as a choice is on DRF
        if match is None:
            raise ApiError(
                400, {"stage": [f'"{stage}" is not a stage of this interview ({", ".join(board)}).']}
            )
        return str(match)

    def _set_stage(self, p: dict[str, Any], stage: str) -> None:
        match = self._board_stage(p, stage)
        before = p["stage"]
        if match != before:
            p["stage"] = match
            p["updated_at"] = self.store.clock.now()
            self.fire("stage_change", p, from_stage=before, to_stage=match)

    def participant_get(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        return 200, self.participant_out(self._participant(user, key))

    def _update_participant(self, p: dict[str, Any], data: dict[str, Any]) -> None:
        stage = data.pop("stage", None)
        if stage is not None:
            self._board_stage(p, stage)  # validate before changing anything
        for name, value in data.items():
            p[name] = value
        p["updated_at"] = self.store.clock.now()
        if stage is not None:
            self._set_stage(p, stage)

    def participant_put(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self._participant(user, key)
        data = self.clean(body, self.PART_RULES, ("email",), partial=False)
        data = {"first_name": None, "last_name": None, "phone": None, **data}
        self._update_participant(p, data)
        return 200, self.participant_out(p)

    def participant_patch(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self._participant(user, key)
        self._update_participant(p, self.clean(body, self.PART_RULES, (), partial=True))
        return 200, self.participant_out(p)

    def participant_delete(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        self._participant(user, key)
        del self.store.table("participants")[key]
        return 204, None

    def participant_idv_info(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self._participant(user, key)
        info = self.store.idv.get(key) or {
            "status": "not_started",
            "document_type": None,
            "country": None,
            "verified_at": None,
        }
        return 200, {"participant": p["key"], **info}

    def participant_idv_media(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self._participant(user, key)
        media = []
        if key in self.store.idv and self.store.idv[key]["status"] == "verified":
            base = f"{request.host_url}media/idv/{key}"
            media = [{"type": t, "url": f"{base}/{t}.jpg"} for t in ("document_front", "selfie")]
        return 200, {"participant": p["key"], "media": media}

    # -------------------------------------------------------------- message templates

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
        items = list(self.store.table("message_templates").values())
        spec = {"type": ("type", ("invite", "reminder", "success")), "channel": ("channel", ("email", "sms"))}
        items = self.filtered(request, items, spec)
        return self.page(request, [_public(t) for t in _newest(items)])

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
        t.update({"subject": None, **data})
        return 200, _public(t)

    def message_template_patch(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        t = self._tpl(user, key, write=True)
        data = self.clean(body, self.TPL_RULES, (), partial=True)
        self._tpl_checked({**t, **data})
        t.update(data)
        return 200, _public(t)

    def message_template_delete(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        self._tpl(user, key, write=True)
        del self.store.table("message_templates")[key]
        return 204, None

    # -------------------------------------------------------------- users

    USER_RULES: dict[str, v.Rule] = {
        "email": v.email,
        "first_name": v.nullable(v.text(100, allow_blank=True)),
        "last_name": v.nullable(v.text(100, allow_blank=True)),
        "role": v.choice("admin", "standard"),
    }

    def users_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        items = self.filtered(
            request,
            list(self.store.table("users").values()),
            {"role": ("role", ("owner", "admin", "standard"))},
        )
        items = _search(items, request.args.get("search"), ("email", "full_name"))
        return self.page(request, [_public(u) for u in _newest(items)])

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
        target.update(data)
        target["full_name"] = f"{target.get('first_name') or ''} {target.get('last_name') or ''}".strip()
        return 200, _public(target)

    def user_delete(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        self._user(user, key, write=True)
        del self.store.table("users")[key]
        for api_key in [k for k, u in self.store.api_keys.items() if u == key]:
            del self.store.api_keys[api_key]
        return 204, None

    # -------------------------------------------------------------- webhooks

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
        h.update(data)
        return self.hook_out(h)

    def webhooks_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        self.require_admin(user)
        return self.page(
            request, [self.hook_out(h) for h in _newest(list(self.store.table("webhooks").values()))]
        )

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

    # -------------------------------------------------------------- templates, children, reference

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

    def children_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        self.require_admin(user)
        return self.page(request, [_public(c) for c in _newest(list(self.store.table("children").values()))])

    def children_create(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        self.require_admin(user)
        data = self.clean(body, {"name": v.text(200)}, ("name",), partial=False)
        record = {"name": data["name"], "parent": self.store.organisation}
        return 201, _public(self.store.insert("children", record))

    def languages_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        from connector.sandbox.seed import LANGUAGES

        return self.page(request, [{"code": c, "name": n} for c, n in LANGUAGES])

    def idv_countries_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        from connector.sandbox.seed import IDV_COUNTRIES

        return self.page(request, [{"code": c, "name": n} for c, n in IDV_COUNTRIES])

    # -------------------------------------------------------------- simulation (Willo's UI)

    def sim_respond(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self.get("participants", key)
        if p["status"] == "completed":
            raise ApiError(400, {"non_field_errors": ["This participant has already responded."]})
        itv = self.store.table("interviews")[p["interview"]]
        answers = body.get("answers") if isinstance(body.get("answers"), list) else []
        responses = []
        for i, q in enumerate(itv["questions"]):
            given = answers[i] if i < len(answers) and isinstance(answers[i], str) else None
            text_answer = q.get("answer_type") == "text"
            responses.append(
                {
                    "question": q["text"],
                    "answer_type": q.get("answer_type", "video"),
                    "text": (given or "My answer.") if text_answer else None,
                    "media_url": None if text_answer else f"{request.host_url}media/responses/{key}/{i}.mp4",
                }
            )
        now = self.store.clock.now()
        p.update(status="completed", completed_at=now, updated_at=now)
        self.store.responses[key] = responses
        if body.get("idv"):
            self.store.idv[key] = {
                "status": "verified",
                "document_type": "passport",
                "country": "GB",
                "verified_at": now,
            }
        if p["stage"] == DEFAULT_STAGES[0] and "Completed" in itv["stages"]:
            p["stage"] = "Completed"
        self.fire("new_response", p, responses=responses)
        return 200, self.participant_out(p)

    def sim_comment(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self.get("participants", key)
        data = self.clean(body, {"text": v.text(5000)}, ("text",), partial=False)
        comment = {"key": new_key(), "text": data["text"], "author": user["email"]}
        p["_comments"].append(comment)
        self.fire("new_comment", p, comment=comment)
        return 201, comment

    def sim_score(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self.get("participants", key)
        score = body.get("score")
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not 0 <= score <= 5:
            raise ApiError(400, {"score": ["A number from 0 to 5 is required."]})
        p["score"] = score
        p["updated_at"] = self.store.clock.now()
        self.fire("new_score", p, score=fw.decimal_text(score), scored_by=user["email"])
        return 200, self.participant_out(p)

    def sim_stage(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self.get("participants", key)
        data = self.clean(body, {"stage": v.text(100)}, ("stage",), partial=False)
        self._set_stage(p, data["stage"])
        return 200, self.participant_out(p)

    def sim_reset(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        if self._reset is None:
            raise detail(404, "Not found.")
        self._reset()
        return 200, {"detail": "Sandbox reset."}

    def sim_faults(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        plan = body.get("next", [])
        if not isinstance(plan, list) or any(f not in FAULTS for f in plan):
            raise ApiError(400, {"next": [f"Expected a list of: {', '.join(FAULTS)}."]})
        self.faults.planned.extend(plan)
        return 200, {"planned": list(self.faults.planned), "injected": self.faults.injected}

    def sim_deliveries(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        return 200, {"results": self.deliverer.log()}


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


def _public(record: dict[str, Any], *drop: str) -> dict[str, Any]:
    """What the API shows of a record: no internal ``_`` fields, nor ``drop``."""
    return {k: val for k, val in record.items() if not k.startswith("_") and k not in drop}


def _newest(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda i: i["created_at"], reverse=True)


def _search(items: list[dict[str, Any]], term: str | None, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    if not term:
        return items
    t = term.casefold()
    return [i for i in items if any(t in str(i.get(f) or "").casefold() for f in fields)]


def _order(
    items: list[dict[str, Any]], ordering: str | None, allowed: set[str], alias: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    if not ordering or ordering.lstrip("-") not in allowed:
        return _newest(items)
    name = ordering.lstrip("-")
    name = (alias or {}).get(name, name)
    present = [i for i in items if i.get(name) is not None]
    absent = [i for i in items if i.get(name) is None]
    present.sort(key=lambda i: (str(i[name]).casefold(), i["created_at"]), reverse=ordering.startswith("-"))
    return present + absent


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    if status == 204:
        return Response(status=204, headers=headers)
    return Response(json.dumps(payload), status=status, headers=headers, content_type="application/json")


def _drop(environ: dict[str, Any]) -> None:
    import socket

    sock = environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
