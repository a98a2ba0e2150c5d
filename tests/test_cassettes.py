"""Offline replay of one cassette per action, catalog meta-tests, and output drift."""

from __future__ import annotations

import json
import logging
import re
import socket
from pathlib import Path

import pytest
import yaml

from connector.catalog import drift
from connector.catalog.index import get_catalog
from connector.errors import OutputError
from connector.http.cassettes import replay
from connector.http.client import Settings
from connector.kit import scenarios
from connector.workflows.runtime import Connector
from tests.conftest import CASSETTES, ROOT

DESIGN_IDS = """
list_departments create_department get_department replace_department update_department delete_department
list_interviews create_interview get_interview replace_interview update_interview delete_interview
list_message_templates create_message_template get_message_template replace_message_template
update_message_template delete_message_template
list_participants invite_participant get_participant replace_participant update_participant
delete_participant get_participant_idv_info get_participant_idv_media
list_users invite_user get_user update_user delete_user
list_webhooks create_webhook replace_webhook update_webhook delete_webhook
list_categories list_interview_templates get_interview_template create_interview_from_template
list_child_organisations create_child_organisation list_languages list_idv_countries
move_participant_stage find_or_invite_participant
""".split()
TRIGGERS = [
    "new_response",
    "stage_change",
    "new_comment",
    "new_score",
    "new_participant",
    "new_interview",
    "participant_completed",
]
INPUTS = json.loads((CASSETTES / "inputs.json").read_text())
ACTIONS = sorted(f"willo.{i}" for i in DESIGN_IDS)
#: built-ins that are not Willo operations (DESIGN section 13): no cassette, tested on loopback
OTHER_ACTIONS = {"http.request"}
OTHER_TRIGGERS = {"schedule.cron"}


@pytest.fixture
def offline(monkeypatch) -> Connector:
    def refuse(*args, **kwargs):
        raise AssertionError("a replay opened a socket")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    conn = Connector(settings=Settings.from_env(api_key="replay-key"), schema_mode="strict")
    conn.serial = True
    return conn


def test_every_design_id_exists_and_nothing_else() -> None:
    cat = get_catalog()
    assert {m.id for m in cat.of_kind("action")} == set(ACTIONS) | OTHER_ACTIONS
    assert {m.id for m in cat.of_kind("trigger")} == {f"willo.{t}" for t in TRIGGERS} | OTHER_TRIGGERS
    assert len(ACTIONS) == 46 and cat.problems == []


def test_44_operations_each_have_their_own_request() -> None:
    cat = get_catalog()
    ops = {
        (m.request["method"], re.sub(r"\{\{.*?\}\}", "{key}", m.request["path"]))
        for m in cat.of_kind("action")
        if m.request
    }
    assert len(ops) == 44
    assert ("GET", "/idv-counties/") in ops  # Willo's own spelling


def test_every_manifest_sample_validates_and_inputs_are_strict() -> None:
    from connector.catalog import schemas

    for m in get_catalog().manifests.values():
        assert schemas.errors(m.data["sample"], m.output_schema) == [], m.id
        if m.kind == "action":
            assert m.input_schema.get("additionalProperties") is False, m.id
            for name, prop in m.input_schema.get("properties", {}).items():
                assert prop.get("description"), f"{m.id} /input/properties/{name}"


def test_every_action_has_a_scenario_a_cassette_and_recorded_inputs() -> None:
    polling = [m.id for m in get_catalog().of_kind("trigger") if m.data["strategy"] == "polling"]
    assert sorted(scenarios.load(CASSETTES / "scenarios.yaml", get_catalog())) == sorted(ACTIONS + polling)
    for action in ACTIONS:
        assert (CASSETTES / f"{action}.yaml").is_file(), action
        assert action in INPUTS, action


def test_no_secret_in_any_cassette() -> None:
    for path in CASSETTES.glob("willo.*.yaml"):
        text = path.read_text()
        assert "sk_sandbox_" not in text and "sk_live" not in text, path.name
        data = yaml.safe_load(text)
        for interaction in data["interactions"]:
            auth = interaction["request"]["headers"].get("Authorization")
            assert auth in (None, ["REDACTED"]), path.name


@pytest.mark.parametrize("action", ACTIONS)
def test_replay(action: str, offline: Connector) -> None:
    cassette = CASSETTES / f"{action}.yaml"
    with replay(cassette) as recorded:
        out = offline.call(action, INPUTS[action]).output
        assert recorded.all_played
    last = yaml.safe_load(cassette.read_text())["interactions"][-1]["response"]
    body = last["body"]["string"]
    manifest = offline.catalog.get(action)
    if manifest.request and not INPUTS[action].get("all"):
        assert out == (manifest.numbers(json.loads(body)) if body else {})  # decimals as numbers


# ---------------------------------------------------------------------- drift


def edited_cassette(tmp_path: Path) -> Path:
    data = yaml.safe_load((CASSETTES / "willo.get_interview.yaml").read_text())
    body = json.loads(data["interactions"][0]["response"]["body"]["string"])
    body["video_count"] = 3
    del body["title"]
    body["questions"] = "three"
    body["owner"]["key"] = 42
    data["interactions"][0]["response"]["body"]["string"] = json.dumps(body)
    path = tmp_path / "drifted.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


EXPECTED = [
    "schema drift in willo.get_interview: /owner/key: changed type: expected string, got integer",
    "schema drift in willo.get_interview: /questions: changed type: expected array/null, got string",
    "schema drift in willo.get_interview: /video_count: appeared (integer)",
    "schema drift in willo.get_interview: /title: went missing",
]


def test_drift_is_reported_once_per_action_and_field(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="connector.drift")
    path = edited_cassette(tmp_path)
    conn = Connector(settings=Settings.from_env(api_key="k"))
    inputs = INPUTS["willo.get_interview"]
    for _ in range(2):
        with replay(path):
            out = conn.call("willo.get_interview", inputs).output
    assert out["video_count"] == 3  # warn mode passes the data through
    assert [r.getMessage() for r in caplog.records] == EXPECTED


def test_strict_mode_fails_the_call(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WILLO_SCHEMA_MODE", "strict")
    conn = Connector(settings=Settings.from_env(api_key="k"))
    with replay(edited_cassette(tmp_path)), pytest.raises(OutputError) as err:
        conn.call("willo.get_interview", INPUTS["willo.get_interview"])
    assert str(err.value).startswith("willo.get_interview: output does not match its schema: /owner/key")


def test_drift_compare_handles_nullable_and_lists() -> None:
    schema = {
        "type": "object",
        "required": ["a"],
        "properties": {
            "a": {"type": ["string", "null"]},
            "xs": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
        },
    }
    assert drift.compare(schema, {"a": None, "xs": [{"n": 1}, {"n": 2}]}) == []
    assert drift.compare(schema, {"a": "x", "xs": [{"n": "1"}, {"n": "2"}, {"m": 1}]}) == [
        "/xs/*/n: changed type: expected integer, got string",
        "/xs/*/m: appeared (integer)",
    ]


def _record(rng, i: int) -> dict:
    """A participant-like record, now and then drifted (a field gone, new, or retyped)."""
    rec = {
        "key": f"{i:032x}",
        "email": f"p{i}@example.com",
        "first_name": rng.choice(["Ada", None]),
        "score": rng.choice([None, "4.0", 4]),
        "tags": rng.choice([[], ["a"], [1, "b"]]),
        "meta": rng.choice([{"n": 1}, {"n": "1"}, {"m": True}, None]),
    }
    if rng.random() < 0.1:
        del rec[rng.choice(list(rec))]
    if rng.random() < 0.1:
        rec[rng.choice(["extra", "first_name"])] = rng.choice([1, 2.5, {"x": []}, [{"y": None}]])
    return rec


ITEM = {
    "type": "object",
    "required": ["key", "email"],
    "properties": {
        "key": {"type": "string"},
        "email": {"type": "string"},
        "first_name": {"type": ["string", "null"]},
        "score": {"anyOf": [{"type": "null"}, {"type": "string"}, {"type": "number"}]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": ["object", "null"], "properties": {"n": {"type": "integer"}}},
    },
}
PAGE = {
    "type": "object",
    "required": ["count", "results"],
    "properties": {"count": {"type": "integer"}, "results": {"type": "array", "items": ITEM}},
}


def test_drift_per_shape_reports_exactly_what_compare_does() -> None:
    import random

    rng = random.Random(16)
    d = drift.Drift(PAGE)
    for n in range(300):
        page = {"count": n, "results": [_record(rng, i) for i in range(rng.randint(0, 40))]}
        assert d.report(page) == drift.compare(PAGE, page)  # the memo warm or cold alike
        item = page["results"][0] if page["results"] else {}
        assert d.report(item, "/results/*", ITEM) == drift.compare(ITEM, item, "/results/*")
    assert 0 < len(d.memo) < 300 * 20  # shapes were remembered, and far fewer than records


def test_a_record_shaped_like_one_seen_is_not_compared_again(monkeypatch) -> None:
    catalog = Connector(settings=Settings.from_env(api_key="k")).catalog
    manifest = catalog.get("willo.list_participants")
    sample = manifest.data["sample"]["results"][0]
    records = [{**sample, "key": f"{i:032x}", "score": "4.0" if i % 3 else None} for i in range(3000)]
    page = {"count": 3000, "next": None, "previous": None, "results": records}
    expected = drift.compare(manifest.output_schema, page)
    d = drift.Drift(manifest.data["output"])
    compared = []
    real = drift.compare

    def counting(schema, value, at="", memo=None):
        compared.append(at)
        return real(schema, value, at, memo)

    monkeypatch.setattr(drift, "compare", counting)
    assert d.report(page) == expected
    assert compared.count("/results/*") == 2  # two shapes among 3,000 records
    compared.clear()
    again = {**page, "results": [{**r, "email": "x@example.com"} for r in records[:700]]}
    assert d.report(again) == expected and compared == []  # a shape of page already seen
    mixed = {**page, "results": records[1:3] + records[:1]}  # the same shapes, another order
    assert d.report(mixed) == expected and "/results/*" not in compared


def test_readme_explains_re_recording() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "willo-connector record scenarios cassettes/scenarios.yaml --sandbox --out cassettes" in readme
    assert "tests.record_cassettes" not in readme  # retired: the command needs nothing from tests/
