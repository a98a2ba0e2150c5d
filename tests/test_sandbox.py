"""Contract tests of the sandbox over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from connector.sandbox import Sandbox
from connector.sandbox.app import Throttle
from connector.sandbox.seed import stable

KEY = "f" * 32


class Api:
    def __init__(self, box: Sandbox, key: str | None = None):
        self.base = box.base_url
        self.s = requests.Session()
        self.s.headers["Authorization"] = key or box.api_key

    def __getattr__(self, method: str):
        def go(path: str, **kw):
            return self.s.request(method.upper(), self.base + path, **kw)

        return go


@pytest.fixture
def api(sandbox: Sandbox) -> Api:
    return Api(sandbox)


@pytest.mark.parametrize(
    "collection,body,field,value",
    [
        ("/departments/", {"name": "Sales", "is_global": False}, "name", "Sales EMEA"),
        ("/interviews/", {"title": "SRE", "questions": [{"text": "Why SRE?"}]}, "title", "Senior SRE"),
        (
            "/message-templates/",
            {"name": "Nudge", "type": "reminder", "channel": "sms", "body": "Hi {{first_name}}"},
            "name",
            "Gentle nudge",
        ),
    ],
)
def test_crud(api: Api, collection: str, body: dict, field: str, value: str) -> None:
    created = api.post(collection, json=body)
    assert created.status_code == 201, created.text
    item = created.json()
    assert len(item["key"]) == 32 and int(item["key"], 16) >= 0
    url = f"{collection}{item['key']}/"
    assert api.get(url).json() == item
    patched = api.patch(url, json={field: value})
    assert patched.status_code == 200 and patched.json()[field] == value
    replaced = api.put(url, json=body)
    assert replaced.status_code == 200 and replaced.json()[field] == body[field]
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404


def test_participants_lifecycle(api: Api) -> None:
    interview = stable("interview:Backend Engineer")
    p = api.post(
        "/participants/",
        json={
            "interview": interview,
            "email": "new@example.com",
            "first_name": "New",
            "phone": "+447700900123",
        },
    )
    assert p.status_code == 201
    key = p.json()["key"]
    assert p.json()["stage"] == "Invited" and p.json()["status"] == "invited"
    dup = api.post("/participants/", json={"interview": interview, "email": "new@example.com"})
    assert dup.status_code == 400 and "non_field_errors" in dup.json()
    other_case = api.post("/participants/", json={"interview": interview, "email": "NEW@example.com"})
    assert other_case.status_code == 201  # Django's unique constraint is case-sensitive
    assert api.patch(f"/participants/{key}/", json={"stage": "shortlisted"}).status_code == 400
    moved = api.patch(f"/participants/{key}/", json={"stage": "Shortlisted"})
    assert moved.json()["stage"] == "Shortlisted"
    bad = api.patch(f"/participants/{key}/", json={"stage": "Nowhere", "first_name": "X"})
    assert bad.status_code == 400 and api.get(f"/participants/{key}/").json()["first_name"] == "New"
    assert api.get(f"/participants/{key}/idv-info/").json()["status"] == "not_started"
    api.post(f"/_sandbox/participants/{key}/respond", json={"idv": True})
    assert api.get(f"/participants/{key}/idv-info/").json()["status"] == "verified"
    assert len(api.get(f"/participants/{key}/idv-media/").json()["media"]) == 2
    assert api.put(f"/participants/{key}/", json={"email": "n@example.com"}).json()["phone"] is None
    assert api.delete(f"/participants/{key}/").status_code == 204


def test_users_and_webhooks_and_children(api: Api) -> None:
    u = api.post("/users/", json={"email": "pat@example.com", "role": "admin"})
    assert u.status_code == 201 and u.json()["status"] == "invited"
    assert api.patch(f"/users/{u.json()['key']}/", json={"role": "standard"}).json()["role"] == "standard"
    assert api.delete(f"/users/{u.json()['key']}/").status_code == 204
    h = api.post(
        "/webhooks/", json={"url": "http://127.0.0.1:9/h", "events": ["new_score"], "secret": "s" * 20}
    )
    assert h.status_code == 201 and h.json()["has_secret"] and "secret" not in h.json()
    assert (
        api.put(
            f"/webhooks/{h.json()['key']}/", json={"url": "http://127.0.0.1:9/h2", "events": ["new_comment"]}
        ).json()["has_secret"]
        is False
    )
    assert api.delete(f"/webhooks/{h.json()['key']}/").status_code == 204
    c = api.post("/children/", json={"name": "Acme Asia"})
    assert c.status_code == 201 and api.get("/children/").json()["count"] == 2


def test_templates_and_reference_data(api: Api) -> None:
    cats = api.get("/categories/").json()
    assert cats["count"] == 3
    tpls = api.get("/interview-templates/", params={"category": stable("category:eng")}).json()
    assert [t["title"] for t in tpls["results"]] == ["Graduate software engineer"]
    tpl = stable("template:graduate")
    assert len(api.get(f"/interview-templates/{tpl}/").json()["questions"]) == 4
    made = api.post(f"/interview-templates/{tpl}/interviews/", json={"title": "Grad 2027"})
    assert made.status_code == 201 and len(made.json()["questions"]) == 4
    assert api.get("/languages/").json()["count"] == 12
    assert api.get("/idv-counties/").json()["results"][0] == {"code": "GB", "name": "United Kingdom"}


def test_pagination(api: Api) -> None:
    first = api.get("/languages/", params={"page_size": 5}).json()
    assert (first["count"], len(first["results"]), first["previous"]) == (12, 5, None)
    second = requests.get(first["next"], headers=api.s.headers).json()
    assert second["previous"] and len(second["results"]) == 5
    last = api.get("/languages/", params={"page_size": 5, "page": 3}).json()
    assert last["next"] is None and len(last["results"]) == 2
    assert api.get("/languages/", params={"page": 9}).status_code == 404


def test_interview_filters(api: Api, sandbox: Sandbox) -> None:
    eng = stable("department:engineering")
    assert [i["title"] for i in api.get("/interviews/", params={"department": eng}).json()["results"]] == [
        "Backend Engineer"
    ]
    assert api.get("/interviews/", params={"search": "warehouse"}).json()["count"] == 1
    titles = [i["title"] for i in api.get("/interviews/", params={"ordering": "title"}).json()["results"]]
    assert titles == sorted(titles)
    owner = stable("user:owner")
    assert api.get("/interviews/", params={"owner": owner}).json()["count"] == 2
    assert api.get("/interviews/", params={"owner": stable("user:standard")}).json()["count"] == 0


def test_participant_filters(api: Api) -> None:
    assert api.get("/participants/", params={"status": "completed"}).json()["count"] == 4
    assert api.get("/participants/", params={"stage": "Shortlisted"}).json()["count"] == 1
    assert api.get("/participants/", params={"stage": "shortlisted"}).json()["count"] == 0  # exact
    assert api.get("/participants/", params={"email": "ada@example.com"}).json()["count"] == 1
    assert api.get("/participants/", params={"email": "ADA@example.com"}).json()["count"] == 0


def test_auth_forms_and_401(sandbox: Sandbox) -> None:
    url = sandbox.base_url + "/languages/"
    for header in (sandbox.api_key, f"Bearer {sandbox.api_key}", f"Token {sandbox.api_key}"):
        assert requests.get(url, headers={"Authorization": header}).status_code == 200
    r = requests.get(url)
    assert r.status_code == 401 and r.json() == {"detail": "Authentication credentials were not provided."}
    assert requests.get(url, headers={"Authorization": "nope"}).status_code == 401


def test_standard_role_sees_own_and_global_only(sandbox: Sandbox) -> None:
    std = Api(sandbox, sandbox.keys["standard"])
    titles = {i["title"] for i in std.get("/interviews/").json()["results"]}
    assert titles == {"Warehouse Supervisor"}  # in the global Operations department
    backend = stable("interview:Backend Engineer")
    assert std.get(f"/interviews/{backend}/").status_code == 403
    assert std.post("/participants/", json={"interview": backend, "email": "a@b.co"}).status_code == 403
    warehouse = stable("interview:Warehouse Supervisor")
    assert std.get(f"/interviews/{warehouse}/").status_code == 200
    own = std.post("/interviews/", json={"title": "Mine", "department": stable("department:sams-team")})
    assert own.status_code == 201
    assert std.post("/users/", json={"email": "x@y.co", "role": "admin"}).status_code == 403
    admin = Api(sandbox, sandbox.keys["admin"])
    assert admin.get(f"/interviews/{backend}/").status_code == 200


def test_400_field_errors(api: Api) -> None:
    r = api.post(
        "/participants/",
        json={"interview": stable("interview:Backend Engineer"), "email": "bad", "phone": "07700900123"},
    )
    assert r.status_code == 400
    assert set(r.json()) == {"email", "phone"}
    r = api.post("/interviews/", json={"questions": [{"answer_type": "video"}]})
    assert set(r.json()) == {"title", "questions"}
    r = api.post("/message-templates/", json={"name": "x", "type": "success", "channel": "sms", "body": "b"})
    assert r.json() == {"channel": ["Success messages are sent by email only."]}


def test_404_405_and_bad_bodies_get_json(api: Api, sandbox: Sandbox) -> None:
    unrouted = api.get("/nothing/here/")  # Django's own 404 page, not DRF's
    assert unrouted.status_code == 404 and unrouted.headers["Content-Type"].startswith("text/html")
    r = api.delete("/languages/")
    assert r.status_code == 405 and r.json()["detail"] == 'Method "DELETE" not allowed.'
    r = api.post("/departments/", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"].startswith("JSON parse error")
    r = api.post("/departments/", data=b"[1, 2]")
    assert r.status_code == 400
    r = api.post("/departments/", data=b"x" * (1024 * 1024 + 10))
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    r = api.post("/departments/", data="\udcff".encode("utf-8", "surrogatepass"))
    assert r.status_code == 400
    assert api.get("/interviews/../../etc/passwd").status_code == 404


def test_throttling_answers_429_with_retry_after(api: Api, sandbox: Sandbox, monkeypatch) -> None:
    monkeypatch.setattr(sandbox.app, "throttle", Throttle(3, 100))
    codes = [api.get("/languages/") for _ in range(5)]
    assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
    assert codes[3].headers["Retry-After"] == "1"
    other = Api(sandbox, sandbox.keys["admin"])  # per key
    assert other.get("/languages/").status_code == 200


def test_faults_before_and_after_effect(api: Api, sandbox: Sandbox) -> None:
    sandbox.app.faults.planned.extend(["error_before", "error_after", "drop_before", "drop_after"])
    body = {"name": "Faulty"}
    assert api.post("/departments/", json=body).status_code == 503
    assert api.post("/departments/", json=body).status_code == 500
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            api.post("/departments/", json=body)
    names = [d["name"] for d in sandbox.store.table("departments").values()]
    assert names.count("Faulty") == 2  # the two "after" faults took effect


def test_random_fail_rate_is_reproducible() -> None:
    from connector.sandbox.app import Faults

    a, b = Faults(rate=0.5, seed=7), Faults(rate=0.5, seed=7)
    assert [a.next() for _ in range(50)] == [b.next() for _ in range(50)]
    assert sum(1 for f in (a.next() for _ in range(1000)) if f) in range(400, 600)


class Receiver:
    """A loopback webhook target that fails its first ``fail`` deliveries."""

    def __init__(self, fail: int = 0):
        self.deliveries: list[tuple[dict, bytes]] = []
        self.fail = fail
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.deliveries.append((dict(self.headers), body))
                code = 500 if len(outer.deliveries) <= outer.fail else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def wait(self, n: int, timeout: float = 30.0) -> None:
        """Until ``n`` deliveries arrived (returns at once when they have; the bound is
        generous for a loaded machine)."""
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < n and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()


def settled_deliveries(api: Api, timeout: float = 30.0) -> list[dict]:
    """The sandbox's delivery log once its last delivery is no longer pending: the
    receiver has a delivery before the sandbox has read the answer and logged it."""
    deadline = time.monotonic() + timeout
    while True:
        log = api.get("/_sandbox/deliveries").json()["results"]
        if (log and log[-1]["status"] != "pending") or time.monotonic() > deadline:
            return log
        time.sleep(0.02)


@pytest.mark.parametrize(
    "event,sim,body,extra",
    [
        ("new_response", "respond", {}, "responses"),
        ("new_comment", "comment", {"text": "Great answer"}, "comment"),
        ("new_score", "score", {"score": 4}, "score"),
        ("stage_change", "stage", {"stage": "Hired"}, "to_stage"),
    ],
)
def test_webhooks_signed_delivery_for_each_event(
    api: Api, event: str, sim: str, body: dict, extra: str
) -> None:
    rx = Receiver()
    try:
        secret = "a-shared-secret-value"
        api.post("/webhooks/", json={"url": rx.url, "events": [event], "secret": secret})
        ada = stable("participant:ada@example.com")
        assert api.post(f"/_sandbox/participants/{ada}/{sim}", json=body).status_code in (200, 201)
        rx.wait(1)
        headers, raw = rx.deliveries[0]
        payload = json.loads(raw)
        assert payload["event"] == event and extra in payload["data"]
        assert payload["data"]["participant"]["key"] == ada
        assert headers["X-Willo-Event"] == event and headers["X-Willo-Delivery"] == payload["id"]
        mac = hmac.new(secret.encode(), headers["X-Willo-Timestamp"].encode() + b"." + raw, hashlib.sha256)
        assert headers["X-Willo-Signature"] == "sha256=" + mac.hexdigest()
    finally:
        rx.close()


def test_webhook_retries_with_backoff_and_same_delivery_id(api: Api, sandbox: Sandbox) -> None:
    rx = Receiver(fail=2)
    try:
        api.post("/webhooks/", json={"url": rx.url, "events": ["new_score"]})
        api.post(f"/_sandbox/participants/{stable('participant:ada@example.com')}/score", json={"score": 3})
        rx.wait(3)
        assert len(rx.deliveries) == 3
        ids = {h["X-Willo-Delivery"] for h, _ in rx.deliveries}
        assert len(ids) == 1
        assert [h["X-Willo-Attempt"] for h, _ in rx.deliveries] == ["1", "2", "3"]
        assert "X-Willo-Signature" not in rx.deliveries[0][0]
        log = settled_deliveries(api)
        assert log[-1]["status"] == "delivered" and log[-1]["attempts"] == 3
    finally:
        rx.close()


def test_api_stage_change_fires_webhook_and_reset_restores(api: Api, sandbox: Sandbox) -> None:
    rx = Receiver()
    try:
        api.post("/webhooks/", json={"url": rx.url, "events": ["stage_change"]})
        grace = stable("participant:grace@example.com")
        api.patch(f"/participants/{grace}/", json={"stage": "Reviewed"})
        rx.wait(1)
        data = json.loads(rx.deliveries[0][1])["data"]
        assert (data["from_stage"], data["to_stage"]) == ("Completed", "Reviewed")
        assert api.post("/_sandbox/reset").status_code == 200
        assert api.get(f"/participants/{grace}/").json()["stage"] == "Completed"
        assert api.get("/webhooks/").json()["count"] == 0
    finally:
        rx.close()


def test_non_loopback_webhook_targets_are_not_contacted(api: Api, sandbox: Sandbox) -> None:
    api.post("/webhooks/", json={"url": "https://hooks.example.com/x", "events": ["new_score"]})
    api.post(f"/_sandbox/participants/{stable('participant:ada@example.com')}/score", json={"score": 3})
    log = settled_deliveries(api)
    assert log[-1]["status"] == "refused"


def test_cli_sandbox_prints_url_and_key_and_stops_on_sigterm() -> None:
    import signal
    import subprocess

    from tests.conftest import script, script_env

    proc = subprocess.Popen(
        [*script(), "sandbox", "--port", "0", "--api-key", "sk_cli_test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(),
    )
    try:
        url_line = proc.stdout.readline().strip()
        key_line = proc.stdout.readline().strip()
        assert url_line.startswith("WILLO_BASE_URL=http://127.0.0.1:")
        assert url_line.endswith("/api/integrations/v2")
        assert key_line == "WILLO_API_KEY=sk_cli_test"
        base = url_line.split("=", 1)[1]
        assert requests.get(base + "/languages/", headers={"Authorization": "sk_cli_test"}).ok
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "sandbox stopped" in err and "Traceback" not in err


def test_stats_over_http_count_api_answers_by_status_and_reset_clears_them(
    api: Api, sandbox: Sandbox
) -> None:
    """`GET {base}/_sandbox/stats` (DESIGN §9): API requests by status since the last
    reset, a dropped connection as `dropped`; `_sandbox/` requests are not counted."""
    assert api.get("/_sandbox/stats").json() == {"requests": 0, "by_status": {}}
    assert api.get("/departments/").status_code == 200
    assert api.get("/interviews/").status_code == 200
    assert api.get("/interviews/" + "0" * 32 + "/").status_code == 404
    assert Api(sandbox, key="sk_wrong").get("/departments/").status_code == 401
    assert api.post("/_sandbox/faults", json={"next": ["drop_after"]}).status_code == 200
    with pytest.raises(requests.ConnectionError):
        api.post("/departments/", json={"name": "Dropped", "is_global": False})
    stats = api.get("/_sandbox/stats").json()
    assert stats == {"requests": 5, "by_status": {"200": 2, "401": 1, "404": 1, "dropped": 1}}
    assert api.post("/_sandbox/reset").status_code == 200
    assert api.get("/_sandbox/stats").json() == {"requests": 0, "by_status": {}}


def test_timestamps_are_drfs_with_and_without_a_fraction(api: Api) -> None:
    """DRF writes a DateTimeField as ISO 8601 with `Z`, leaving out a zero fraction: the
    seed data (stamped in whole seconds, an hour back) reads `...:16Z`, what clients make
    `...:16.123456Z`, and every new record sorts after every seeded one."""
    import re
    from datetime import datetime

    seeded = [p["created_at"] for p in api.get("/participants/").json()["results"]]
    assert seeded and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t) for t in seeded), seeded
    made = api.post("/departments/", json={"name": "Stamped", "is_global": False}).json()["created_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", made), made
    parse = datetime.fromisoformat
    assert all(parse(made) > parse(t) for t in seeded)
