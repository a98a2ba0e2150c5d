"""Property and fuzz tests: YAML loading, expressions and the webhook receiver.

Whatever the input, each either succeeds or fails with its one expected error type,
within its bounds; nothing else escapes. Bounded for CI: the default profile runs a
fixed (derandomized) set of examples in a few seconds; ``HYPOTHESIS_PROFILE=explore``
runs many more, randomly, for a local hunt.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from connector.limits import MAX_ALIAS_NODES, MAX_DEPTH
from connector.state.store import StateStore
from connector.triggers.receiver import MAX_BODY, Inbox, signature
from connector.workflows import expressions
from connector.workflows.expressions import ExpressionError
from connector.yamlio import YamlError, load_text

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,  # the machine is shared: speed is measured in benchmarks/, not here
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "explore",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# --------------------------------------------------------------------------- data

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


# --------------------------------------------------------------------------- YAML


@given(st.text(max_size=400))
def test_yaml_any_text_loads_or_is_a_yaml_error(text: str) -> None:
    try:
        doc = load_text(text, "f.yaml")
    except YamlError as exc:
        assert str(exc).startswith("f.yaml:") and "\n" not in str(exc)
        return
    for ptr in doc.lines:
        assert doc.line_of(ptr) >= 1


yaml_tokens = st.sampled_from(
    [
        "a: ",
        "- ",
        "[",
        "]",
        "{",
        "}",
        ", ",
        ": ",
        "\n",
        "  ",
        "&x ",
        "*x",
        "&y ",
        "*y",
        "!!python/object/apply:os.system ",
        "!!binary ",
        "!!timestamp ",
        "2001-13-45",
        "9" * 30,
        "<<: *x",
        "? ",
        "'q'",
        '"\\ud800"',
        "---\n",
        "null",
        "~",
        ".nan",
        "|\n  text",
    ]
)


@given(st.lists(yaml_tokens, max_size=40).map("".join))
def test_yaml_hostile_token_soup_loads_or_is_a_yaml_error(text: str) -> None:
    try:
        doc = load_text(text, "soup.yaml")
    except YamlError:
        return
    json.dumps(doc.data, default=str)  # whatever loaded is finite data: it serializes


@given(json_like)
def test_yaml_round_trips_json_like_data(data: Any) -> None:
    assume(depth(data) < MAX_DEPTH)
    assert load_text(yaml.safe_dump(data), "rt.yaml").data == data


@given(st.integers(1, 12), st.integers(1, 12))
def test_yaml_alias_expansion_is_bounded(levels: int, width: int) -> None:
    lines = ["l0: &l0 [" + ",".join(["x"] * width) + "]"]
    lines += [f"l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * width) + "]" for n in range(1, levels)]
    size, added = 1 + width, 0  # nodes under l0; nodes the aliases add, counted as the loader does
    for _ in range(1, levels):
        added += width * size
        size = 1 + width * size
    started = time.monotonic()
    try:
        load_text("\n".join(lines), "b.yaml")
        assert added <= MAX_ALIAS_NODES
    except YamlError as exc:
        assert added > MAX_ALIAS_NODES and "alias" in str(exc)
    assert time.monotonic() - started < 30  # a bomb is refused, not expanded


@given(st.integers(1, 300))
def test_yaml_nesting_is_bounded(n: int) -> None:
    try:
        doc = load_text("[" * n + "]" * n, "d.yaml")
        assert depth(doc.data) == n <= MAX_DEPTH
    except YamlError as exc:
        assert n > MAX_DEPTH and "nest" in str(exc)


# --------------------------------------------------------------------------- expressions

atoms = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.sampled_from(["0", "1", "2", "10", "-1", "1000000000", "2.5", "1e308"]),
    st.text(alphabet="ab%{}.*09sdf\\'", max_size=12).map(lambda s: repr(s)),
    st.sampled_from(
        [
            "inputs.rows",
            "inputs.text",
            "inputs.n",
            "item",
            "[1, 2, 3]",
            "{'a': 1}",
            "none",
            "true",
            "inputs.__class__",
            "inputs.rows.__len__",
            "''.join",
            "'x'.center",
            "(1).to_bytes",
        ]
    ),
)
operators = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "~", "==", "<", "and", "or", "in"])
filters = st.sampled_from(
    [
        "length",
        "join(',')",
        "center(1000000)",
        "format(1)",
        "indent(5)",
        "replace('a', 'bbbb')",
        "batch(3)",
        "slice(4)",
        "sum",
        "tojson",
        "list",
        "string",
        "upper",
        "first",
        "default(0)",
        "int",
        "wordwrap(3)",
        "reverse",
    ]
)


@st.composite
def expression(draw: st.DrawFn, depth: int = 3) -> str:
    if depth == 0 or draw(st.booleans()):
        return draw(atoms)
    kind = draw(st.sampled_from(["binop", "filter", "call", "paren", "index"]))
    if kind == "binop":
        return f"{draw(expression(depth - 1))} {draw(operators)} {draw(expression(depth - 1))}"
    if kind == "filter":
        return f"({draw(expression(depth - 1))}) | {draw(filters)}"
    if kind == "call":
        return f"({draw(expression(depth - 1))})({draw(expression(depth - 1))})"
    if kind == "index":
        return f"({draw(expression(depth - 1))})[{draw(expression(depth - 1))}]"
    return f"({draw(expression(depth - 1))})"


SCOPE = {"inputs": {"rows": list(range(50)), "text": "abc " * 50, "n": 7}, "item": {"email": "a@b.c"}}


@given(expression())
def test_expressions_evaluate_or_fail_with_an_expression_error(expr: str) -> None:
    for text in (
        f"{{{{ {expr} }}}}",
        f"x {{{{ {expr} }}}} y",
        f"{{% for r in inputs.rows %}}{{{{ {expr} }}}}{{% endfor %}}",
    ):
        try:
            value = expressions.evaluate(text, SCOPE)
        except ExpressionError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 1000
            continue
        assert _size(value) <= expressions.MAX_SIZE
        assert not isinstance(value, int) or value.bit_length() <= 2 * expressions.MAX_INT_BITS


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict)) else 0


@given(st.text(max_size=200))
def test_any_text_as_a_template(text: str) -> None:
    try:
        out = expressions.evaluate(text, SCOPE)
    except ExpressionError:
        return
    assert out == text or expressions.is_expression(text)


@given(st.sampled_from(["__class__", "__globals__", "__init__", "mro", "__subclasses__", "func_globals"]))
def test_nothing_but_data_is_reachable(attr: str) -> None:
    for text in (f"{{{{ inputs.{attr} }}}}", f"{{{{ ''.{attr} }}}}", f"{{{{ inputs.rows.{attr}.{attr} }}}}"):
        with pytest.raises(ExpressionError):
            value = expressions.evaluate(text, SCOPE)
            # an undefined attribute is an error (StrictUndefined); anything else must be data
            assert isinstance(value, (str, int, float, list, dict, type(None))), value


# --------------------------------------------------------------------------- the receiver

_STATE = Path(tempfile.mkdtemp(prefix="willo-fuzz-"))
_INBOX = Inbox(StateStore(_STATE / "plain"))
SECRET = "fuzz-secret-0123456789"
_SIGNED = Inbox(StateStore(_STATE / "signed"), secret=SECRET)

bodies = st.one_of(
    st.binary(max_size=300),
    json_like.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "event": st.sampled_from(["new_response", "stage_change", "nope", 5]),
            "id": st.one_of(st.text(max_size=300), st.integers()),
            "data": json_like,
        }
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(0, 5000).map(lambda n: b'{"event":"new_score","data":' + b"[" * n + b"]" * n + b"}"),
)
header_values = st.one_of(
    st.text(max_size=80), st.sampled_from(["", "nan", "inf", "-1", "1e308", str(time.time())])
)


@given(
    bodies,
    st.dictionaries(
        st.sampled_from(["X-Willo-Delivery", "X-Willo-Timestamp", "X-Willo-Signature"]), header_values
    ),
)
def test_any_delivery_gets_a_verdict(body: bytes, headers: dict[str, str]) -> None:
    for inbox in (_INBOX, _SIGNED):
        verdict = inbox.accept(headers, body)
        assert verdict.status in (200, 202, 400, 401, 413), verdict
        json.dumps(verdict.body)
        if inbox is _SIGNED and verdict.status in (200, 202):
            assert hmac.compare_digest(  # only a correctly signed delivery gets in
                headers.get("X-Willo-Signature", "").strip(),
                signature(SECRET, headers["X-Willo-Timestamp"], body)
                if headers.get("X-Willo-Timestamp")
                else "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
            )


@given(json_like, st.text(min_size=1, max_size=300))
def test_a_well_formed_signed_delivery_is_accepted_once(data: Any, event_id: str) -> None:
    body = json.dumps({"id": event_id, "event": "new_comment", "data": {"x": data}}).encode()
    assume(len(body) <= MAX_BODY and depth(data) < MAX_DEPTH - 3)
    ts = str(int(time.time()))
    headers = {"X-Willo-Timestamp": ts, "X-Willo-Signature": signature(SECRET, ts, body)}
    first = _SIGNED.accept(headers, body)
    again = _SIGNED.accept(headers, body)
    assert first.status in (200, 202) and again.status == 200, (first, again)
