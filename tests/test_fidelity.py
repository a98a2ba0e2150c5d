"""Fidelity to Django REST framework (issue 18): what DRF decides, and how the connector
copes with it. Each test names its item; ``target`` runs a test against the sandbox and
against the real DRF app (``tests/drf_app``) alike."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from connector.catalog.index import get_catalog
from connector.catalog.schemas import validator
from connector.cli import main
from connector.http.client import Settings
from connector.sandbox.seed import stable
from connector.workflows.runtime import Connector
from tests.conftest import EXAMPLES

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
