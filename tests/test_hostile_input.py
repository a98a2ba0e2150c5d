"""Issue 9, items 11, 12, 16 and 17: bombs and bad input get a one-line error, quickly.

The bombs that hung or ate gigabytes run here as real subprocesses with a time limit
and an address-space cap, so that a regression fails the test instead of the machine.
"""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.catalog import plugins
from connector.cli import main
from connector.workflows import expressions
from connector.workflows.expressions import ExpressionError
from tests.conftest import EXAMPLES, script, script_env
from tests.test_hostile_secrets import alias_bomb
from tests.test_plugins import ACTION_YAML, make_plugin


def invoke(*args: str, **env: str):
    return CliRunner().invoke(main, list(args), env=env or None)


def assert_one_line_error(result, *needles: str, code: int = 1) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert "Traceback" not in result.output and "internal error" not in err, err
    assert len(err.splitlines()) == 1, err[:2000]
    assert err.startswith("error: "), err[:2000]
    for needle in needles:
        assert needle in err, err
    return err


def assert_validate_problem(result, *needles: str) -> str:
    """``validate`` prints its problems as ``FILE:LINE: ...`` lines (no ``error:``)."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert "Traceback" not in result.output and "internal error" not in err, err
    assert len(err.splitlines()) == 1, err[:2000]
    for needle in needles:
        assert needle in err, err
    return err


def _cap_memory() -> None:  # runs in the child: 2 GiB of address space at most
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def run_script(args: list[str], tmp_path: Path, timeout: float = 60, **env: str):
    return subprocess.run(
        [*script(), *args],
        env=script_env(XDG_CACHE_HOME=str(tmp_path / "cache"), WILLO_STATE_DIR=str(tmp_path / "st"), **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_cap_memory,
    )


def workflow(tmp_path: Path, body: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


PLAIN = "workflow: 1\nname: plain\nsteps:\n  - id: d\n    use: willo.list_departments\n"


# --------------------------------------------------------------------------- 9.11 alias bombs


def test_validate_refuses_an_alias_bomb(tmp_path: Path) -> None:
    wf = workflow(tmp_path, "workflow: 1\nname: bomb\n" + alias_bomb(levels=6) + "steps: []\n")
    err = assert_validate_problem(invoke("validate", str(wf)), str(wf), "alias")
    assert len(err) < 300


def test_the_432_byte_bomb_of_the_issue_as_a_subprocess(tmp_path: Path) -> None:
    wf = workflow(tmp_path, "workflow: 1\nname: bomb\n" + alias_bomb(levels=9) + "steps: []\n")
    assert len(wf.read_bytes()) < 500
    out = run_script(["validate", str(wf)], tmp_path, timeout=60)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "alias" in out.stderr, out.stderr


@pytest.mark.parametrize("where", ["workflow", "input-file", "event", "input-at"])
def test_every_yaml_path_refuses_an_alias_bomb(tmp_path: Path, where: str) -> None:
    bomb = workflow(tmp_path, alias_bomb(levels=6), "bomb.yaml")
    if where == "workflow":
        wf = workflow(tmp_path, PLAIN + "x: &x 1\n" + alias_bomb(levels=6))
        args = ["run", str(wf), "--dry-run"]
    elif where == "input-file":
        args = ["run", str(workflow(tmp_path, PLAIN)), "--dry-run", "--input-file", str(bomb)]
    elif where == "event":
        args = ["run", str(EXAMPLES / "review_on_response.yaml"), "--dry-run", "--event", str(bomb)]
    else:
        args = ["run", str(workflow(tmp_path, PLAIN)), "--dry-run", "-i", f"rows=@{bomb}"]
    assert_one_line_error(invoke(*args), "bomb.yaml" if where != "workflow" else "wf.yaml", "alias")


def test_aliases_of_a_sane_size_still_work(tmp_path: Path) -> None:
    wf = workflow(
        tmp_path,
        "workflow: 1\nname: anchors\nsteps:\n"
        "  - id: a\n    use: willo.create_department\n    with: &dept {name: Sales}\n"
        "  - id: b\n    use: willo.create_department\n    with: *dept\n",
    )
    r = invoke("run", str(wf), "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    assert [s["requests"][0]["json"] for s in json.loads(r.stdout)["steps"]] == [{"name": "Sales"}] * 2


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a: &a [*a]\n", "recursive"),
        ("a: &a {b: *a}\n", "recursive"),
        ("when: 2001-13-45\n", ":2:"),
        (f"big: {'9' * 5000}\n", ":2:"),
        ("deep: " + "[" * 150 + "]" * 150 + "\n", "deeper than 100"),
        ("deep: " + "[" * 5000 + "]" * 5000 + "\n", "nest"),
    ],
)
def test_bad_yaml_values_are_one_line_errors(tmp_path: Path, text: str, needle: str) -> None:
    wf = workflow(tmp_path, "workflow: 1\n" + text)
    assert_validate_problem(invoke("validate", str(wf)), str(wf), needle)
    assert_one_line_error(invoke("run", str(wf), "--dry-run"), str(wf), needle)


# --------------------------------------------------------------------------- 9.12 expressions

BOMBS = [
    "{{ 10 ** (10 ** 9) }}",
    "{{ '%.1000000000f' | format(1) }}",
]


@pytest.mark.parametrize("expr", BOMBS)
def test_the_expression_bombs_of_the_issue_fail_fast_in_a_dry_run(tmp_path: Path, expr: str) -> None:
    wf = workflow(
        tmp_path,
        "workflow: 1\nname: bomb\nsteps:\n  - id: d\n    use: willo.create_department\n"
        f'    with: {{name: "{expr}"}}\n',
    )
    out = run_script(["run", str(wf), "--dry-run"], tmp_path, timeout=60)
    assert out.returncode == 1, out.stderr
    assert out.stderr.count("\n") == 1 and "limit" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("expr", BOMBS)
def test_validate_flags_constant_bombs_statically(tmp_path: Path, expr: str) -> None:
    wf = workflow(
        tmp_path,
        "workflow: 1\nname: bomb\nsteps:\n  - id: d\n    use: willo.create_department\n"
        f'    with: {{name: "{expr}"}}\n',
    )
    r = invoke("validate", str(wf))
    assert r.exit_code == 1
    assert f"{wf}:6: /steps/0/with/name: step d:" in r.stderr and "limit" in r.stderr, r.stderr


@pytest.mark.parametrize(
    "text",
    [
        "{{ 7 ** 100000 }}",
        "{{ 'ab' * 1000000000 }}",
        "{{ [0] * 1000000000 }}",
        "{{ 1000000000 * 'ab' }}",
        "{{ '%1000000000d' % 1 }}",
        "{{ '%*d' % (1000000000, 1) }}",
        "{{ 'x' | center(1000000000) }}",
        "{{ 'x'.center(1000000000) }}",
        "{{ 'x'.ljust(1000000000) }}",
        "{{ 'x'.zfill(1000000000) }}",
        "{{ '\t'.expandtabs(1000000000) }}",
        "{{ (1).to_bytes(1000000000, 'big') }}",
        "{{ '{:>1000000000}'.format(1) }}",
        "{{ '{:>{w}}'.format(1, w=1000000000) }}",
        "{{ 'x\ny' | indent(1000000000) }}",
        "{{ [1] | batch(1000000000, 0) | list }}",
        "{{ [1] | slice(1000000000) | list }}",
        "{{ ('a' * 1000) | replace('a', 'b' * 100000) }}",
        "{{ ('x' * 1000) | wordwrap(1, wrapstring='y' * 100000) }}",
        "{{ (['x' * 100000] * 9) | join('y' * 100000) }}",
        "{% set a = 'a' * 1000 %}{% for i in inputs.rows %}{{ a }}{% endfor %}",
        "{% set a = 'aa' %}" + "{% set a = a ~ a %}" * 40 + "{{ a | length }}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
        "{% for a in inputs.rows %}{% for b in inputs.rows %}{% for c in inputs.rows %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        "{{ inputs.rows | map('string') | join(',') * 100000 }}",
        "{{ [" + ", ".join(["inputs.rows * 500"] * 11) + "] | length }}",
        "{% for r in inputs.rows %}{% set x = inputs.rows * 500 %}{% endfor %}",
    ],
)
def test_expression_limits(text: str) -> None:
    scope = {"inputs": {"rows": list(range(2000))}}
    with pytest.raises(ExpressionError, match="limit"):
        expressions.evaluate(text, scope)


def test_expressions_within_the_limits_still_work() -> None:
    scope = {"inputs": {"rows": [{"email": f"u{i}@example.com"} for i in range(5000)]}}
    assert expressions.evaluate("{{ 2 ** 1000 }}", {}) == 2**1000
    assert expressions.evaluate("{{ '%05.1f' | format(3.14159) }}", {}) == "003.1"
    assert expressions.evaluate("{{ '{:>6}'.format('ab') }}", {}) == "    ab"
    assert expressions.evaluate("{{ 'ab' * 3 }}", {}) == "ababab"
    assert len(expressions.evaluate("{{ inputs.rows | map(attribute='email') | join(',') }}", scope)) > 1000
    text = "{% for r in inputs.rows %}{{ r.email }};{% endfor %}"
    assert expressions.evaluate(text, scope).count(";") == 5000
    assert expressions.evaluate("{{ inputs.rows }}", scope) is scope["inputs"]["rows"]


def test_evaluation_time_is_bounded(monkeypatch) -> None:
    ticks = iter(range(0, 10**9, 1))  # a clock that moves a second per reading
    from connector.workflows import bounds  # where the budget reads its clock

    monkeypatch.setattr(bounds, "_clock", lambda: float(next(ticks)))
    scope = {"inputs": {"rows": list(range(100))}}
    with pytest.raises(ExpressionError, match="time limit"):
        expressions.evaluate("{% for a in inputs.rows %}{{ a }}{% endfor %}", scope)


def test_a_lone_surrogate_in_an_expression_is_a_one_line_error(tmp_path: Path) -> None:
    wf = workflow(
        tmp_path,
        "workflow: 1\nname: sur\nsteps:\n  - id: d\n    use: willo.create_department\n"
        "    with: {name: '{{ \"\\ud800\" }}'}\n",
    )
    for args in (["run", str(wf), "--dry-run", "--json"], ["run", str(wf), "--dry-run"]):
        r = invoke(*args)
        assert r.exit_code == 1, r.output
        assert "surrogate" in r.output and "internal error" not in r.output


def test_a_lone_surrogate_in_the_data_is_a_one_line_error_and_json_output_survives_one(
    tmp_path: Path, capsys
) -> None:
    data = tmp_path / "v.json"
    data.write_text('"\\ud800x"')
    r = invoke("call", "willo.create_department", "--dry-run", "--json", "-i", f"name=@{data}")
    assert_one_line_error(r, "surrogate")
    from connector.cli.common import emit_json

    emit_json({"name": "\ud800x", "ok": "é"})  # e.g. a server's answer
    assert json.loads(capsys.readouterr().out) == {"name": "\ud800x", "ok": "é"}


# --------------------------------------------------------------------------- 9.16 $ref in a plugin

REF_MODULE = """
from pathlib import Path
from connector import hookimpl

@hookimpl
def manifest_paths():
    return [Path(__file__).parent]
"""


@pytest.mark.parametrize("where", ["output", "input"])
def test_a_plugin_manifest_with_an_unresolvable_ref_is_isolated(
    tmp_path: Path, where: str, sandbox, monkeypatch
) -> None:
    text = ACTION_YAML.format(id="acme.refs", tail="request: {method: GET, path: /departments/}")
    if where == "output":
        text = text.replace("count: {type: integer", "count: {$ref: '#/$defs/nowhere'")
    else:
        text = text.replace("properties: {}}", "properties: {x: {$ref: 'https://example.com/s.json'}}}")
    ep = make_plugin(tmp_path, f"refplugin{where}", REF_MODULE, {"refs.yaml": text})
    plugins.set_host(plugins.build_host([ep]))
    r = invoke("plugins")
    assert r.exit_code == 1, r.output  # the listing in full, and a rejected manifest fails it
    assert "refs.yaml" in r.output and "$ref" in r.output
    assert invoke("actions").exit_code == 0
    r = invoke("call", "willo.list_departments", "--json")
    assert r.exit_code == 0, r.output
    assert_one_line_error(invoke("call", "acme.refs"), "acme.refs")
    monkeypatch.setenv("WILLO_CONNECTOR_STRICT_PLUGINS", "1")
    plugins.set_host(plugins.build_host([ep]))
    assert_one_line_error(invoke("actions"), "$ref")


# --------------------------------------------------------------------------- 9.17 one-line errors


def test_a_step_id_that_is_a_list(tmp_path: Path) -> None:
    wf = workflow(tmp_path, "workflow: 1\nname: x\nsteps:\n  - id: []\n    use: willo.list_departments\n")
    r = invoke("validate", str(wf))
    assert r.exit_code == 1 and "/steps/0/id" in r.stderr and "internal error" not in r.stderr
    assert_one_line_error(invoke("run", str(wf), "--dry-run"), "/steps/0/id")


@pytest.mark.parametrize("ref", ["#/$defs/nowhere", "https://example.com/schema.json", "other.json"])
def test_an_unresolvable_ref_in_workflow_inputs(tmp_path: Path, ref: str) -> None:
    wf = workflow(
        tmp_path,
        "workflow: 1\nname: x\ninputs:\n  type: object\n  properties:\n"
        f"    n: {{$ref: '{ref}'}}\nsteps:\n  - id: d\n    use: willo.list_departments\n",
    )
    r = invoke("validate", str(wf))
    assert r.exit_code == 1 and "/inputs/properties/n" in r.stderr and "$ref" in r.stderr, r.stderr
    assert_one_line_error(invoke("run", str(wf), "--dry-run", "-i", "n=1"), "$ref")


def test_a_non_utf8_text_input(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_bytes(b"caf\xe9\xff")
    assert_one_line_error(
        invoke("run", str(workflow(tmp_path, PLAIN)), "--dry-run", "-i", f"t=@{f}"), "x.txt"
    )


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_deeply_nested_input_files(tmp_path: Path, suffix: str) -> None:
    f = tmp_path / f"deep{suffix}"
    f.write_text("[" * 100_000 + "]" * 100_000)
    wf = str(workflow(tmp_path, PLAIN))
    assert_one_line_error(invoke("run", wf, "--dry-run", "-i", f"t=@{f}"), f.name, "nest")
    assert_one_line_error(invoke("run", wf, "--dry-run", "--input-file", str(f)), f.name, "nest")


def test_deeply_nested_json_on_the_command_line(tmp_path: Path) -> None:
    deep = "[" * 5000 + "]" * 5000
    wf = str(workflow(tmp_path, PLAIN))
    assert_one_line_error(invoke("run", wf, "--dry-run", "-i", f"t={deep}"), "nest")
    assert_one_line_error(invoke("call", "willo.list_departments", "--dry-run", "--input-json", deep), "nest")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc"])
def test_bad_timeouts(value: str) -> None:
    r = invoke("call", "willo.list_departments", WILLO_TIMEOUT=value, WILLO_API_KEY="k" * 20)
    assert_one_line_error(r, "WILLO_TIMEOUT")


def test_a_bad_seen_window(sandbox) -> None:
    r = invoke("poll", "willo.new_interview", "--once", WILLO_SEEN_WINDOW_DAYS="abc")
    assert_one_line_error(r, "WILLO_SEEN_WINDOW_DAYS")


def test_errors_quote_only_a_short_prefix_of_a_huge_value(tmp_path: Path) -> None:
    csv = tmp_path / "big.csv"
    csv.write_text("email\n" + "".join(f"user{i}@example.com\n" for i in range(50_000)))
    wf = workflow(
        tmp_path,
        "workflow: 1\nname: x\ninputs:\n  type: object\n  properties:\n"
        "    rows: {type: array, maxItems: 10}\n    one: {type: string}\n"
        "steps:\n  - id: d\n    use: willo.list_departments\n",
    )
    r = invoke("run", str(wf), "--dry-run", "-i", f"rows=@{csv}")
    err = assert_one_line_error(r, "/rows")
    assert len(err) < 500
    r = invoke("run", str(wf), "--dry-run", "-i", "one=@" + str(csv))
    assert r.exit_code == 0 or len(r.stderr) < 500
    huge = "x" * 200_000
    r = invoke("call", "willo.create_department", "--dry-run", "-i", f"name={huge}", "-i", f"nope={huge}")
    assert r.exit_code == 1 and len(r.stderr) < 500, len(r.stderr)
    r = invoke("call", "willo.get_interview", "--dry-run", "-i", f"interview={{{{ {huge} }}}}")
    assert len(r.stderr) < 500


def test_an_unknown_huge_id_is_quoted_short() -> None:
    r = invoke("call", "willo." + "x" * 100_000)
    err = assert_one_line_error(r, "unknown action 'willo.xxx")
    assert len(err) < 200


def test_dry_run_shows_the_query_as_it_is_sent() -> None:
    r = invoke("call", "willo.list_interviews", "--dry-run", "-i", "search=a b&c=d/é")
    assert r.exit_code == 0, r.output
    line = r.stdout.splitlines()[0]
    assert line.startswith("GET https://api.willotalent.com/api/integrations/v2/interviews/?")
    assert "search=a+b%26c%3Dd%2F%C3%A9" in line, line
