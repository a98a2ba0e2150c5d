"""``plugins verify``: a conforming plugin passes; each broken thing is reported, one
line each, with exit 1; the built-ins conform; ``plugins`` exits 1 on a failed load."""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.catalog import plugins
from connector.cli import main
from connector.errors import ConnectorError
from connector.kit import recording
from connector.kit.verify import verify
from tests.conftest import CASSETTES, fake_entry_points
from tests.test_plugins import make_plugin

COUNT = """\
manifest: 1
id: {ns}.count_interviews
kind: action
version: 1.0.0
title: Count interviews
description: How many interviews the account has.
input: {{type: object, additionalProperties: false, properties: {{}}}}
output:
  type: object
  required: [count]
  properties:
    count: {{type: integer, description: How many.}}
    next: {{type: [string, 'null']}}
    previous: {{type: [string, 'null']}}
    results: {{type: array}}
sample: {{count: 3, next: null, previous: null, results: []}}
request: {{method: GET, path: /interviews/, query: {{page_size: 1}}}}
"""
NEWEST = """\
manifest: 1
id: {ns}.newest_interview
kind: action
version: 1.0.0
title: Newest interview
description: The interview created last, among those whose title holds a word.
input:
  type: object
  additionalProperties: false
  properties:
    word: {{type: string, description: A word of the title.}}
output:
  type: object
  required: [key, title]
  properties:
    key: {{type: string, description: The interview.}}
    title: {{type: string, description: Its title.}}
sample: {{key: '22222222222222222222222222222222', title: Backend Engineer}}
handler: {ns}.newest_interview
"""
TRIGGER = """\
manifest: 1
id: {ns}.new_title
kind: trigger
version: 1.0.0
title: New interview title
description: An interview appeared (a poll handler reads every page).
input: {{type: object, additionalProperties: false, properties: {{}}}}
output:
  type: object
  required: [key, title, created_at]
  properties:
    key: {{type: string, description: The interview.}}
    title: {{type: string, description: Its title.}}
    created_at: {{type: string, description: When.}}
sample: {{key: abc, title: T, created_at: '2026-01-01T00:00:00Z'}}
strategy: polling
polling: {{handler: {ns}.titles, id: key, order: created_at}}
"""
MODULE = """
from pathlib import Path
from connector import hookimpl

@hookimpl
def manifest_paths():
    return [Path(__file__).parent]

def newest_interview(inputs, client):
    items = client.paginate("GET", "/interviews/", params={{"ordering": "-created_at"}})
    found = [i for i in items if inputs.get("word", "").lower() in i["title"].lower()]
    return {{"key": found[0]["key"], "title": found[0]["title"]}}

def titles(options, client, cursor):
    return [
        {{"key": i["key"], "title": i["title"], "created_at": i["created_at"]}}
        for i in client.paginate("GET", "/interviews/")
    ]

@hookimpl
def action_handlers():
    return {{"{ns}.newest_interview": newest_interview}}

@hookimpl
def poll_handlers():
    return {{"{ns}.titles": titles}}

@hookimpl
def template_filters():
    return {{"{ns}_shout": lambda s: str(s).upper()}}
"""
SCENARIOS = """\
scenarios: 1
{ns}.count_interviews: {{}}
{ns}.newest_interview:
  with: {{word: engineer}}
{ns}.new_title: {{}}
"""

Mutation = Callable[[dict[str, str]], None]


def build(tmp_path: Path, ns: str, mutate: Mutation | None = None) -> tuple[md.EntryPoint, Path]:
    """A plugin ``ns`` (files possibly broken by ``mutate``) and its cassettes folder."""
    files = {
        "module": MODULE.format(ns=ns),
        "count.yaml": COUNT.format(ns=ns),
        "newest.yaml": NEWEST.format(ns=ns),
        "trigger.yaml": TRIGGER.format(ns=ns),
        "scenarios": SCENARIOS.format(ns=ns),
    }
    if mutate:
        mutate(files)
    module = files.pop("module")
    tmp_path.mkdir(parents=True, exist_ok=True)
    cassettes = tmp_path / "cassettes"
    cassettes.mkdir()
    (cassettes / "scenarios.yaml").write_text(files.pop("scenarios"))
    return make_plugin(tmp_path, ns, module, files), cassettes


def test_a_conforming_plugin_passes_from_scenarios_and_from_cassettes(tmp_path: Path) -> None:
    ep, cassettes = build(tmp_path, "vgood")
    host = plugins.build_host([ep])
    report = verify("vgood", host=host, cassettes=cassettes)
    assert report.problems == [] and report.ok
    assert report.checked == [
        "vgood.count_interviews: ran its scenario against the sandbox (strict)",
        "vgood.new_title: ran its scenario against the sandbox (strict)",
        "vgood.newest_interview: ran its scenario against the sandbox (strict)",
    ]
    with recording.target(sandbox=True, host=host) as t:
        recording.record_scenarios(t, cassettes / "scenarios.yaml", cassettes)
    report = verify("vgood", host=plugins.build_host([ep]), cassettes=cassettes)
    assert report.problems == []
    assert (
        report.checked[0]
        == f"vgood.count_interviews: replayed {cassettes}/vgood.count_interviews.yaml (strict)"
    )


def test_the_cli_verifies_an_installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ep, cassettes = build(tmp_path, "vcli")
    fake_entry_points(monkeypatch, [ep])
    r = CliRunner().invoke(main, ["plugins", "verify", "vcli", "--cassettes", str(cassettes)])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("plugin vcli 1.2.3 (vcli (vcli_pkg))\n  ok: vcli.count_interviews:")
    assert r.stdout.rstrip().endswith("plugin vcli: conforms")
    r = CliRunner().invoke(main, ["plugins", "verify", "nosuch"])
    assert r.exit_code == 1 and r.stderr.startswith("error: no plugin 'nosuch' is installed (plugins: ")
    monkeypatch.chdir(tmp_path)  # no tests/cassettes here: the handler actions cannot be exercised
    r = CliRunner().invoke(main, ["plugins", "verify", "vcli", "--json"])
    assert r.exit_code == 1
    problems = json.loads(r.stdout)["problems"]
    assert problems[0].startswith("vcli.count_interviews: not exercised: no cassettes folder")


def _sub(file: str, old: str, new: str, *more: tuple[str, str, str]) -> Mutation:
    def mutate(files: dict[str, str]) -> None:
        for f, o, n in [(file, old, new), *more]:
            assert o in files[f], (f, o)
            files[f] = files[f].replace(o, n)

    return mutate


# (name, mutation, the one problem expected, as a regular expression)
BROKEN: list[tuple[str, Mutation, str]] = [
    (
        "vbadmethod",
        _sub("count.yaml", "method: GET", "method: FETCH"),
        r"count.yaml:17: /request/method: 'FETCH'",
    ),
    (
        "vnamespace",
        _sub(
            "count.yaml",
            "id: vnamespace.count",
            "id: other.count",
            ("scenarios", "vnamespace.count_interviews", "other.count_interviews"),
        ),
        r"count.yaml:2: /id: other.count_interviews is not namespaced by the plugin \(expected vnamespace",
    ),
    (
        "vblank",
        _sub("count.yaml", "title: Count interviews", "title: ' '"),
        r"count.yaml:5: /title: title is blank",
    ),
    (
        "vinputdoc",
        _sub("newest.yaml", " description: A word of the title.", " minLength: 1"),
        r"newest.yaml:11: /input/properties/word: input has no description",
    ),
    ("vnoversion", _sub("trigger.yaml", "version: 1.0.0\n", ""), r"trigger.yaml:1: /: no version declared"),
    (
        "vsample",
        _sub("newest.yaml", "title: Backend Engineer}", "title: Backend Engineer, extra: 1}"),
        r"newest.yaml:18: /sample: sample drifts from its own output schema: /extra: appeared \(integer\)",
    ),
    (
        "vbadsample",
        _sub("newest.yaml", "title: Backend Engineer}", "title: 42}"),
        r"newest.yaml:18: /sample/title: sample does not satisfy output: 42 is not of type 'string'",
    ),
    (
        "vdrift",
        _sub(
            "count.yaml",
            "    results: {type: array}\n",
            "",
            ("count.yaml", ", results: []}", "}"),
        ),
        r"vdrift.count_interviews: vdrift.count_interviews: output does not match its schema: /results: appeared",
    ),
    (
        "vunexercised",
        _sub("scenarios", "vunexercised.newest_interview:\n  with: {word: engineer}\n", ""),
        r"vunexercised.newest_interview: not exercised: no cassette .* and no scenario in .*scenarios.yaml",
    ),
    (
        "vsignature",
        _sub("module", "def newest_interview(inputs, client):", "def newest_interview(inputs):"),
        r"plugin vsignature: handler vsignature.newest_interview: newest_interview\(inputs\) cannot be called "
        r"as \(inputs, client\)",
    ),
    (
        "vpollsig",
        _sub("module", "def titles(options, client, cursor):", "def titles(options, client):"),
        r"plugin vpollsig: poll handler vpollsig.titles: titles\(options, client\) cannot be called",
    ),
    (
        "vbuiltinfilter",
        _sub("module", '"vbuiltinfilter_shout": lambda', '"upper": lambda'),
        r"plugin vbuiltinfilter: .*filter 'upper' .* the built-in filter 'upper'",
    ),
    (
        "vorphan",
        _sub(
            "module",
            'return {"vorphan.newest_interview": newest_interview}',
            'return {"vorphan.newest_interview": newest_interview, "vorphan.spare": newest_interview}',
        ),
        r"plugin vorphan: handler vorphan.spare is registered but no manifest of the plugin names it",
    ),
    (
        "vdeprecated",
        _sub(
            "count.yaml",
            "version: 1.0.0\n",
            "version: 1.0.0\ndeprecated: {message: old, replacement: vdeprecated.gone}\n",
        ),
        r"count.yaml:5: /deprecated/replacement: vdeprecated.gone is not in the catalog",
    ),
    (
        "vhandlerbug",
        _sub("module", 'found[0]["key"]', 'found[0]["no_such_field"]'),
        r"vhandlerbug.newest_interview: vhandlerbug.newest_interview \(plugin vhandlerbug\): handler raised "
        r"KeyError: 'no_such_field'",
    ),
    (
        "vimport",
        _sub("module", "from pathlib import Path", "import no_such_module_here"),
        r"plugin vimport: failed to import: ModuleNotFoundError: No module named 'no_such_module_here'",
    ),
]


@pytest.mark.parametrize(("ns", "mutate", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_broken_thing_is_one_problem(tmp_path: Path, ns: str, mutate: Mutation, expected: str) -> None:
    ep, cassettes = build(tmp_path, ns, mutate)
    report = verify(ns, host=plugins.build_host([ep]), cassettes=cassettes)
    assert not report.ok
    if ns == "vimport":  # nothing loads, so nothing else can be checked
        assert report.problems[0] == expected.replace("\\", "")
        return
    assert len(report.problems) == 1, report.problems
    assert re.search(expected, report.problems[0]), report.problems[0]


def test_a_filter_clashing_with_another_plugins_names_both(tmp_path: Path) -> None:
    first, _ = build(tmp_path / "a", "vfirst")
    clash = _sub("module", '"vsecond_shout"', '"vfirst_shout"')
    second, cassettes = build(tmp_path / "b", "vsecond", clash)
    host = plugins.build_host([first, second])
    report = verify("vsecond", host=host, cassettes=cassettes)
    assert len(report.problems) == 1  # the host's report, or verify's own: once either way
    assert re.search(r"^plugin vsecond: .*filter 'vfirst_shout' .*plugin vfirst", report.problems[0])


def test_verify_finds_filter_clashes_without_the_hosts_help(tmp_path: Path) -> None:
    """The direct check, for a host that does not record clashes itself."""
    from connector.kit.verify import _filter_clashes

    one, _ = build(tmp_path / "a", "vone")
    two, _ = build(tmp_path / "b", "vtwo", _sub("module", '"vtwo_shout": lambda', '"vone_shout": lambda'))
    three, _ = build(tmp_path / "c", "vthree", _sub("module", '"vthree_shout": lambda', '"upper": lambda'))
    host = plugins.build_host([one, two, three])
    for name in ("vtwo", "vthree"):
        host.plugins[name].errors.clear()
    assert _filter_clashes(host, "vtwo") == [
        "plugin vtwo: filter 'vone_shout' clashes with plugin vone's filter 'vone_shout'"
    ]
    assert _filter_clashes(host, "vthree") == [
        "plugin vthree: filter 'upper' clashes with the built-in filter 'upper'"
    ]


def test_a_stale_cassette_is_reported(tmp_path: Path) -> None:
    ep, cassettes = build(tmp_path, "vstale")
    host = plugins.build_host([ep])
    with recording.target(sandbox=True, host=host) as t:
        recording.record_scenarios(
            t, cassettes / "scenarios.yaml", cassettes, only=["vstale.count_interviews"]
        )
        recording.record_scenarios(
            t, cassettes / "scenarios.yaml", cassettes, only=["vstale.count_interviews"], mode="all"
        )  # now it holds the request twice
    report = verify("vstale", host=plugins.build_host([ep]), cassettes=cassettes)
    assert report.problems == [
        f"vstale.count_interviews: {cassettes}/vstale.count_interviews.yaml: 1 recorded request(s) "
        "were not made (re-record it)"
    ]


def test_the_built_ins_conform() -> None:
    for name in ("willo_actions", "willo_triggers"):
        report = verify(name, host=plugins.build_host([]), cassettes=CASSETTES)
        assert report.problems == [], name
    assert len(report.checked) == 3  # the polling triggers, replayed


def test_plugins_exits_1_when_a_plugin_failed_to_load(tmp_path: Path, monkeypatch) -> None:
    broken = make_plugin(tmp_path, "vbroken", "raise RuntimeError('boom')\n", {})
    plugins.set_host(plugins.build_host([broken]))
    r = CliRunner().invoke(main, ["plugins"])
    assert r.exit_code == 1 and "vbroken 1.2.3  [FAILED]" in r.stdout
    r = CliRunner().invoke(main, ["plugins", "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["plugins"][-1]["errors"] == [
        "failed to import: RuntimeError: boom"
    ]
    plugins.set_host(plugins.build_host([]))
    assert CliRunner().invoke(main, ["plugins"]).exit_code == 0


def test_an_unknown_cassettes_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="--cassettes .*nowhere: no such folder"):
        verify("willo_actions", host=plugins.build_host([]), cassettes=tmp_path / "nowhere")


def test_the_module_template_is_valid_python() -> None:
    compile(textwrap.dedent(MODULE.format(ns="x")), "module", "exec")
