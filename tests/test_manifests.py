"""Manifest loading: the schema, line-numbered errors, samples, request expressions."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from connector.catalog import manifests, schemas
from connector.yamlio import YamlError, load_text

GOOD = """\
manifest: 1
id: acme.ping
kind: action
title: Ping
description: Ping something.
input:
  type: object
  additionalProperties: false
  required: [name]
  properties:
    name: {type: string, description: Who}
output:
  type: object
  required: [ok]
  properties:
    ok: {type: boolean}
sample: {ok: true}
request:
  method: GET
  path: /ping/{{ input.name }}/
"""


def validate_text(text: str, tmp_path: Path, name: str = "m.yaml") -> list[str]:
    doc = load_text(text, str(tmp_path / name))
    problems: list[str] = []
    manifests.validate(doc, "test", {}, problems)
    return problems


@pytest.mark.parametrize("name", ["manifest", "workflow"])
def test_shipped_schemas_are_valid_draft_2020_12_with_descriptions(name: str) -> None:
    schema = schemas.shipped_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            for key, prop in (node.get("properties") or {}).items():
                assert "description" in prop, f"{where}/properties/{key} has no description"
            for key, value in node.items():
                walk(value, f"{where}/{key}")

    walk(schema, "")


def test_schema_ships_as_package_data() -> None:
    path = resources.files("willo_manifests").joinpath("schemas", "manifest.schema.json")
    assert json.loads(path.read_text())["title"] == "willo-connector manifest"


def test_good_manifest_loads(tmp_path: Path) -> None:
    assert validate_text(GOOD, tmp_path) == []


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(YamlError) as err:
        load_text("manifest: 1\nid: [unclosed\ntitle: x\n", str(tmp_path / "bad.yaml"))
    assert str(err.value).startswith(f"{tmp_path / 'bad.yaml'}:")
    line = int(str(err.value).split(":")[1])
    assert line in (2, 3)


def test_yaml_loader_is_safe(tmp_path: Path) -> None:
    with pytest.raises(YamlError):
        load_text("x: !!python/object/apply:os.system ['true']\n", "evil.yaml")


def test_every_error_at_once_with_line_and_pointer(tmp_path: Path) -> None:
    text = GOOD.replace("kind: action", "kind: acton").replace("title: Ping\n", "")
    text = text.replace(
        "    name: {type: string, description: Who}", "    name: {type: string, description: Who}\n  bogus: 1"
    )
    problems = validate_text(text, tmp_path)
    path = str(tmp_path / "m.yaml")
    assert f"{path}:3: /kind: 'acton' is not one of ['action', 'trigger']" in problems
    assert any(p.startswith(f"{path}:1: /: 'title' is a required property") for p in problems)
    assert len(problems) >= 2


def test_sample_must_satisfy_output(tmp_path: Path) -> None:
    problems = validate_text(GOOD.replace("sample: {ok: true}", "sample: {ok: 'yes'}"), tmp_path)
    assert problems == [
        f"{tmp_path / 'm.yaml'}:17: /sample/ok: sample does not satisfy output: "
        "'yes' is not of type 'boolean'"
    ]


def test_request_expression_must_name_an_input(tmp_path: Path) -> None:
    problems = validate_text(GOOD.replace("input.name }}/", "input.nmae }}/"), tmp_path)
    assert len(problems) == 1
    assert "/request/path" in problems[0] and "input.nmae" in problems[0]
    assert problems[0].startswith(f"{tmp_path / 'm.yaml'}:20:")


def test_pagination_page_size_must_name_an_input_with_a_maximum(tmp_path: Path) -> None:
    paged = GOOD + "  pagination: {items: results, next: next, page_size: size}\n"
    problems = validate_text(paged, tmp_path)
    assert len(problems) == 1 and "/request/pagination/page_size: names input 'size'" in problems[0]
    sized = paged.replace(
        "    name: {type: string, description: Who}",
        "    name: {type: string, description: Who}\n    size: {type: integer, maximum: 30}",
    )
    assert validate_text(sized, tmp_path) == []


def test_input_must_be_a_valid_json_schema(tmp_path: Path) -> None:
    problems = validate_text(
        GOOD.replace("{type: string, description: Who}", "{type: strin, description: Who}"), tmp_path
    )
    assert any("/input/properties/name/type: not a valid JSON Schema" in p for p in problems)


def test_action_needs_request_or_handler_not_both(tmp_path: Path) -> None:
    problems = validate_text(GOOD + "handler: acme.ping\n", tmp_path)
    assert problems and all("/:" in p or "/ " in p or ": /" in p for p in problems)


def test_unknown_resource_ref_is_reported(tmp_path: Path) -> None:
    text = GOOD.replace("output:\n  type: object", "output:\n  $ref: 'resource:nope'\n  type: object")
    problems = validate_text(text, tmp_path)
    assert problems == [f"{tmp_path / 'm.yaml'}:1: /: unknown resource schema 'nope'"]


def test_resource_refs_are_inlined() -> None:
    resources_ = {
        "key": {"type": "string", "pattern": "^x$"},
        "thing": {"type": "object", "properties": {"key": {"$ref": "resource:key"}}},
    }
    out = manifests.inline_refs({"$ref": "resource:thing", "description": "d"}, resources_)
    assert out == {
        "type": "object",
        "description": "d",
        "properties": {"key": {"type": "string", "pattern": "^x$"}},
    }
    with pytest.raises(KeyError):
        manifests.inline_refs({"$ref": "resource:loop"}, {"loop": {"$ref": "resource:loop"}})
