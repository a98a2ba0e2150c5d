"""``willo-connector export openapi``: OpenAPI 3.1 and Swagger 2.0 (Power Automate) of the
catalog, validated with openapi-spec-validator, and requests built from the document
compared with the ones the connector sends."""

from __future__ import annotations

import importlib.metadata as md
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import yaml
from click.testing import CliRunner
from requests.adapters import HTTPAdapter

from connector.catalog import plugins
from connector.catalog.index import get_catalog
from connector.cli import main
from connector.http.client import Settings
from connector.interop import openapi
from connector.sandbox import Sandbox
from connector.workflows.runtime import Connector
from tests.test_plugins import ACTION_YAML, GOOD_MODULE, make_plugin

openapi_spec_validator = pytest.importorskip("openapi_spec_validator")

METHODS = ("get", "post", "put", "patch", "delete")


def ops_of(doc: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (method, path, operation)."""
    found = {}
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                found[item[method]["operationId"]] = (method, path, item[method])
    return found


def request_backed(catalog: Any) -> set[str]:
    return {m.id for m in catalog.of_kind("action") if m.request is not None}


# --------------------------------------------------------------------------- validity and coverage


def test_openapi31_is_valid_and_covers_every_request_backed_action() -> None:
    catalog = get_catalog()
    doc = openapi.document(catalog, Settings.from_env())
    openapi_spec_validator.validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert set(ops_of(doc)) == request_backed(catalog)
    assert doc["servers"] == [
        {"url": "https://api.willotalent.com/api/integrations/v2", "description": "WILLO_BASE_URL"}
    ]
    not_expressible = {i["id"]: i for i in doc["x-willo-not-expressible"]}
    assert {i for i, v in not_expressible.items() if v["kind"] == "action"} == {
        "http.request",
        "willo.move_participant_stage",
        "willo.find_or_invite_participant",
    }
    assert "handler-backed composite" in not_expressible["willo.move_participant_stage"]["reason"]
    assert set(doc["webhooks"]) == {
        "willo.new_response",
        "willo.stage_change",
        "willo.new_comment",
        "willo.new_score",
    }
    method, path, op = ops_of(doc)["willo.list_interviews"]
    assert (method, path) == ("get", "/interviews/")
    assert [p["name"] for p in op["parameters"]] == [
        "department",
        "owner",
        "search",
        "ordering",
        "page",
        "page_size",
    ]
    assert op["x-willo-connector-only-inputs"] == ["all"]
    assert (
        op["responses"]["200"]["content"]["application/json"]["schema"]
        == catalog.get("willo.list_interviews").output_schema
    )
    _, _, delete = ops_of(doc)["willo.delete_interview"]
    assert list(delete["responses"]) == ["204", "default"] and "content" not in delete["responses"]["204"]
    _, _, invite = ops_of(doc)["willo.invite_participant"]
    body = invite["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["interview", "email"] and invite["requestBody"]["required"] is True
    assert list(invite["responses"]) == ["201", "default"]


def test_swagger2_is_valid_and_covers_every_request_backed_action() -> None:
    catalog = get_catalog()
    doc = openapi.swagger2(catalog, Settings.from_env())
    openapi_spec_validator.validate(doc)
    assert doc["swagger"] == "2.0"
    assert (doc["host"], doc["basePath"], doc["schemes"]) == (
        "api.willotalent.com",
        "/api/integrations/v2",
        ["https"],
    )
    ops = ops_of(doc)
    actions = {op["x-willo-action"] for _, _, op in ops.values() if "x-willo-action" in op}
    not_expressible = {i["id"] for i in doc["x-willo-not-expressible"]}
    # every request-backed action is an operation, except the one whose path and method the
    # webhook trigger takes (Swagger 2.0 has one operation per path and method)
    assert actions == request_backed(catalog) - {"willo.create_webhook"}
    assert "willo.create_webhook" in not_expressible
    assert not_expressible >= {"willo.new_participant", "willo.new_interview", "willo.participant_completed"}
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", op_id) for op_id in ops)


def walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    out = [(path, value)]
    if isinstance(value, dict):
        for k, v in value.items():
            out += walk(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += walk(v, f"{path}/{i}")
    return out


def test_swagger2_uses_only_swagger2_constructs_and_power_automates_rules() -> None:
    doc = openapi.swagger2(get_catalog(), Settings.from_env())
    for path, value in walk(doc["paths"]):
        key = path.rsplit("/", 1)[-1]
        if "/properties/" in path and path.rsplit("/properties/", 1)[1].count("/") == 0:
            continue  # a property *named* like a keyword
        assert key not in ("anyOf", "oneOf", "const", "nullable", "prefixItems", "examples", "requestBody"), (
            path
        )
        if key == "type" and isinstance(value, (str, list)):
            assert isinstance(value, str), path
        if key in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(value, bool), path
    for op_id, (_, _, op) in ops_of(doc).items():
        assert len(op["summary"]) <= 80 and not re.search(r"[/\\<>*%&?]", op["summary"]), op_id
        assert not re.search(r"[^A-Za-z0-9)]$", op["summary"]), op_id
        for p in op.get("parameters", []):
            if p["in"] == "body":
                assert "schema" in p and "type" not in p
            else:
                assert p["type"] in ("string", "number", "integer", "boolean", "array") and "schema" not in p
                assert p["description"] and p["x-ms-summary"], (op_id, p["name"])
            if p["in"] == "path":
                assert p["required"] is True and p["x-ms-url-encoding"] == "single"
    lowered = [p.lower() for p in doc["paths"]]
    assert len(lowered) == len(set(lowered))  # Power Automate compares paths case-insensitively


def test_swagger2_dynamic_values_call_list_operations_that_exist() -> None:
    doc = openapi.swagger2(get_catalog(), Settings.from_env())
    ops = ops_of(doc)
    found = 0
    for path, value in walk(doc["paths"]):
        if path.endswith("/x-ms-dynamic-values"):
            found += 1
            method, _, target = ops[value["operationId"]]
            assert method == "get"
            listing = target["responses"]["200"]["schema"]["properties"][value["value-collection"]]
            assert {value["value-path"], value["value-title"]} <= set(listing["items"]["properties"]), path
        if path.endswith("/x-ms-dynamic-list"):
            assert value["operationId"] in ops
    assert found >= 30
    _, _, get = ops["willo-get_interview"]
    (interview,) = get["parameters"]
    assert interview["x-ms-dynamic-values"]["operationId"] == "willo-list_interviews"
    assert interview["x-ms-visibility"] == "important"


def test_swagger2_webhook_trigger_subscribes_with_the_callback_url() -> None:
    doc = openapi.swagger2(get_catalog(), Settings.from_env())
    item = doc["paths"]["/webhooks/"]
    trigger = item["post"]
    assert trigger["x-ms-trigger"] == "single" and trigger["operationId"] == "willo-webhook_event"
    body = trigger["parameters"][0]["schema"]
    assert body["properties"]["url"] == {
        "type": "string",
        "description": "Power Automate's callback URL.",
        "x-ms-notification-url": True,
        "x-ms-visibility": "internal",
        "x-ms-summary": "Callback URL",
    }
    assert body["properties"]["events"]["items"]["enum"] == [
        "new_comment",
        "new_response",
        "new_score",
        "stage_change",
    ]
    assert "secret" not in body["properties"]
    assert trigger["responses"]["201"]["headers"]["Location"]["type"] == "string"
    content = item["x-ms-notification-content"]["schema"]
    assert set(content["properties"]["event"]["enum"]) == {
        "new_comment",
        "new_response",
        "new_score",
        "stage_change",
    }
    assert {"participant", "to_stage", "score"} <= set(content["properties"]["data"]["properties"])
    assert set(trigger["x-willo-triggers"]) == {
        "willo.new_response",
        "willo.stage_change",
        "willo.new_comment",
        "willo.new_score",
    }
    # the DELETE Power Automate sends to the Location header's URL exists
    assert doc["paths"]["/webhooks/{webhook}/"]["delete"]["x-willo-action"] == "willo.delete_webhook"


# --------------------------------------------------------------------------- down-conversion


def test_downconversion_of_2020_12_keywords() -> None:
    conv = openapi.Downconverter(
        {"willo.list_things": {"operationId": "willo-list_things", "collection": "results"}}
    )
    schema = {
        "type": "object",
        "required": ["a", "gone"],
        "properties": {
            "a": {"type": ["string", "null"], "examples": ["x", "y"]},
            "b": {"const": "fixed"},
            "c": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
            "d": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
            "e": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "f": {"enum": ["x", None]},
            "g": {"type": "array", "prefixItems": [{"type": "string"}]},
            "h": {
                "type": "string",
                "x-options": {"action": "willo.list_things", "value": "key", "label": "name"},
            },
            "i": {"type": "string", "x-options": {"action": "willo.not_here", "value": "key"}},
            "j": {"type": "integer", "default": "nope", "not": {"const": 3}},
        },
    }
    out = conv.schema(schema)
    p = out["properties"]
    assert out["required"] == ["a"]  # a required name with no property is dropped
    assert p["a"] == {"type": "string", "example": "x", "x-nullable": True, "x-ms-summary": "A"}
    assert p["b"] == {"enum": ["fixed"], "type": "string", "x-ms-summary": "B"}
    assert (p["c"]["minimum"], p["c"]["exclusiveMinimum"], p["c"]["maximum"], p["c"]["exclusiveMaximum"]) == (
        0,
        True,
        10,
        True,
    )
    assert p["d"] == {"type": "integer", "minimum": 1, "x-nullable": True, "x-ms-summary": "D"}
    assert p["e"] == {"x-ms-summary": "E"}  # a union of scalars: left untyped
    assert p["f"] == {"enum": ["x"], "type": "string", "x-nullable": True, "x-ms-summary": "F"}
    assert p["g"] == {"type": "array", "items": {}, "x-ms-summary": "G"}
    assert p["h"]["x-ms-dynamic-values"] == {
        "operationId": "willo-list_things",
        "value-collection": "results",
        "value-path": "key",
        "value-title": "name",
    }
    assert "x-options" not in p["h"] and "x-ms-dynamic-values" not in p["i"]
    assert p["j"] == {"type": "integer", "x-ms-summary": "J"}
    assert conv.dropped == {
        "oneOf": 1,
        "prefixItems": 1,
        "x-options (list action not in the document)": 1,
        "not": 1,
        "default (wrong type)": 1,
    }


def test_merge_objects_for_a_union_swagger2_cannot_state() -> None:
    merged = openapi.merge_objects(
        [
            {
                "type": "object",
                "required": ["id", "a"],
                "properties": {"id": {"type": "string"}, "a": {"const": "x"}},
            },
            {
                "type": "object",
                "required": ["id"],
                "properties": {"id": {"type": "string"}, "a": {"const": "y"}, "b": {}},
            },
        ]
    )
    assert merged["required"] == ["id"]
    assert merged["properties"]["a"]["enum"] == ["x", "y"] and set(merged["properties"]) == {"id", "a", "b"}


# --------------------------------------------------------------------------- a request from the document


class Recorder(HTTPAdapter):
    """A transport that records every request it sends."""

    def __init__(self) -> None:
        super().__init__(max_retries=0)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        return super().send(request, *args, **kwargs)


def sent_by_connector(
    conn: Connector, action: str, inputs: dict[str, Any]
) -> tuple[requests.PreparedRequest, Any]:
    recorder = Recorder()
    conn.client.session.mount("http://", recorder)
    output = conn.call(action, inputs).output
    (req,) = recorder.sent
    return req, output


def built_from_document(
    doc: dict[str, Any], op_id: str, inputs: dict[str, Any], key: str
) -> requests.PreparedRequest:
    """What a generic OpenAPI 3.1 client would send: only the document is consulted."""
    method, path, op = ops_of(doc)[op_id]
    query: dict[str, Any] = {}
    for p in op.get("parameters", []):
        source = p.get("x-willo-input", p["name"])
        if source not in inputs:
            assert not p["required"], p
            continue
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", quote(str(inputs[source]), safe=""))
        elif p["in"] == "query":
            query[p["name"]] = inputs[source]
    body = None
    if "requestBody" in op:
        props = op["requestBody"]["content"]["application/json"]["schema"]["properties"]
        body = {
            k: inputs[s.get("x-willo-input", k)]
            for k, s in props.items()
            if s.get("x-willo-input", k) in inputs
        }
    headers = {}
    for requirement in op.get("security", doc["security"]):
        for name in requirement:
            scheme = doc["components"]["securitySchemes"][name]
            if scheme["type"] == "apiKey":
                headers[scheme["name"]] = key
            else:
                assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
                headers["Authorization"] = f"Bearer {key}"
    url = doc["servers"][0]["url"] + path
    return requests.Request(method.upper(), url, params=query, json=body, headers=headers).prepare()


MATTERS = ("Authorization", "Content-Type", "Accept")


def same_request(a: requests.PreparedRequest, b: requests.PreparedRequest) -> None:
    assert (a.method, a.url) == (b.method, b.url)
    assert json.loads(a.body or "null") == json.loads(b.body or "null")
    for header in ("Authorization", "Content-Type"):
        assert a.headers.get(header) == b.headers.get(header), header


@pytest.mark.parametrize("scheme", ["", "Bearer"])
def test_get_interview_built_from_the_31_document_is_what_the_connector_sends(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    if scheme:
        monkeypatch.setenv("WILLO_AUTH_SCHEME", scheme)
    settings = Settings.from_env()
    conn = Connector(settings=settings)
    key = next(iter(sandbox.store.table("interviews")))
    doc = openapi.document(conn.catalog, settings)
    assert doc["servers"][0]["url"] == sandbox.base_url
    ours, output = sent_by_connector(conn, "willo.get_interview", {"interview": key})
    theirs = built_from_document(doc, "willo.get_interview", {"interview": key}, sandbox.api_key)
    same_request(ours, theirs)
    assert ours.headers["Authorization"] == (f"Bearer {sandbox.api_key}" if scheme else sandbox.api_key)
    # and the document's request, sent, gets the same answer (the sandbox takes either form)
    answer = requests.Session().send(theirs, timeout=10)
    assert answer.status_code == int(next(iter(ops_of(doc)["willo.get_interview"][2]["responses"])))
    assert answer.json() == output


@pytest.mark.parametrize(
    ("action", "inputs"),
    [
        ("willo.list_interviews", {"search": "engineer", "page_size": 2, "ordering": "-created_at"}),
        ("willo.update_participant", {"participant": None, "first_name": "Grace", "stage": "Reviewed"}),
        (
            "willo.invite_participant",
            {"interview": None, "email": "doc.built@example.com", "send_email": False},
        ),
    ],
)
def test_other_requests_built_from_the_document_match(
    sandbox: Sandbox, action: str, inputs: dict[str, Any]
) -> None:
    conn = Connector(settings=Settings.from_env())
    if "participant" in inputs:
        inputs["participant"] = next(iter(sandbox.store.table("participants")))
    if "interview" in inputs:
        inputs["interview"] = next(iter(sandbox.store.table("interviews")))
    doc = openapi.document(conn.catalog, conn.client.settings)
    ours, _ = sent_by_connector(conn, action, inputs)
    same_request(ours, built_from_document(doc, action, inputs, sandbox.api_key))


# --------------------------------------------------------------------------- plugins and the CLI


def test_plugins_actions_are_in_the_export(tmp_path: Path) -> None:
    ep: md.EntryPoint = make_plugin(
        tmp_path,
        "acmeexport",
        GOOD_MODULE,
        {
            "count.yaml": ACTION_YAML.format(
                id="acme.count_interviews", tail="handler: acme.count_interviews"
            ),
            "declarative.yaml": ACTION_YAML.format(
                id="acme.count_departments",
                tail="request: {method: GET, path: /departments/, query: {page_size: 1}}",
            ),
            "own.yaml": ACTION_YAML.format(
                id="acme.count_things", tail="request: {method: GET, path: /things/count/}"
            ),
        },
    )
    plugins.set_host(plugins.build_host([ep]))
    catalog = get_catalog()
    for doc in (
        openapi.document(catalog, Settings.from_env()),
        openapi.swagger2(catalog, Settings.from_env()),
    ):
        openapi_spec_validator.validate(doc)
        skipped = {i["id"]: i["reason"] for i in doc["x-willo-not-expressible"]}
        assert "handler-backed composite (acme.count_interviews)" in skipped["acme.count_interviews"]
        # one operation per path and method: the built-in keeps GET /departments/
        assert skipped["acme.count_departments"] == "GET /departments/ is also willo.list_departments"
        assert "acmeexport" in doc["info"]["description"]
        method, path, op = next(v for k, v in ops_of(doc).items() if "count_things" in k)
        assert (method, path, op["summary"]) == ("get", "/things/count/", "Count interviews")
        assert "willo.list_departments" in {
            o.get("x-willo-action", k) for k, (_, _, o) in ops_of(doc).items()
        }


def test_a_fixed_query_value_is_a_required_constant(tmp_path: Path) -> None:
    ep = make_plugin(
        tmp_path,
        "acmeconst",
        GOOD_MODULE.split("@hookimpl\ndef action_handlers")[0],
        {
            "declarative.yaml": ACTION_YAML.format(
                id="acme.one_department",
                tail="request: {method: GET, path: /departments/one/, query: {page_size: 1}}",
            )
        },
    )
    plugins.set_host(plugins.build_host([ep]))
    catalog = get_catalog()
    _, _, op = ops_of(openapi.document(catalog, Settings.from_env()))["acme.one_department"]
    assert op["parameters"] == [
        {
            "name": "page_size",
            "in": "query",
            "required": True,
            "description": "Always 1.",
            "schema": {"const": 1, "default": 1},
        }
    ]
    _, _, op2 = ops_of(openapi.swagger2(catalog, Settings.from_env()))["acme-one_department"]
    assert op2["parameters"][0] | {"x-ms-summary": None} == {
        "name": "page_size", "in": "query", "required": True, "description": "Always 1.",
        "type": "integer", "enum": [1], "default": 1, "x-ms-visibility": "internal", "x-ms-summary": None,
    }  # fmt: skip


def test_an_action_whose_path_computes_a_value_is_not_expressible(tmp_path: Path) -> None:
    ep = make_plugin(
        tmp_path,
        "acmecomputed",
        GOOD_MODULE.split("@hookimpl\ndef action_handlers")[0],
        {
            "declarative.yaml": ACTION_YAML.format(
                id="acme.shouting", tail="request: {method: GET, path: '/x/{{ \"a\" | upper }}/'}"
            )
        },
    )
    plugins.set_host(plugins.build_host([ep]))
    doc = openapi.document(get_catalog(), Settings.from_env())
    skipped = {i["id"]: i["reason"] for i in doc["x-willo-not-expressible"]}
    assert "computes a value" in skipped["acme.shouting"]


def test_cli_export_json_yaml_and_file(tmp_path: Path) -> None:
    runner = CliRunner()
    as_json = runner.invoke(main, ["export", "openapi", "--format", "json"])
    assert as_json.exit_code == 0, as_json.stderr
    as_yaml = runner.invoke(main, ["export", "openapi"])
    assert json.loads(as_json.stdout) == yaml.safe_load(as_yaml.stdout)
    out = tmp_path / "willo.swagger.json"
    r = runner.invoke(main, ["export", "openapi", "--swagger2", "--format", "json", "-o", str(out)])
    assert r.exit_code == 0 and r.stdout == ""
    doc = json.loads(out.read_text())
    openapi_spec_validator.validate(doc)
    assert doc["swagger"] == "2.0"


def test_cli_export_takes_the_base_url_and_refuses_plain_http() -> None:
    r = CliRunner().invoke(
        main,
        ["export", "openapi", "--format", "json"],
        env={"WILLO_BASE_URL": "https://api.stage.willotalent.com/api/integrations/v2/"},
    )
    assert (
        json.loads(r.stdout)["servers"][0]["url"] == "https://api.stage.willotalent.com/api/integrations/v2"
    )
    r = CliRunner().invoke(main, ["export", "openapi"], env={"WILLO_BASE_URL": "http://example.com/api"})
    assert r.exit_code == 1 and r.stderr.startswith("error: refusing plain http:// to example.com")


def test_cli_export_takes_servers_and_scheme_from_a_connection(tmp_path: Path) -> None:
    """`export openapi -c NAME`: the servers and the security scheme are the config file's
    connection's; its key is neither needed nor read (the variable is not even set), and
    an unknown name is a one-line error naming the choices."""
    config = tmp_path / "connections.yaml"
    config.write_text(
        "connections:\n"
        "  child:\n"
        "    base_url: https://child.willo.example/api/integrations/v2/\n"
        "    api_key_env: CHILD_KEY_NOT_SET\n"
        "    auth_scheme: Token\n"
    )
    env = {"WILLO_CONFIG": str(config), "WILLO_BASE_URL": "https://api.willotalent.com/api/integrations/v2"}
    r = CliRunner().invoke(main, ["export", "openapi", "--format", "json", "-c", "child"], env=env)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [s["url"] for s in doc["servers"]] == ["https://child.willo.example/api/integrations/v2"]
    assert (
        "`Authorization: Token <key>`"
        in doc["components"]["securitySchemes"][openapi.SECURITY]["description"]
    )
    r = CliRunner().invoke(main, ["export", "openapi", "-c", "chlid"], env=env)
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "unknown connection 'chlid'" in r.stderr and "child" in r.stderr
