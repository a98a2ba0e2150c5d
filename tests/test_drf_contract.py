"""The sandbox against a real Django REST framework server, request by request.

The same request goes to the sandbox and to the DRF app (``tests/drf_app``), both
seeded with the sandbox's demo data; their status codes, the headers DRF decides
and the bodies' shapes (every key, every JSON type, ``null`` included) must agree,
and so must every error message. The sandbox is our stand-in for Willo: where it is
kinder than DRF, the connector is tested against a kinder Willo than the real one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from connector.sandbox import Sandbox
from connector.sandbox.app import Throttle
from connector.sandbox.seed import stable
from tests.conftest import DrfServer

ADA = stable("participant:ada@example.com")
GRACE = stable("participant:grace@example.com")
BACKEND = stable("interview:Backend Engineer")
ENG = stable("department:engineering")
UNKNOWN = "0" * 32


@dataclass
class Check:
    """One request, sent to both servers. ``body`` may be a JSON value or raw bytes."""

    method: str
    path: str
    body: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    auth: str | None = "key"  # "key", None (no header) or a literal header value
    exact: bool = False  # compare bodies exactly (keys and values that are not per-server)
    headers: tuple[str, ...] = ()  # response headers both must send alike


def _shape(value: Any) -> Any:
    """The JSON shape of a body: keys, JSON types, nulls; values left out."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    if value is None:
        return None
    return type(value).__name__


def _text(value: Any, base: str) -> Any:
    """A body with the server's own base URL and keys of new records made comparable."""
    return json.loads(json.dumps(value).replace(base, "BASE"))


def _header(resp: requests.Response, name: str, base: str) -> str | None:
    value = resp.headers.get(name)
    return value.replace(base, "BASE") if value else value


class Target:
    def __init__(self, base_url: str, api_key: str):
        self.base_url, self.api_key = base_url, api_key
        self.origin = base_url.split("/api/")[0]
        self.s = requests.Session()

    def send(self, check: Check) -> requests.Response:
        headers = {}
        if check.auth == "key":
            headers["Authorization"] = self.api_key
        elif check.auth is not None:
            headers["Authorization"] = check.auth
        kwargs: dict[str, Any] = {"params": check.params, "headers": headers, "allow_redirects": False}
        if isinstance(check.body, bytes):
            kwargs["data"] = check.body
            headers["Content-Type"] = "application/json"
        elif check.body is not None:
            kwargs["json"] = check.body
        return self.s.request(check.method, self.base_url + check.path, timeout=30, **kwargs)


CHECKS: dict[str, Check] = {
    # authentication (18.11: DRF's 401 carries WWW-Authenticate)
    "401 without a key": Check("GET", "/participants/", auth=None, exact=True, headers=("WWW-Authenticate",)),
    "401 with a wrong key": Check(
        "GET", "/participants/", auth="nope", exact=True, headers=("WWW-Authenticate",)
    ),
    "Bearer scheme": Check("GET", "/languages/", auth="Bearer KEY"),
    # APPEND_SLASH (18.5): 301, empty body, Location with the slash
    "GET without the slash": Check(
        "GET", "/participants", params={"page": 2}, exact=True, headers=("Location",)
    ),
    "POST without the slash": Check(
        "POST", "/participants", body={"email": "x@example.com"}, exact=True, headers=("Location",)
    ),
    "PATCH without the slash": Check(
        "PATCH", f"/participants/{ADA}", body={"first_name": "A"}, exact=True, headers=("Location",)
    ),
    "DELETE without the slash": Check("DELETE", "/languages", exact=True, headers=("Location",)),
    "OPTIONS without the slash": Check("OPTIONS", "/participants", exact=True, headers=("Location",)),
    "escaped path without the slash": Check(
        "GET", "/participants/%E2%9C%93", exact=True, headers=("Location",)
    ),
    "unknown path": Check("GET", "/nothing/here/", exact=True),
    # 404 and 405 (18.11)
    "404 participant": Check("GET", f"/participants/{UNKNOWN}/", exact=True),
    "404 interview": Check("GET", f"/interviews/{UNKNOWN}/", exact=True),
    "404 department": Check("PATCH", f"/departments/{UNKNOWN}/", body={"name": "x"}, exact=True),
    "404 message template": Check("DELETE", f"/message-templates/{UNKNOWN}/", exact=True),
    "405": Check("DELETE", "/languages/", exact=True),
    "405 webhook GET": Check("GET", f"/webhooks/{UNKNOWN}/", exact=True),
    # every field, null when empty (18.1); decimals as strings (18.8)
    "get interview": Check("GET", f"/interviews/{BACKEND}/"),
    "get participant": Check("GET", f"/participants/{ADA}/"),
    "get scored participant": Check("GET", f"/participants/{stable('participant:alan@example.com')}/"),
    "list participants": Check("GET", "/participants/", params={"ordering": "created_at"}),
    "list interviews": Check("GET", "/interviews/"),
    "list departments": Check("GET", "/departments/"),
    "list message templates": Check("GET", "/message-templates/", params={"type": "invite"}),
    "list users": Check("GET", "/users/", params={"role": "owner"}),
    "list interview templates": Check("GET", "/interview-templates/"),
    "create interview": Check("POST", "/interviews/", body={"title": "SRE", "questions": [{"text": "Why?"}]}),
    "create text-question interview": Check(
        "POST",
        "/interviews/",
        body={"title": "SRE", "questions": [{"text": "Why?", "answer_type": "text", "max_characters": 50}]},
    ),
    "invite": Check("POST", "/participants/", body={"interview": BACKEND, "email": "new@example.com"}),
    "create department": Check("POST", "/departments/", body={"name": "Sales"}),
    # nested field errors (18.3)
    "nested errors": Check(
        "POST",
        "/interviews/",
        body={
            "title": "x",
            "settings": {"deadline": "soon"},
            "questions": [{"text": "ok"}, {"text": "y" * 1001}],
        },
        exact=True,
    ),
    "question without text": Check(
        "POST", "/interviews/", body={"title": "x", "questions": [{"answer_type": "video"}]}, exact=True
    ),
    "questions not a list": Check(
        "POST", "/interviews/", body={"title": "x", "questions": "three"}, exact=True
    ),
    "list field errors": Check(
        "POST",
        "/webhooks/",
        body={"url": "https://h.example.com/", "events": ["new_score", "bogus"]},
        exact=True,
    ),
    "required and blank": Check("POST", "/departments/", body={"name": " "}, exact=True),
    "missing required": Check("POST", "/departments/", body={}, exact=True),
    "not an object": Check("POST", "/departments/", body=b"[1, 2]", exact=True),
    "unknown fields are ignored": Check("POST", "/departments/", body={"name": "Ops", "colour": "red"}),
    # email case (18.4) and Django's email validation (18.11)
    "email filter is exact": Check("GET", "/participants/", params={"email": "ADA@example.com"}),
    "email filter exact match": Check("GET", "/participants/", params={"email": "ada@example.com"}),
    "invite in another case": Check(
        "POST", "/participants/", body={"interview": BACKEND, "email": "ADA@example.com"}
    ),
    "invite the same email": Check(
        "POST", "/participants/", body={"interview": BACKEND, "email": "ada@example.com"}, exact=True
    ),
    "invite a@b.c": Check(
        "POST", "/participants/", body={"interview": BACKEND, "email": "a@b.c"}, exact=True
    ),
    "user with the same email": Check(
        "POST", "/users/", body={"email": "admin@sandbox.example", "role": "admin"}, exact=True
    ),
    "user email in another case": Check(
        "POST", "/users/", body={"email": "ADMIN@sandbox.example", "role": "admin"}
    ),
    # choices are exact (18.6)
    "stage in another case": Check("PATCH", f"/participants/{ADA}/", body={"stage": "hired"}, exact=True),
    "stage exactly": Check("PATCH", f"/participants/{ADA}/", body={"stage": "Hired"}),
    "choice field": Check("POST", "/users/", body={"email": "pat@example.com", "role": "Admin"}, exact=True),
    "stage filter is exact": Check("GET", "/participants/", params={"stage": "shortlisted"}),
    # filters (18.7)
    "unknown key in a filter": Check("GET", "/participants/", params={"interview": UNKNOWN}, exact=True),
    "unknown department filter": Check("GET", "/interviews/", params={"department": UNKNOWN}, exact=True),
    "unknown owner filter": Check("GET", "/interviews/", params={"owner": UNKNOWN}, exact=True),
    "unknown category filter": Check(
        "GET", "/interview-templates/", params={"category": UNKNOWN}, exact=True
    ),
    "bad choice filter": Check("GET", "/users/", params={"role": "boss"}, exact=True),
    "bad status filter": Check("GET", "/participants/", params={"status": "done"}, exact=True),
    "known department filter": Check("GET", "/interviews/", params={"department": ENG}),
    "unknown ordering is ignored": Check("GET", "/interviews/", params={"ordering": "-nonsense"}),
    "unknown filter name is ignored": Check("GET", "/interviews/", params={"colour": "red"}),
    # pagination (18.11: page 2's previous link has no page=)
    "page 2": Check("GET", "/languages/", params={"page_size": 5, "page": 2}, exact=True),
    "page 3": Check("GET", "/languages/", params={"page": 3, "page_size": 5}, exact=True),
    "page out of range": Check("GET", "/languages/", params={"page": 9}, exact=True),
    "page not a number": Check("GET", "/languages/", params={"page": "x"}, exact=True),
    "page_size 0": Check("GET", "/languages/", params={"page_size": 0}, exact=True),
    "page_size not a number": Check("GET", "/languages/", params={"page_size": "x"}, exact=True),
    "page_size over the cap": Check("GET", "/languages/", params={"page_size": 100}, exact=True),
    "bad JSON": Check("POST", "/departments/", body=b"{not json"),
}


@pytest.fixture(scope="module")
def targets(sandbox_server: Sandbox, drf_server: DrfServer) -> dict[str, Target]:
    return {
        "sandbox": Target(sandbox_server.base_url, sandbox_server.api_key),
        "drf": Target(drf_server.base_url, drf_server.api_key),
    }


def _reset(sandbox_server: Sandbox, drf_server: DrfServer) -> None:
    sandbox_server.reset()
    sandbox_server.app.faults.planned.clear()
    drf_server.reset()


def _compare(check: Check, answers: dict[str, tuple[requests.Response, Target]]) -> None:
    seen: dict[str, Any] = {}
    for name, (resp, target) in answers.items():
        ctype = resp.headers.get("Content-Type", "").split(";")[0]
        body: Any = resp.content.decode("utf-8", "replace")
        if ctype == "application/json" and resp.content:
            body = _text(resp.json(), target.base_url)
            body = json.loads(json.dumps(body).replace(target.origin, "ORIGIN"))
        elif ctype == "text/html":
            body = "HTML"  # Django's error pages, not DRF's
        seen[name] = {
            "status": resp.status_code,
            "content_type": ctype if resp.content else None,
            "headers": {h: _header(resp, h, target.origin) for h in check.headers},
            "body": body if check.exact else _shape(body),
        }
    assert seen["sandbox"] == seen["drf"], "\n".join(_diff(seen["sandbox"], seen["drf"]))


def _diff(a: Any, b: Any, at: str = "") -> list[str]:
    """Where the sandbox's answer (a) differs from DRF's (b), one line per JSON pointer."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{at}/{k}: sandbox {a.get(k, '(absent)')!r}, DRF {b.get(k, '(absent)')!r}")
            else:
                out.extend(_diff(a[k], b[k], f"{at}/{k}"))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [line for i, (x, y) in enumerate(zip(a, b, strict=True)) for line in _diff(x, y, f"{at}/{i}")]
    return [] if a == b else [f"{at or '/'}: sandbox {a!r}, DRF {b!r}"]


@pytest.mark.parametrize("name", list(CHECKS))
def test_sandbox_answers_as_drf_does(
    name: str, targets: dict[str, Target], sandbox_server: Sandbox, drf_server: DrfServer
) -> None:
    _reset(sandbox_server, drf_server)
    check = CHECKS[name]
    answers = {}
    for label, target in targets.items():
        if check.auth == "Bearer KEY":
            check = Check(**{**check.__dict__, "auth": f"Bearer {target.api_key}"})
        answers[label] = (target.send(check), target)
        check = CHECKS[name]
    _compare(check, answers)


def _sequence(send: Callable[[], requests.Response], n: int) -> list[tuple[int, str | None]]:
    return [(r.status_code, r.headers.get("Retry-After")) for r in (send() for _ in range(n))]


def test_throttles_count_a_rejected_request_against_every_throttle(
    targets: dict[str, Target], sandbox_server: Sandbox, drf_server: DrfServer, monkeypatch
) -> None:
    """DRF checks every throttle and records the request in each one that allowed it,
    whether or not another refused it (18.9): 4 quick requests at 3/min and 5/hour
    leave 3 in the minute's history and 4 in the hour's."""
    _reset(sandbox_server, drf_server)
    monkeypatch.setattr(sandbox_server.app, "throttle", Throttle(windows=[(3, 60.0), (5, 3600.0)]))
    drf_server.reset(throttle={"burst": "3/min", "sustained": "5/hour"})
    try:
        results = {}
        for label, target in targets.items():
            codes = _sequence(lambda t=target: t.send(Check("GET", "/languages/")), 4)
            results[label] = [code for code, _ in codes], codes[-1][1] is not None
        assert results["sandbox"] == results["drf"] == ([200, 200, 200, 429], True)
        drf_counts = targets["drf"].send(Check("GET", "/_sandbox/throttles")).json()
        assert drf_counts == {"burst": 3, "sustained": 4}
        owner = sandbox_server.store.user_for(sandbox_server.api_key)
        assert owner is not None
        assert sandbox_server.app.throttle.counts(owner["key"]) == [3, 4]
    finally:
        drf_server.reset()


def test_throttled_body_and_retry_after(
    targets: dict[str, Target], sandbox_server: Sandbox, drf_server: DrfServer, monkeypatch
) -> None:
    _reset(sandbox_server, drf_server)
    monkeypatch.setattr(sandbox_server.app, "throttle", Throttle(windows=[(2, 60.0)]))
    drf_server.reset(throttle={"burst": "2/min"})
    try:
        bodies = {}
        for label, target in targets.items():
            resps = [target.send(Check("GET", "/languages/")) for _ in range(3)]
            bodies[label] = (resps[-1].status_code, resps[-1].json()["detail"].split(" Expected")[0])
        assert bodies["sandbox"] == bodies["drf"] == (429, "Request was throttled.")
    finally:
        drf_server.reset()
