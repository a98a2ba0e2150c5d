"""vcrpy cassettes: replaying recorded Willo traffic offline, and recording it.

Requests match on method, the path below ``/api/integrations/v2``, the query and the
JSON body, not on the host: a cassette recorded against the sandbox (on whatever
port) or against Willo replays with any base URL. ``Authorization`` and every other
credential header are filtered out when recording.

A cassette is data: it is read with the bounded safe loader of :mod:`connector.yamlio`
(vcrpy's own serializer uses PyYAML's unsafe loader, so a cassette could run code)
and written with PyYAML's safe dumper.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from connector import redaction
from connector.errors import ConnectorError, short

FILTERED_HEADERS = [
    ("authorization", "REDACTED"),
    ("x-api-key", "REDACTED"),
    ("cookie", None),
    ("set-cookie", None),
]
API_MARK = "/api/integrations/v2"


class CassetteError(ConnectorError):
    """A cassette is missing, unreadable, or lacks a request the run made."""


class _NotACassette(ValueError):
    """Raised by the serializer; :func:`replay` names the file."""


def _check_shape(data: Any) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("interactions"), list):
        raise _NotACassette("not a vcrpy cassette (expected a mapping with an interactions list)")
    for i, it in enumerate(data["interactions"]):
        req = it.get("request") if isinstance(it, dict) else None
        resp = it.get("response") if isinstance(it, dict) else None
        ok = (
            isinstance(req, dict)
            and isinstance(req.get("method"), str)
            and isinstance(req.get("uri"), str)
            and isinstance(req.get("headers", {}), dict)
            and isinstance(resp, dict)
            and isinstance(resp.get("status"), dict)
            and isinstance(resp["status"].get("code"), int)
            and isinstance(resp.get("headers", {}), dict)
            and isinstance(resp.get("body", {}), dict)
        )
        if not ok:
            raise _NotACassette(f"/interactions/{i}: not a request and response as vcrpy records them")


class SafeYamlSerializer:
    """A vcrpy serializer: safe, bounded YAML in; PyYAML's safe dumper out."""

    @staticmethod
    def deserialize(cassette_string: str) -> Any:
        from connector.yamlio import YamlError, load_text

        try:
            data = load_text(cassette_string, "").data  # the error reads ":LINE: ...": replay adds the file
        except YamlError as exc:
            raise _NotACassette(str(exc)) from None
        _check_shape(data)
        return data

    @staticmethod
    def serialize(cassette_dict: Any) -> str:
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        return yaml.dump(cassette_dict, Dumper=dumper)


def _path(r: Any) -> str:
    path = urlsplit(r.uri).path
    i = path.find(API_MARK)
    return path[i + len(API_MARK) :] if i >= 0 else path


def _body(r: Any) -> Any:
    raw = r.body
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        return raw


def match_api_path(r1: Any, r2: Any) -> None:
    if _path(r1) != _path(r2):
        raise AssertionError(f"{_path(r1)} != {_path(r2)}")


def match_query(r1: Any, r2: Any) -> None:
    q1 = sorted(parse_qsl(urlsplit(r1.uri).query))
    q2 = sorted(parse_qsl(urlsplit(r2.uri).query))
    if q1 != q2:
        raise AssertionError(f"{q1} != {q2}")


def match_json_body(r1: Any, r2: Any) -> None:
    if _body(r1) != _body(r2):
        raise AssertionError("bodies differ")


def _scrubber(secrets: list[str]) -> Any:
    """A vcrpy hook that replaces every secret in a request or response with REDACTED."""
    secrets = [s for s in secrets if s]

    def scrub_text(value: Any) -> Any:
        if isinstance(value, bytes):
            for s in secrets:
                value = value.replace(s.encode(), b"REDACTED")
        elif isinstance(value, str):
            for s in secrets:
                value = value.replace(s, "REDACTED")
        return value

    def request(r: Any) -> Any:
        r.uri = scrub_text(r.uri)
        r.body = scrub_text(r.body)
        return r

    def response(resp: dict[str, Any]) -> dict[str, Any]:
        body = resp.get("body") or {}
        if "string" in body:
            body["string"] = scrub_text(body["string"])
        return resp

    return request, response


def make_vcr(record_mode: str = "none", secrets: list[str] | None = None) -> Any:
    import vcr

    scrub_request, scrub_response = _scrubber(list(secrets or []))
    v = vcr.VCR(
        before_record_request=scrub_request,
        before_record_response=scrub_response,
        record_mode=record_mode,
        filter_headers=FILTERED_HEADERS,
        match_on=["method", "api_path", "query", "json_body"],
        decode_compressed_response=True,
        serializer="safe_yaml",
    )
    v.register_serializer("safe_yaml", SafeYamlSerializer)
    v.register_matcher("api_path", match_api_path)
    v.register_matcher("query", match_query)
    v.register_matcher("json_body", match_json_body)
    return v


@contextlib.contextmanager
def replay(path: str | Path) -> Iterator[Any]:
    """Answer every HTTP request from the cassette at ``path``; send nothing."""
    from vcr.errors import CannotOverwriteExistingCassetteException

    p = Path(path)
    if not p.is_file():
        raise CassetteError(f"{p}: no such cassette")
    try:
        p.read_text(encoding="utf-8")  # vcrpy would take an undecodable file as an empty one
    except (OSError, UnicodeDecodeError) as exc:
        raise CassetteError(f"{p}: cannot read the cassette: {exc}") from None
    with contextlib.ExitStack() as stack:
        try:
            cassette = stack.enter_context(make_vcr("none").use_cassette(str(p)))
        except _NotACassette as exc:
            sep = "" if str(exc).startswith(":") else ": "
            raise CassetteError(f"{p}{sep}{exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            reason = f"{type(exc).__name__}: {short(str(exc))}"
            raise CassetteError(f"{p}: not a valid cassette ({reason})") from None
        try:
            yield cassette
        except CannotOverwriteExistingCassetteException as exc:
            first = str(exc).splitlines()[0] if str(exc) else "a request"
            raise CassetteError(f"{p}: the run made a request the cassette does not hold ({first})") from None


#: pytest-recording's record modes: vcrpy's four, and ``rewrite`` (delete, then ``all``)
RECORD_MODES = ("none", "once", "new_episodes", "all", "rewrite")


@contextlib.contextmanager
def record(path: str | Path, mode: str = "all", secrets: list[str] | None = None) -> Iterator[Any]:
    """Record every request into ``path``; ``secrets`` (the API key, the webhook secret,
    and ``WILLO_API_KEY`` always) are scrubbed from URLs and bodies too. ``mode`` is one
    of :data:`RECORD_MODES`."""
    if mode not in RECORD_MODES:
        raise CassetteError(f"record mode {mode!r}: use one of {', '.join(RECORD_MODES)}")
    if mode == "rewrite":
        Path(path).unlink(missing_ok=True)
        mode = "all"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    known = [
        *(secrets or []),
        *redaction.secrets(),
        os.environ.get("WILLO_API_KEY", ""),
        os.environ.get("WILLO_WEBHOOK_SECRET", ""),
    ]
    with make_vcr(mode, known).use_cassette(str(path)) as cassette:
        yield cassette
