"""Fidelity to Django REST framework (issue 18): what DRF decides, and how the connector
copes with it. Each test names its item; ``target`` runs a test against the sandbox and
against the real DRF app (``tests/drf_app``) alike."""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from connector.catalog.index import get_catalog
from connector.catalog.options import list_options
from connector.catalog.schemas import validator
from connector.cli import main
from connector.errors import BadRequest, InputError, MethodNotAllowed, NotFound, RateLimited, Unauthorized
from connector.http.client import Settings, WilloClient, parse_error_body
from connector.http.pacing import Pacer
from connector.sandbox.framework import Throttle
from connector.sandbox.seed import stable
from connector.state.store import StateStore
from connector.triggers.polling import Poller
from connector.workflows.runtime import Connector
from tests.conftest import EXAMPLES, ROOT

BACKEND = stable("interview:Backend Engineer")
ADA = stable("participant:ada@example.com")


@pytest.fixture(params=["sandbox", "drf"])
def target(request: pytest.FixtureRequest) -> Any:
    """The sandbox or the DRF app, reset to demo data, the environment pointing at it."""
    return request.getfixturevalue(request.param)


def connector(schema_mode: str = "warn") -> Connector:
    return Connector(settings=Settings.from_env(backoff=0.01), schema_mode=schema_mode)


# ---------------------------------------------------------------------- 18.1 nulls


def _optional_fields(schema: Any, at: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(schema, dict):
        return
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key, []):
            yield from _optional_fields(branch, at)
    required = set(schema.get("required", []))
    for name, prop in (schema.get("properties") or {}).items():
        if name not in required:
            yield f"{at}/{name}", prop
        yield from _optional_fields(prop, f"{at}/{name}")
    if isinstance(schema.get("items"), dict):
        yield from _optional_fields(schema["items"], f"{at}/*")


def test_every_optional_output_field_accepts_null() -> None:
    """18.1: DRF sends every field, null when empty."""
    refusing = [
        f"{m.id}: {ptr}"
        for m in get_catalog().manifests.values()
        if m.id.startswith("willo.")  # http.request and schedule.cron do not answer as DRF does
        for ptr, prop in _optional_fields(m.output_schema, "")
        if not validator(prop).is_valid(None)
    ]
    assert refusing == []


HEADLINE = [
    ("willo.create_interview", {"title": "SRE", "questions": [{"text": "Why?", "answer_type": "text"}]}),
    ("willo.get_interview", {"interview": BACKEND}),
    ("willo.list_interviews", {"all": True}),
    ("willo.move_participant_stage", {"participant": ADA, "stage": "shortlisted"}),
]


@pytest.mark.parametrize(("action", "inputs"), HEADLINE, ids=[a for a, _ in HEADLINE])
def test_strict_mode_passes_the_headline_actions(target: Any, action: str, inputs: dict[str, Any]) -> None:
    """18.1: strict output checking against what a DRF server sends."""
    assert connector("strict").call(action, inputs).output


@pytest.mark.parametrize("example", ["screening", "review_on_response"])
def test_shipped_examples_run_without_drift(sandbox: Any, example: str, caplog) -> None:
    caplog.set_level(logging.WARNING)
    args = ["run", str(EXAMPLES / f"{example}.yaml"), "--json"]
    if example == "review_on_response":
        args += ["--event", str(EXAMPLES / "events/new_response.json")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "succeeded"
    assert "drift" not in r.stderr and not [x for x in caplog.records if "drift" in x.getMessage()]


def test_screening_runs_on_drf_without_drift(drf: Any) -> None:
    r = CliRunner().invoke(main, ["run", str(EXAMPLES / "screening.yaml"), "--json"])
    assert r.exit_code == 0, r.stderr
    assert "drift" not in r.stderr
    steps = {s["id"]: s for s in json.loads(r.stdout)["steps"]}
    assert steps["shortlist"]["output"]["stage"] == "Shortlisted"


# ---------------------------------------------------------------------- 18.3 nested field errors


def _response(status: int, body: Any) -> requests.Response:
    resp = requests.Response()
    resp.status_code, resp.reason = status, "Bad Request"
    resp._content = json.dumps(body).encode()
    resp.headers["Content-Type"] = "application/json"
    return resp


SHAPES = [
    ({"email": ["Enter a valid email address."]}, "email: Enter a valid email address."),
    (
        {"settings": {"deadline": ["Datetime has wrong format."]}},
        "settings/deadline: Datetime has wrong format.",
    ),
    ({"questions": {"1": {"text": ["Too long."]}}}, "questions/1/text: Too long."),
    ({"questions": [{}, {"text": ["Too long."]}]}, "questions/1/text: Too long."),
    ({"events": {"1": ['"x" is not a valid choice.']}}, 'events/1: "x" is not a valid choice.'),
    ({"questions": {"non_field_errors": ["Expected a list."]}}, "questions: Expected a list."),
    (
        {"email": [{"message": "Enter a valid email address.", "code": "invalid"}]},
        "email: Enter a valid email address.",
    ),
    ([{}, {"text": ["Too long."]}], "1/text: Too long."),
]


@pytest.mark.parametrize(("body", "line"), SHAPES, ids=[str(i) for i in range(len(SHAPES))])
def test_every_drf_error_shape_renders_as_pointers(body: Any, line: str) -> None:
    message, fields = parse_error_body(_response(400, body))
    err = BadRequest(message, status=400, method="POST", url="https://x/interviews/", field_errors=fields)
    assert str(err) == f"POST https://x/interviews/: 400 invalid request ({line})"
    assert all(isinstance(m, list) and all(isinstance(x, str) for x in m) for m in fields.values())


def test_non_field_errors_and_a_list_body_are_the_message() -> None:
    body = {"non_field_errors": ["The fields interview, email must make a unique set."]}
    assert parse_error_body(_response(400, body)) == (
        "The fields interview, email must make a unique set.",
        {},
    )
    assert parse_error_body(_response(400, ["One.", "Two."])) == ("One. Two.", {})


def _raw(status: int, text: str) -> requests.Response:
    resp = requests.Response()
    resp.status_code, resp.reason, resp._content = status, "Bad Request", text.encode()
    return resp


def test_hostile_error_bodies_stay_one_bounded_line() -> None:
    assert parse_error_body(_raw(400, "[" * 5000 + "]" * 5000)) == ("Bad Request", {})
    message, fields = parse_error_body(_raw(400, '{"a":' * 500 + '["x"]' + "}" * 500))
    ((pointer, (text,)),) = fields.items()
    assert pointer.count("/") == 16 and text.startswith('{"a": {"a"') and len(text) <= 200
    many = json.dumps({f"f{i}": ["bad"] for i in range(5000)})
    message, fields = parse_error_body(_raw(400, many))
    line = str(BadRequest(message, status=400, field_errors=fields))
    assert len(fields) == 5000 and line.endswith("f9: bad; and 4990 more)") and "\n" not in line


def test_nested_errors_from_the_server_name_their_pointers(target: Any) -> None:
    client = WilloClient(Settings.from_env(backoff=0.01))
    body = {
        "title": "x",
        "settings": {"deadline": "soon"},
        "questions": [{"text": "ok"}, {"text": "y" * 1001}],
    }
    with pytest.raises(BadRequest) as err:
        client.request("POST", "/interviews/", json=body)
    assert err.value.field_errors == {
        "settings/deadline": [
            "Datetime has wrong format. Use one of these formats instead: "
            "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
        ],
        "questions/1/text": ["Ensure this field has no more than 1000 characters."],
    }
    long_question = json.dumps({"title": "x", "questions": [{"text": "ok"}, {"text": "y" * 1001}]})
    r = CliRunner().invoke(main, ["call", "willo.create_interview", "--input-json", long_question])
    assert r.exit_code == 1
    assert r.stderr.strip().endswith(
        "400 invalid request (questions/1/text: Ensure this field has no more than 1000 characters.)"
    )
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


# ---------------------------------------------------------------------- 18.4 email case


def test_find_or_invite_finds_an_email_in_any_case(target: Any) -> None:
    conn = connector("strict")
    first = conn.call("willo.invite_participant", {"interview": BACKEND, "email": "case@example.com"}).output
    # Django compares emails exactly: the server takes the same address in capitals as another
    second = conn.call("willo.invite_participant", {"interview": BACKEND, "email": "CASE@EXAMPLE.COM"}).output
    assert second["key"] != first["key"]
    found = conn.call("willo.find_or_invite_participant", {"interview": BACKEND, "email": "Case@Example.com"})
    assert found.output["created"] is False
    assert found.output["participant"]["key"] == first["key"]  # the oldest, none matching exactly
    exact = conn.call("willo.find_or_invite_participant", {"interview": BACKEND, "email": "CASE@EXAMPLE.COM"})
    assert exact.output["participant"]["key"] == second["key"]  # an exact match wins
    everyone = conn.call("willo.list_participants", {"interview": BACKEND, "all": True}).output["results"]
    assert sorted(p["email"] for p in everyone if p["email"].casefold() == "case@example.com") == [
        "CASE@EXAMPLE.COM",
        "case@example.com",
    ]


# ---------------------------------------------------------------------- 18.5 trailing slashes


def test_validate_flags_a_request_path_without_its_slash(tmp_path) -> None:
    text = (ROOT / "manifests/actions/get_interview.yaml").read_text()
    bad = tmp_path / "get_interview.yaml"
    bad.write_text(
        text.replace("id: willo.get_interview", "id: acme.get_interview").replace(
            "path: /interviews/{{ input.interview }}/", "path: /interviews/{{ input.interview }}"
        )
    )
    r = CliRunner().invoke(main, ["validate", str(bad)])
    assert r.exit_code == 1
    assert "/request/path: '/interviews/{{ input.interview }}' does not end with '/'" in r.output
    assert "301" in r.output


def test_every_shipped_request_path_ends_with_a_slash() -> None:
    paths = [m.request["path"] for m in get_catalog().of_kind("action") if m.request]
    assert paths and all(p.endswith("/") for p in paths)


# ---------------------------------------------------------------------- 18.6 exact choices


def test_a_stage_is_exact_and_the_error_names_the_board(target: Any) -> None:
    conn = connector()
    with pytest.raises(BadRequest) as err:
        conn.call("willo.update_participant", {"participant": ADA, "stage": "hired"})
    assert err.value.field_errors == {
        "stage": [
            '"hired" is not a stage of this interview (Invited, Completed, Reviewed, Shortlisted, Rejected, Hired).'
        ]
    }
    moved = conn.call("willo.move_participant_stage", {"participant": ADA, "stage": "hired"}).output
    assert moved["stage"] == "Hired"  # the composite matches the board's spelling


# ---------------------------------------------------------------------- 18.7 filters and ordering


def test_an_unknown_key_in_a_filter_names_the_option(target: Any, tmp_path) -> None:
    conn = connector()
    store = StateStore(tmp_path)
    with pytest.raises(InputError) as err:
        Poller(conn, store, "willo.participant_completed", {"interview": "0" * 32}).poll()
    assert str(err.value) == (
        "willo.participant_completed: --with interview: "
        "Select a valid choice. That choice is not one of the available choices."
    )
    with pytest.raises(InputError) as err:
        list_options(conn, "willo.move_participant_stage", "participant", {"interview": "0" * 32})
    assert str(err.value).startswith(
        "willo.move_participant_stage: options for /participant: willo.list_participants"
    )
    assert "interview: Select a valid choice." in str(err.value)
    r = CliRunner().invoke(
        main, ["poll", "willo.participant_completed", "--once", "--with", f"interview={'0' * 32}"]
    )
    assert r.exit_code == 1 and r.stderr.startswith("error: willo.participant_completed: --with interview:")


def _respond(target: Any, key: str) -> None:
    r = requests.post(
        f"{target.base_url}/_sandbox/participants/{key}/respond",
        json={},
        headers={"Authorization": target.api_key},
    )
    assert r.status_code == 200, r.text


def _invite(target: Any, email: str) -> str:
    r = requests.post(
        f"{target.base_url}/participants/",
        json={"interview": BACKEND, "email": email},
        headers={"Authorization": target.api_key},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def test_polling_pages_on_when_the_server_ignores_the_ordering(sandbox: Any, tmp_path, monkeypatch) -> None:
    """DRF ignores an ordering it does not know: a page holding the cursor then says
    nothing of the next, and stopping there would lose an item for good."""
    from connector.sandbox.resources import participants

    monkeypatch.setattr(participants, "ORDERING", set())  # every ordering unknown: ignored, as DRF does
    for key in [_invite(sandbox, f"c{i:02d}@example.com") for i in range(31)]:
        _respond(sandbox, key)  # completed in the order invited: newest first looks sorted
    poller = Poller(connector(), StateStore(tmp_path), "willo.participant_completed")
    assert poller.poll().first
    _respond(sandbox, ADA)  # invited long ago (last page), completed just now
    assert [e["email"] for e in poller.poll().events] == ["ada@example.com"]


def test_polling_trusts_an_honoured_ordering_after_one_probe(target: Any, tmp_path) -> None:
    for key in [_invite(target, f"c{i:02d}@example.com") for i in range(31)]:
        _respond(target, key)
    poller = Poller(connector(), StateStore(tmp_path), "willo.participant_completed")
    # the first poll stops after page 1 only once the probe says the ordering is honoured
    assert poller.poll().requests == 2  # page 1, probe
    _respond(target, ADA)
    first = poller.poll()
    assert [e["email"] for e in first.events] == [
        "ada@example.com"
    ] and first.requests == 1  # the verdict kept
    assert poller.poll().requests == 1  # nothing new: one request


# ---------------------------------------------------------------------- 18.8 decimals


def test_decimal_scores_are_numbers_to_expressions(target: Any, tmp_path) -> None:
    r = requests.post(
        f"{target.base_url}/_sandbox/participants/{ADA}/score",
        json={"score": 4.5},
        headers={"Authorization": target.api_key},
    )
    assert r.json()["score"] == "4.5"  # a DecimalField, as DRF sends it
    conn = connector("strict")
    assert conn.call("willo.get_participant", {"participant": ADA}).output["score"] == 4.5
    listed = conn.call("willo.list_participants", {"interview": BACKEND, "all": True}).output["results"]
    assert {p["email"]: p["score"] for p in listed}["ada@example.com"] == 4.5
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        f"workflow: 1\nname: d\nsteps:\n"
        f"  - id: p\n    use: willo.get_participant\n    with: {{participant: '{ADA}'}}\n"
        f'  - id: high\n    use: willo.move_participant_stage\n    if: "{{{{ steps.p.output.score >= 4 }}}}"\n'
        f"    with: {{participant: '{ADA}', stage: Shortlisted}}\n"
    )
    run = CliRunner().invoke(main, ["run", str(wf), "--json"])
    assert run.exit_code == 0, run.stderr
    assert [s["status"] for s in json.loads(run.stdout)["steps"]] == ["succeeded", "succeeded"]


def test_a_trigger_event_gives_expressions_its_decimals_as_numbers(sandbox: Any, tmp_path) -> None:
    manifest = get_catalog().get("willo.new_score", "trigger")
    event = json.loads(json.dumps(manifest.data["sample"]))
    event["data"]["score"] = "4.5"
    event["data"]["participant"]["key"] = ADA
    (tmp_path / "event.json").write_text(json.dumps(event))
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "workflow: 1\nname: d\ntrigger: {use: willo.new_score}\nsteps:\n"
        "  - id: high\n    use: willo.move_participant_stage\n"
        '    if: "{{ trigger.data.score > 4 and trigger.data.participant.score is none }}"\n'
        "    with: {participant: '{{ trigger.data.participant.key }}', stage: Shortlisted}\n"
    )
    run = CliRunner().invoke(main, ["run", str(wf), "--json", "--event", str(tmp_path / "event.json")])
    assert run.exit_code == 0, run.stderr
    assert json.loads(run.stdout)["steps"][0]["status"] == "succeeded"


def test_decimal_annotation_converts_only_what_it_marks() -> None:
    from connector.catalog.schemas import decimal_tree, numbers

    schema = {
        "type": "object",
        "properties": {
            "results": {"type": "array", "items": {"properties": {"score": {"x-decimal": True}, "name": {}}}},
            "other": {"anyOf": [{"type": "null"}, {"x-decimal": True}]},
        },
    }
    tree = decimal_tree(schema)
    value = {
        "results": [{"score": "4.5", "name": "4.5"}, {"score": None}, {"score": "7"}],
        "other": "-0.25",
        "x": "1",
    }
    assert numbers(value, tree) == {
        "results": [{"score": 4.5, "name": "4.5"}, {"score": None}, {"score": 7}],
        "other": -0.25,
        "x": "1",
    }
    assert numbers({"results": [{"score": "n/a"}]}, tree) == {"results": [{"score": "n/a"}]}
    assert decimal_tree({"type": "object", "properties": {"a": {"type": "string"}}}) is None


# ---------------------------------------------------------------------- 18.9 pacing


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def drf_throttled(
    n: int, seed: int, server: tuple[int, int] = (10, 100), jitter: float = 0.04, wait_for: float = 0.0
) -> tuple[int, FakeClock, Pacer]:
    """``n`` requests paced at 10/100, one after another, each reaching a DRF-style
    throttle (``server`` per second/minute) 0 to ``jitter`` seconds after its slot;
    a 429 is retried after its Retry-After. Returns the 429s, the clock and the pacer."""
    clock = FakeClock()
    pacer = Pacer(10, 100, clock=clock, sleep=clock.sleep)
    arrival = [0.0]
    throttle = Throttle(*server, clock=lambda: arrival[0])
    rng = random.Random(seed)
    rejected = done = 0
    ready = 0.0
    while done < n:
        clock.now = max(clock.now, ready)
        pacer.acquire()
        arrival[0] = max(arrival[0], clock.now + rng.uniform(0, jitter))
        wait = throttle.check("owner")
        ready = arrival[0] + rng.uniform(0, jitter) + wait_for
        if wait:
            rejected += 1
            pacer.throttled(math.ceil(wait))
            ready += math.ceil(wait)
        else:
            done += 1
    return rejected, clock, pacer


def test_pacing_absorbs_arrival_jitter() -> None:
    """18.9: with 0-40 ms of jitter a 2% margin drew 1-2 429s per 40 requests."""
    assert [drf_throttled(40, seed)[0] for seed in range(30)] == [0] * 30
    assert drf_throttled(250, 1)[0] == 0  # the minute window too


def test_pacing_tightens_after_a_429_then_recovers() -> None:
    # the account's real limit is lower than configured (another process shares it)
    rejected, clock, pacer = drf_throttled(120, 2, server=(7, 100))
    assert 0 < rejected <= 4  # tightened after the first 429s instead of drawing one a second
    assert pacer.cut > 0 and pacer.slack > pacer.base_slack
    clock.sleep(60 * (pacer.cut + 4))
    pacer.acquire()
    assert (pacer.cut, pacer.slack) == (0, pacer.base_slack)


def test_a_429_holds_every_request_until_retry_after() -> None:
    clock = FakeClock()
    pacer = Pacer(10, 100, clock=clock, sleep=clock.sleep)
    pacer.throttled(3)
    pacer.acquire()
    assert clock.now == 3
    pacer.throttled(86400)  # a hostile or broken Retry-After holds a minute at most
    pacer.acquire()
    assert clock.now == 63


# ---------------------------------------------------------------------- the client against DRF itself


def test_the_client_against_drf(drf: Any) -> None:
    """Pages, typed errors, key forms and DRF's own throttles, from the real framework."""
    client = WilloClient(Settings.from_env(backoff=0.01))
    assert len(client.paginate("GET", "/languages/", params={"page_size": 5})) == 12
    with pytest.raises(NotFound, match="404 No Participant matches the given query."):
        client.request("GET", f"/participants/{'0' * 32}/")
    with pytest.raises(MethodNotAllowed):
        client.request("DELETE", "/languages/")
    with pytest.raises(Unauthorized) as unauth:
        WilloClient(Settings.from_env(api_key="sk_wrong_key")).request("GET", "/interviews/")
    assert "sk_wrong_key" not in str(unauth.value)
    assert WilloClient(Settings.from_env(auth_scheme="Bearer")).request("GET", "/languages/")["count"] == 12
    drf.reset(throttle={"burst": "3/min"})
    try:
        limited = WilloClient(Settings.from_env(rate="0", max_retries=0))
        for _ in range(3):
            limited.request("GET", "/languages/")
        with pytest.raises(RateLimited) as err:
            limited.request("GET", "/languages/")
        assert err.value.retry_after and err.value.retry_after >= 1
        assert "Request was throttled. Expected available in" in str(err.value)
    finally:
        drf.reset()


def test_the_readme_links_what_drf_decides() -> None:
    readme = (ROOT / "README.md").read_text()
    page = (ROOT / "docs/drf-assumptions.md").read_text()
    assert "docs/drf-assumptions.md" in readme
    for topic in (
        "APPEND_SLASH",
        "WWW-Authenticate",
        "null",
        "case-sensitive",
        "exact",
        "django-filter",
        "OrderingFilter",
        "DecimalField",
        "UserRateThrottle",
        "Invalid page.",
        "no fraction",
    ):
        assert topic in page, topic
