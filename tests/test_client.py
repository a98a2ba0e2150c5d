"""The Willo client against the sandbox over loopback: auth, safety, retries,
pacing, pagination, typed errors and redaction."""

from __future__ import annotations

import logging

import pytest
import requests

from connector import errors
from connector.http.client import Settings, WilloClient, check_url
from connector.http.pacing import SLACK, Pacer, parse_rate
from connector.workflows.runtime import Connector


def client_for(sandbox, **kw) -> WilloClient:
    settings = Settings.from_env(backoff=0.01, **kw)
    return WilloClient(settings, pacer=Pacer(0, 0))


def test_bare_key_is_the_default_and_schemes_are_a_setting(sandbox, monkeypatch) -> None:
    seen = []
    c = client_for(sandbox)
    req = c.build("GET", "/interviews/")
    seen.append(req["headers"]["Authorization"])
    monkeypatch.setenv("WILLO_AUTH_SCHEME", "Bearer")
    c2 = client_for(sandbox)
    seen.append(c2.build("GET", "/interviews/")["headers"]["Authorization"])
    assert seen == [sandbox.api_key, f"Bearer {sandbox.api_key}"]
    assert c2.request("GET", "/interviews/")["count"] == 2


def test_https_only_except_loopback() -> None:
    check_url("https://api.willotalent.com/api/integrations/v2")
    check_url("http://127.0.0.1:9/x")
    check_url("http://localhost:9/x")
    check_url("http://[::1]:9/x")
    with pytest.raises(errors.ConfigError, match="refusing plain http:// to api.example.com"):
        check_url("http://api.example.com/api")
    with pytest.raises(errors.ConfigError):
        check_url("ftp://example.com/")


def test_missing_key_says_how_to_set_it(monkeypatch) -> None:
    c = WilloClient(Settings.from_env())
    with pytest.raises(errors.ConfigError, match="set WILLO_API_KEY"):
        c.request("GET", "/interviews/")


def test_typed_errors_with_field_errors_and_no_key(sandbox) -> None:
    c = client_for(sandbox)
    with pytest.raises(errors.BadRequest) as bad:
        c.request("POST", "/participants/", json={"email": "nope"})
    assert bad.value.status == 400
    assert bad.value.field_errors == {
        "interview": ["This field is required."],
        "email": ["Enter a valid email address."],
    }
    assert "email: Enter a valid email address." in str(bad.value)
    with pytest.raises(errors.NotFound):
        c.request("GET", "/interviews/" + "0" * 32 + "/")
    with pytest.raises(errors.MethodNotAllowed):
        c.request("PUT", "/users/")
    std = client_for(sandbox, api_key=sandbox.keys["standard"])
    with pytest.raises(errors.Forbidden):
        std.request("GET", "/webhooks/")
    wrong = client_for(sandbox, api_key="sk_wrong_key_123")
    with pytest.raises(errors.Unauthorized) as unauth:
        wrong.request("GET", "/interviews/")
    assert "sk_wrong_key_123" not in str(unauth.value)
    assert "\n" not in str(unauth.value)


def test_get_is_retried_on_5xx_and_dropped_connections(sandbox) -> None:
    sandbox.app.faults.planned.extend(["error_before", "drop_before", "error_after"])
    c = client_for(sandbox)
    assert c.request("GET", "/interviews/")["count"] == 2
    assert c.requests_sent == 4


def test_post_is_not_resent_after_an_ambiguous_failure(sandbox) -> None:
    interview = next(iter(sandbox.store.table("interviews")))
    sandbox.app.faults.planned.append("drop_after")
    c = client_for(sandbox)
    with pytest.raises(errors.AmbiguousRequestError, match="not resent"):
        c.request("POST", "/participants/", json={"interview": interview, "email": "x@example.com"})
    assert c.requests_sent == 1
    landed = [p for p in sandbox.store.table("participants").values() if p["email"] == "x@example.com"]
    assert len(landed) == 1  # it did land; resending would have invited twice


def test_post_5xx_is_not_retried_but_429_is(sandbox) -> None:
    interview = next(iter(sandbox.store.table("interviews")))
    c = client_for(sandbox)
    sandbox.app.faults.planned.append("error_after")
    with pytest.raises(errors.ServerError):
        c.request("POST", "/participants/", json={"interview": interview, "email": "y@example.com"})
    assert c.requests_sent == 1


def test_429_with_retry_after_is_honoured(sandbox, monkeypatch) -> None:
    from connector.sandbox.app import Throttle

    monkeypatch.setattr(sandbox.app, "throttle", Throttle(2, 0))
    import time

    slept = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr("urllib3.util.retry.time.sleep", sleep)
    c = client_for(sandbox)
    for _ in range(3):
        c.request("GET", "/languages/")
    assert c.requests_sent == 4
    assert slept and slept[0] >= 1  # Retry-After: 1


def test_retries_are_bounded(sandbox, monkeypatch) -> None:
    monkeypatch.setenv("WILLO_MAX_RETRIES", "2")
    sandbox.app.faults.planned.extend(["error_before"] * 5)
    c = client_for(sandbox)
    with pytest.raises(errors.ServerError):
        c.request("GET", "/interviews/")
    assert c.requests_sent == 3


def test_network_error_is_one_line(monkeypatch) -> None:
    c = WilloClient(
        Settings(base_url="http://127.0.0.1:9/api", api_key="k", max_retries=1, backoff=0.01),
        pacer=Pacer(0, 0),
    )
    with pytest.raises(errors.NetworkError) as err:
        c.request("GET", "/x/")
    assert "cannot reach Willo" in str(err.value) and "\n" not in str(err.value)


def test_read_timeout_is_retried_for_get_and_reported(sandbox, monkeypatch) -> None:
    monkeypatch.setattr(sandbox.app.faults, "latency_ms", 300)
    c = client_for(sandbox, read_timeout=0.05, max_retries=1)
    with pytest.raises(errors.NetworkError, match="read timed out"):
        c.request("GET", "/interviews/")
    assert c.requests_sent == 2


def test_pagination_follows_next_and_refuses_other_hosts(sandbox) -> None:
    c = client_for(sandbox)
    items = c.paginate("GET", "/languages/", params={"page_size": 5})
    assert len(items) == 12 and c.requests_sent == 3
    with pytest.raises(errors.WilloError, match="refusing to follow https://evil.example"):
        c.request("GET", "https://evil.example/api/integrations/v2/languages/")


def test_all_pages_asks_for_the_largest_page_unless_told(sandbox) -> None:
    for i in range(65):
        sandbox.store.insert("categories", {"name": f"c{i}"})
    conn = Connector(settings=Settings.from_env(backoff=0.01, rate="0"))
    out = conn.call("willo.list_categories", {"all": True}).output
    assert out["count"] == len(out["results"]) == 68 and conn.client.requests_sent == 3  # 30 a page
    conn.client.requests_sent = 0
    assert len(conn.call("willo.list_categories", {"all": True, "page_size": 10}).output["results"]) == 68
    assert conn.client.requests_sent == 7  # the size asked for is kept
    dry = Connector(settings=Settings.from_env(), dry_run=True).call("willo.list_categories", {"all": True})
    assert dry.requests[0]["params"]["page_size"] == 30


def test_page_size_is_capped_at_30(sandbox) -> None:
    for i in range(35):
        sandbox.store.insert("categories", {"name": f"c{i}"})
    page = client_for(sandbox).request("GET", "/categories/", params={"page_size": 100})
    assert len(page["results"]) == 30 and page["next"]


def test_key_never_reaches_logs(sandbox, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox.app.faults.planned.append("error_before")
    c = client_for(sandbox)
    c.request("GET", "/interviews/")
    with pytest.raises(errors.BadRequest):
        c.request("POST", "/departments/", json={})
    assert sandbox.api_key not in caplog.text


def test_dry_run_transport_refuses_to_send(sandbox) -> None:
    c = WilloClient(Settings.from_env(), dry_run=True)
    with pytest.raises(RuntimeError, match="dry run: refusing to send"):
        c.session.get(sandbox.base_url + "/interviews/")
    preview = c.preview("GET", "/interviews/")
    assert preview["headers"]["Authorization"] == "***"


def test_parse_rate() -> None:
    assert parse_rate("10/100") == (10, 100)
    assert parse_rate("0") == (0, 0)
    with pytest.raises(errors.ConfigError):
        parse_rate("fast")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_pacer_keeps_both_windows() -> None:
    clock = FakeClock()
    pacer = Pacer(10, 100, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(250):
        pacer.acquire()
        times.append(clock.now)
    for i in range(len(times) - 10):
        assert times[i + 10] - times[i] >= 1.0
    for i in range(len(times) - 100):
        assert times[i + 100] - times[i] >= 60.0
    # and it is not slower than it must be: 250 requests need just over two minutes
    assert 120.0 <= times[-1] <= 2 * (60 + SLACK) + 5


def test_pacer_is_shared_across_threads() -> None:
    import threading

    clock = FakeClock()
    lock = threading.Lock()
    pacer = Pacer(5, 0, clock=clock, sleep=lambda s: None)
    reserved = []

    def worker() -> None:
        for _ in range(10):
            delay = pacer.reserve()
            with lock:
                reserved.append(clock.now + delay)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reserved.sort()
    assert all(reserved[i + 5] - reserved[i] >= 1.0 for i in range(len(reserved) - 5))


def test_call_validates_inputs_before_sending(conn: Connector, sandbox) -> None:
    before = sandbox.app.requests_served
    with pytest.raises(errors.InputError) as err:
        conn.call(
            "willo.invite_participant", {"interview": "abc", "email": "not-an-email", "phone": "07700900123"}
        )
    text = str(err.value)
    assert '/email: "not-an-email" is not a valid email' in text
    assert '/interview: "abc" does not match' in text
    assert "/phone:" in text
    assert sandbox.app.requests_served == before


def test_requests_session_is_plain_requests(conn: Connector) -> None:
    assert isinstance(conn.client.session, requests.Session)
