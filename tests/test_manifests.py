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


# ---------------------------------------------------------------------- proofs of validity (issue 16.6)


def _mutants(rng, value, schema, depth=0):
    """Values near ``value``: retyped, out of bounds, with fields gone or unknown."""
    pool = [
        None,
        True,
        False,
        0,
        1,
        -1,
        2.5,
        1.0,
        31,
        10**6,
        "",
        "x",
        "a@b",
        "no-at",
        "2026-01-01T00:00:00Z",
        "https://x.example/a",
        "not a uri",
        "0" * 32,
        "+447700900123",
        [],
        ["x"],
        [1, "a"],
        {},
        {"k": 1},
    ]
    yield rng.choice(pool)
    if isinstance(value, dict) and depth < 3:
        props = (schema or {}).get("properties") or {}
        out = dict(value)
        for name in rng.sample(sorted(props), min(len(props), rng.randint(0, 3))):
            out[name] = next(_mutants(rng, out.get(name), props[name], depth + 1))
        if out and rng.random() < 0.2:
            del out[rng.choice(sorted(out))]
        if rng.random() < 0.1:
            out["unknown"] = 1
        yield out
    if isinstance(value, list) and value:
        yield [next(_mutants(rng, value[0], (schema or {}).get("items"), depth + 1)), *value[1:]]


def _sample(schema, rng):
    """A value that may satisfy ``schema`` (from its enums, types and bounds)."""
    if not isinstance(schema, dict):
        return None
    if "enum" in schema:
        return rng.choice(schema["enum"])
    kind = schema.get("type")
    kind = rng.choice(kind) if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        return {k: _sample(s, rng) for k, s in props.items() if k in required or rng.random() < 0.5}
    if kind == "array":
        return [_sample(schema.get("items"), rng) for _ in range(rng.randint(0, 2))]
    if kind == "integer":
        return rng.randint(schema.get("minimum", 1), schema.get("maximum", 5))
    if kind == "number":
        return 2.5
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    fmt = schema.get("format")
    return {"email": "a@example.com", "uri": "https://x.example/", "date-time": "2026-01-01T00:00:00Z"}.get(
        fmt, "0" * 32 if "pattern" in schema else "text"
    )


def test_a_proof_of_validity_never_passes_what_jsonschema_refuses() -> None:
    """Every manifest's input schema, with values near valid ones: whatever the proof
    passes, jsonschema passes too (the other way, the proof may give up)."""
    import random

    from connector.catalog.index import get_catalog

    rng = random.Random(16)
    proven = checked = 0
    for m in get_catalog().manifests.values():
        schema = m.data["input"]
        v = schemas.validator(schema)
        for _ in range(60):
            base = _sample(schema, rng)
            for value in [base, *_mutants(rng, base, schema)]:
                checked += 1
                if schemas.proves_valid(value, schema):
                    proven += 1
                    assert not list(v.iter_errors(value)), (m.id, value)
    assert checked > 5000 and proven > checked // 5  # the proof settles many, not only the trivial


def test_inputs_of_the_recorded_calls_are_proven_without_jsonschema() -> None:
    from connector.catalog.index import get_catalog

    inputs = json.loads((Path(__file__).resolve().parent.parent / "cassettes" / "inputs.json").read_text())
    catalog = get_catalog()
    proven = [a for a, given in inputs.items() if schemas.proves_valid(given, catalog.get(a).data["input"])]
    assert len(proven) >= 0.9 * len(inputs), sorted(set(inputs) - set(proven))


def test_format_libraries_load_on_first_use_and_check_as_jsonschema_does() -> None:
    import subprocess
    import sys

    values = [
        "https://x.example/a?b=c",
        "not a uri",
        "//x",
        "",
        "2026-01-01T10:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-01-01t10:00:00z",
        "10:00:00Z",
        "25:00:00Z",
        5,
    ]
    code = (
        "import sys, json\n"
        "{setup}\n"
        "from connector.catalog import schemas\n"
        "c = schemas.FORMAT_CHECKER\n"
        "def loaded(): return [m for m in ('rfc3986_validator', 'rfc3339_validator') if m in sys.modules]\n"
        "before = loaded()\n"
        "verdicts = [[c.conforms(v, f) for v in {values!r}] for f in ('uri', 'uri-reference', 'date-time', 'time')]\n"
        "print(json.dumps([before, loaded(), verdicts]))\n"
    )
    ours = subprocess.run(
        [sys.executable, "-c", code.format(setup="", values=values)],
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = subprocess.run(
        [sys.executable, "-c", code.format(setup="import jsonschema", values=values)],
        capture_output=True,
        text=True,
        check=True,
    )
    before, after, verdicts_ours = json.loads(ours.stdout)
    theirs_before, _, verdicts_theirs = json.loads(theirs.stdout)
    assert theirs_before == ["rfc3986_validator", "rfc3339_validator"]  # jsonschema's own import
    assert before == [] and after == ["rfc3986_validator", "rfc3339_validator"]  # ours: on first use
    assert verdicts_ours == verdicts_theirs and not all(verdicts_ours[0])


def test_a_comma_in_a_flow_mapping_is_an_unknown_keyword_with_its_line(tmp_path: Path) -> None:
    """`{enum: [a, b], description: Owner, Admin or Standard.}` silently splits into a key
    `Admin or Standard.`; the loader names it instead of shipping a broken schema."""
    text = GOOD.replace(
        "name: {type: string, description: Who}", "name: {type: string, description: Who, or what}"
    )
    assert validate_text(text, tmp_path) == [
        f"{tmp_path / 'm.yaml'}:11: /input/properties/name/or what: not a valid JSON Schema: unknown schema "
        "keyword 'or what' (custom keywords start with x-; in a YAML flow mapping, quote text that holds a comma)"
    ]


def test_extension_keywords_and_nested_subschemas_are_walked() -> None:
    schema = {
        "type": "object",
        "x-options": {"action": "a"},
        "properties": {"a": {"anyOf": [{"type": "string"}, {"typ": "null"}]}},
        "items": {"minimum": 1, "maximun": 3},
        "enum": [{"not-a-keyword": 1}],
    }
    assert sorted(ptr for ptr, _ in schemas.unknown_keywords(schema)) == [
        "/items/maximun",
        "/properties/a/anyOf/1/typ",
    ]


def test_every_shipped_schema_uses_only_known_keywords() -> None:
    from connector.catalog import index
    from connector.catalog.plugins import get_host

    cat = index.build(get_host(), index._plugin_files(get_host()))  # uncached: every check runs
    assert cat.problems == []
    for m in cat.manifests.values():
        assert schemas.unknown_keywords(m.input_schema) == [], m.id
        assert schemas.unknown_keywords(m.output_schema) == [], m.id


def test_the_date_time_check_answers_as_rfc3339_validator() -> None:
    """Its calendar check is remembered per date; every verdict must stay the library's."""
    import itertools

    from rfc3339_validator import validate_rfc3339

    from connector.catalog.schemas import _datetime

    parts = itertools.product(
        ["0000", "2024", "2026"], ["00", "01", "02", "04", "12", "13"], ["00", "01", "29", "30", "31", "32"],
        ["00:00:00", "23:59:59", "24:00:00", "10:00:60", "10:00:00.5"], ["Z", "z", "+01:00", "-23:59", ""],
    )  # fmt: skip
    values = [f"{y}-{m}-{d}T{t}{z}" for y, m, d, t, z in parts] + ["", "x", "2026-01-01 10:00:00Z"]
    assert [_datetime(v) for v in values] == [validate_rfc3339(v.upper()) for v in values]
    assert any(_datetime(v) for v in values) and not all(_datetime(v) for v in values)
