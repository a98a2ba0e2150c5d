"""The CLI through click's CliRunner, and as a real subprocess of the installed script."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector import __version__
from connector.cli import main
from tests.conftest import EXAMPLES, ROOT, script, script_env


def invoke(*args: str, **env: str):
    return CliRunner().invoke(main, list(args), env=env or None)


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code != 0, result.stdout
    err = result.stderr.strip()
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for needle in needles:
        assert needle in err, err
    return err


def test_one_version_everywhere() -> None:
    """The version the CLI, the User-Agent and the catalog cache key say is the one
    pyproject.toml releases and the installed distribution carries."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"] == importlib.metadata.version("willo-connector")


def test_version_and_help() -> None:
    r = invoke("--version")
    assert r.exit_code == 0 and f"willo-connector, version {__version__}" in r.stdout
    r = invoke("--help")
    for cmd in (
        "plugins",
        "actions",
        "triggers",
        "show",
        "validate",
        "call",
        "run",
        "runs",
        "resume",
        "poll",
        "listen",
        "state",
        "sandbox",
        "catalog",
        "options",
    ):
        assert f"  {cmd} " in r.stdout, cmd


@pytest.mark.subprocess
@pytest.mark.parametrize("temporal", [False, True])
def test_the_console_script_exits_with_the_commands_code_and_runs_the_exit_handlers(
    temporal: bool, tmp_path: Path
) -> None:
    """After a process has talked to Temporal, the script ends without the
    interpreter's teardown (the client's threads can abort it): the command's exit
    code, its output and the exit handlers (a quota block given back) are as ever."""
    code = (
        "import atexit, sys\n"
        "import connector.engines.temporal.client as tc\n"
        f"tc.connected = {temporal!r}\n"
        "atexit.register(lambda: print('exit handler ran', file=sys.stderr))\n"
        "sys.argv = ['willo-connector', *sys.argv[1:]]\n"
        "from connector.cli import run\n"
        "run()\n"
    )
    env = script_env(XDG_CACHE_HOME=str(tmp_path))
    ok = subprocess.run([sys.executable, "-c", code, "--version"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and __version__ in ok.stdout
    assert ok.stderr.strip() == "exit handler ran"
    bad = subprocess.run(
        [sys.executable, "-c", code, "validate", str(tmp_path / "nowhere.yaml")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and "exit handler ran" in bad.stderr and "nowhere.yaml" in bad.stderr
    assert "Traceback" not in bad.stderr


def _imported(args: list[str], env: dict[str, str], roots: tuple[str, ...]) -> list[str]:
    """The modules under ``roots`` that running the CLI with ``args`` imported."""
    code = (
        f"import sys\nfrom connector.cli import main\nsys.argv=['willo-connector', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {roots!r})\n"
        "print(repr(heavy), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return eval(out.stderr.strip().splitlines()[-1])  # a list of names


HEAVY = ("jsonschema", "requests", "jinja2", "werkzeug", "urllib3", "vcr", "yaml")


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["actions"],
        ["actions", "--json"],
        ["triggers"],
        ["show", "willo.get_interview"],
        ["plugins"],
    ],
)
def test_help_and_listing_commands_import_nothing_heavy(args: list[str], tmp_path: Path) -> None:
    env = script_env(XDG_CACHE_HOME=str(tmp_path / "c"))
    _imported(["actions"], env, ())  # the first run ever validates the catalog and caches it
    assert _imported(args, env, HEAVY) == []


def test_a_cold_call_imports_only_what_it_needs(sandbox, tmp_path: Path) -> None:
    """Valid inputs are settled without jsonschema, ``{{ input.x }}`` without Jinja2, and
    neither PyYAML nor the "uri"/"date-time" libraries load for a call that needs none."""
    env = script_env(
        XDG_CACHE_HOME=str(tmp_path / "c"),
        WILLO_STATE_DIR=str(tmp_path / "state"),  # not the machine's default store
        WILLO_BASE_URL=sandbox.base_url,
        WILLO_API_KEY=sandbox.api_key,
        WILLO_RATE_LIMIT="0",
    )
    _imported(["actions"], env, ())
    roots = ("jsonschema", "jinja2", "yaml", "rfc3986_validator", "rfc3339_validator")
    args = ["call", "willo.get_interview", "-i", "interview=927982d43d577f03e4877aab073a730e", "--json"]
    assert _imported(args, env, roots) == []
    bad = ["call", "willo.create_webhook", "-i", "url=not a url", "-i", 'events=["new_score"]']
    assert "rfc3986_validator" in _imported(bad, env, roots)  # checked, on first use


def test_actions_json_is_the_catalog_and_warm_start_skips_jsonschema(tmp_path: Path) -> None:
    r = invoke("actions", "--json")
    ids = [a["id"] for a in json.loads(r.stdout)]
    assert len(ids) == 47 and "willo.invite_participant" in ids and "http.request" in ids
    code = (
        "import sys\nfrom connector.cli import main\nsys.argv=['willo-connector','actions','--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('jsonschema' in sys.modules, file=sys.stderr)\n"
    )
    env = script_env(XDG_CACHE_HOME=str(tmp_path / "c"))
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert first.stderr.strip() == "True"  # cold: manifests validated
    assert second.stderr.strip() == "False"  # warm: the validated catalog is cached
    assert json.loads(second.stdout) == json.loads(first.stdout)


def test_triggers_and_show() -> None:
    r = invoke("triggers", "--json")
    assert {t["id"] for t in json.loads(r.stdout)} == {
        "willo.new_response",
        "willo.stage_change",
        "willo.new_comment",
        "willo.new_score",
        "willo.new_participant",
        "willo.new_interview",
        "willo.participant_completed",
        "schedule.cron",
    }
    r = invoke("show", "willo.invite_participant")
    assert r.exit_code == 0
    assert "*email: string (email)" in r.stdout and "request: POST /participants/" in r.stdout
    data = json.loads(invoke("show", "willo.invite_participant", "--json").stdout)
    assert data["input"]["properties"]["interview"]["pattern"] == "^[0-9a-f]{32}$"


def test_unknown_id_suggests_close_ones() -> None:
    err = one_line_error(invoke("show", "willo.invite_particpant"), "did you mean willo.invite_participant")
    assert err.startswith("error: unknown action or trigger 'willo.invite_particpant'")


def test_validate_ok_and_errors(tmp_path: Path) -> None:
    ops = invoke("validate", str(EXAMPLES / "ops"))
    assert (
        ops.exit_code == 1
        and "unknown secret 'chat_webhook' (set WILLO_SECRET_CHAT_WEBHOOK or add it to secrets: in the config file)"
        in ops.stderr
    )
    ops = invoke(
        "validate", str(EXAMPLES / "ops"), WILLO_SECRET_CHAT_WEBHOOK="https://chat.example.com/hook/x"
    )
    assert ops.exit_code == 0, ops.stderr
    r = invoke("validate", str(ROOT / "manifests"), str(EXAMPLES), "--skip-secrets")
    assert r.exit_code == 0, r.stderr
    assert "screening.yaml: ok (workflow)" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (ROOT / "manifests/actions/get_interview.yaml")
        .read_text()
        .replace("id: willo.get_interview", "id: acme.get_interview")
        .replace("method: GET", "method: FETCH")
    )
    r = invoke("validate", str(bad))
    assert r.exit_code == 1
    line = next(n for n, text in enumerate(bad.read_text().splitlines(), 1) if "FETCH" in text)
    assert r.stderr.strip().startswith(f"{bad}:{line}: /request/method: 'FETCH' is not one of")
    broken = tmp_path / "broken.yaml"
    broken.write_text("manifest: 1\nid: [oops\n")
    r = invoke("validate", str(broken))
    assert r.exit_code == 1 and r.stderr.startswith(f"{broken}:")


def test_validate_json(tmp_path: Path) -> None:
    r = invoke("validate", "--json", str(EXAMPLES / "screening.yaml"))
    assert json.loads(r.stdout)["ok"] is True


def test_dry_run_shows_request_without_the_key(monkeypatch) -> None:
    key = "sk_live_SECRET_do_not_print"
    r = invoke(
        "call",
        "willo.invite_participant",
        "--dry-run",
        "-i",
        f"interview={'a' * 32}",
        "-i",
        "email=ada@example.com",
        "-i",
        "first_name=Ada",
        WILLO_API_KEY=key,
    )
    assert r.exit_code == 0, r.stderr
    assert "POST https://api.willotalent.com/api/integrations/v2/participants/" in r.stdout
    assert "Authorization: ***" in r.stdout
    assert key not in r.stdout + r.stderr
    r = invoke(
        "call", "willo.get_interview", "--dry-run", "--json", "-i", f"interview={'b' * 32}", WILLO_API_KEY=key
    )
    data = json.loads(r.stdout)
    assert data["requests"][0]["url"].endswith(f"/interviews/{'b' * 32}/")
    assert data["output"]["key"] == "2" * 32 and key not in r.stdout


def test_call_live_against_the_sandbox(sandbox) -> None:
    r = invoke(
        "call",
        "willo.create_interview",
        "--json",
        "--input-json",
        json.dumps({"title": "Data Engineer", "questions": [{"text": "Why data?"}]}),
    )
    assert r.exit_code == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["title"] == "Data Engineer" and len(created["key"]) == 32
    r = invoke("call", "willo.list_interviews", "--json", "-i", "search=data")
    assert [i["key"] for i in json.loads(r.stdout)["results"]] == [created["key"]]


def test_input_from_json_file(sandbox, tmp_path: Path) -> None:
    f = tmp_path / "questions.json"
    f.write_text(json.dumps([{"text": "Q1"}, {"text": "Q2", "answer_type": "text"}]))
    r = invoke("call", "willo.create_interview", "--json", "-i", "title=T", "-i", f"questions=@{f}")
    assert r.exit_code == 0, r.stderr
    assert [q["text"] for q in json.loads(r.stdout)["questions"]] == ["Q1", "Q2"]


def test_bad_input_names_the_field() -> None:
    one_line_error(
        invoke(
            "call", "willo.invite_participant", "-i", "interview=xyz", "-i", "email=nope", WILLO_API_KEY="k"
        ),
        "willo.invite_participant: input",
        "/email:",
        "/interview:",
    )


def test_missing_key() -> None:
    one_line_error(invoke("call", "willo.list_interviews"), "set WILLO_API_KEY")


def test_plain_http_base_url_is_refused() -> None:
    one_line_error(
        invoke(
            "call",
            "willo.list_interviews",
            WILLO_API_KEY="k",
            WILLO_BASE_URL="http://api.willotalent.com/api/integrations/v2",
        ),
        "refusing plain http://",
    )


def test_network_error(monkeypatch) -> None:
    one_line_error(
        invoke(
            "call",
            "willo.list_interviews",
            WILLO_API_KEY="k",
            WILLO_MAX_RETRIES="0",
            WILLO_BASE_URL="http://127.0.0.1:9/api/integrations/v2",
        ),
        "cannot reach Willo",
    )


@pytest.mark.parametrize(
    "case,status",
    [
        ("bad_request", "400"),
        ("unauthorized", "401"),
        ("forbidden", "403"),
        ("not_found", "404"),
        ("throttled", "429"),
        ("server", "500"),
    ],
)
def test_each_willo_error_status_is_one_line(sandbox, monkeypatch, case: str, status: str) -> None:
    from connector.sandbox.app import Throttle

    env = {"WILLO_MAX_RETRIES": "0"}
    args = ["call", "willo.get_interview", "-i", f"interview={'0' * 32}"]
    if case == "bad_request":
        args = ["call", "willo.invite_participant", "-i", f"interview={'0' * 32}", "-i", "email=a@b.co"]
    elif case == "unauthorized":
        env["WILLO_API_KEY"] = "sk_wrong_but_secret"
    elif case == "forbidden":
        env["WILLO_API_KEY"] = sandbox.keys["standard"]
        args = ["call", "willo.list_webhooks"]
    elif case == "throttled":
        monkeypatch.setattr(sandbox.app, "throttle", Throttle(1, 0))
        invoke("call", "willo.list_languages")
    elif case == "server":
        sandbox.app.faults.planned.append("error_after")
        args = ["call", "willo.list_languages"]
    r = invoke(*args, **env)
    err = one_line_error(r, f" {status} ")
    assert sandbox.api_key not in err and "sk_wrong_but_secret" not in err


def test_options_lists_live_choices(sandbox) -> None:
    r = invoke("options", "willo.invite_participant", "interview", "--json")
    assert r.exit_code == 0, r.stderr
    labels = {o["label"] for o in json.loads(r.stdout)}
    assert labels == {"Backend Engineer", "Warehouse Supervisor"}
    one_line_error(invoke("options", "willo.invite_participant", "email"), "no dynamic options")


def test_catalog_export() -> None:
    data = json.loads(invoke("catalog", "--json").stdout)
    assert len(data["actions"]) == 47 and len(data["triggers"]) == 8
    invite = next(a for a in data["actions"] if a["id"] == "willo.invite_participant")
    assert invite["options"]["interview"] == {
        "action": "willo.list_interviews",
        "value": "key",
        "label": "title",
    }
    assert invite["sample"]["email"] and invite["idempotent"] is False


def test_plugins_json() -> None:
    data = json.loads(invoke("plugins", "--json").stdout)
    names = {p["name"]: p for p in data["plugins"]}
    assert names["willo_actions"]["builtin"] and len(names["willo_actions"]["manifests"]) == 47
    assert data["manifest_problems"] == []


def test_installed_script_as_a_subprocess(sandbox, tmp_path: Path) -> None:
    env = script_env(
        WILLO_BASE_URL=sandbox.base_url,
        WILLO_API_KEY=sandbox.api_key,
        WILLO_RATE_LIMIT="0",
        XDG_CACHE_HOME=str(tmp_path),
    )
    out = subprocess.run([*script(), "--version"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0 and f"version {__version__}" in out.stdout
    out = subprocess.run(
        [
            *script(),
            "call",
            "willo.get_interview",
            "--json",
            "-i",
            "interview=927982d43d577f03e4877aab073a730e",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["title"] == "Backend Engineer"
    out = subprocess.run(
        [*script(), "call", "willo.get_interview", "-i", "interview=zz"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_validate_reports_one_id_in_two_files(tmp_path: Path) -> None:
    src = (ROOT / "manifests/actions/get_interview.yaml").read_text()
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(src.replace("id: willo.get_interview", "id: acme.get"))
    r = invoke("validate", str(tmp_path))
    assert r.exit_code == 1
    assert (
        r.stderr.strip() == f"{tmp_path / 'b.yaml'}:2: /id: acme.get is also defined in {tmp_path / 'a.yaml'}"
    )


def test_dry_run_redacts_a_webhook_secret() -> None:
    r = invoke(
        "call",
        "willo.create_webhook",
        "--dry-run",
        "--input-json",
        json.dumps(
            {
                "url": "https://hooks.example.com/x",
                "events": ["new_score"],
                "secret": "my-webhook-secret-value",
            }
        ),
        WILLO_API_KEY="k",
    )
    assert r.exit_code == 0, r.stderr
    assert "my-webhook-secret-value" not in r.stdout and '"secret": "***"' in r.stdout


# ---------------------------------------------------------------------- streamed lists (issue 16.1)


def _bulk(sandbox, n: int, drifted: bool = False) -> None:
    """``n`` more participants (newest first they come before the demo's five); with
    ``drifted``, first one with a field the schema does not know (it lands on page 2)."""
    from connector.sandbox import seed

    with sandbox.store.lock:
        if drifted:
            sample = next(iter(sandbox.store.table("participants").values()))
            sandbox.store.insert("participants", {**sample, "key": "d" * 32, "video_count": 3})
        seed.bulk(sandbox.store, n, sandbox.base_url + "/")


def test_call_all_streams_json_lines(sandbox) -> None:
    _bulk(sandbox, 60)
    r = invoke("call", "willo.list_participants", "-i", "all=true", "--jsonl")
    assert r.exit_code == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(records) == len({p["key"] for p in records}) == 65
    scores = [p["score"] for p in records if p["score"] is not None]
    assert scores and all(isinstance(s, (int, float)) for s in scores)  # decimals as numbers
    r = invoke("call", "willo.list_participants", "-i", "page_size=7", "--jsonl")
    assert len(r.stdout.splitlines()) == 7  # one page: its records
    r = invoke("call", "willo.get_interview", "-i", "interview=927982d43d577f03e4877aab073a730e", "--jsonl")
    assert len(r.stdout.splitlines()) == 1 and json.loads(r.stdout)["title"] == "Backend Engineer"
    assert invoke("call", "willo.list_languages", "--json", "--jsonl").exit_code == 2


def test_call_all_json_is_one_line_off_a_terminal_and_indented_on_one(sandbox, monkeypatch) -> None:
    from connector.cli import common

    _bulk(sandbox, 40)
    r = invoke("call", "willo.list_participants", "-i", "all=true", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.count("\n") == 1
    data = json.loads(r.stdout)
    assert (
        list(data) == ["next", "previous", "results", "count"] and data["count"] == len(data["results"]) == 45
    )
    monkeypatch.setattr(common, "stdout_is_terminal", lambda: True)
    for flag in ("--json", None):
        r = invoke(*filter(None, ("call", "willo.list_participants", "-i", "all=true", flag)))
        assert r.stdout == json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    r = invoke("call", "willo.list_participants", "-i", "all=true", "-i", "email=nobody@example.com")
    assert (
        r.stdout == json.dumps({"next": None, "previous": None, "results": [], "count": 0}, indent=2) + "\n"
    )


def test_streamed_records_are_scrubbed_and_escaped_each_on_its_line(capsys) -> None:
    """A page is encoded and scrubbed as one text: each record must still come out on
    its own line (or as its own array element), a secret in any of them scrubbed in
    any case, and a lone surrogate escaped, as when each record was written alone."""
    from connector import redaction
    from connector.cli.common import emit_list, emit_records

    secret = "sk_stream_secret_42"
    redaction.register(secret)
    pages = [
        [{"n": 1, "note": f"key {secret}"}, {"n": 2, "name": "\ud800x", "ok": "é"}],
        [],
        [{"n": 3, "note": secret.upper() + "\n" + secret}],
    ]
    emit_records(iter(pages))
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["n"] for line in lines] == [1, 2, 3]
    assert json.loads(lines[0])["note"] == "key ***"
    assert json.loads(lines[1]) == {"n": 2, "name": "\ud800x", "ok": "é"}
    assert json.loads(lines[2])["note"] == "***\n***"
    assert secret not in "".join(lines).lower()
    emit_list({"next": None}, "results", iter(pages), lambda: {"count": 3})
    data = json.loads(capsys.readouterr().out)
    assert [r["n"] for r in data["results"]] == [1, 2, 3] and data["count"] == 3
    assert data["results"][0]["note"] == "key ***" and data["results"][1]["name"] == "\ud800x"


def test_decimals_become_numbers_and_what_holds_none_is_not_copied() -> None:
    from connector.catalog.schemas import numbers

    tree = {"properties": {"results": {"items": {"properties": {"score": True}}}}}
    plain = {"count": 2, "results": [{"score": None, "k": 1}, {"k": 2}]}
    assert numbers(plain, tree) is plain  # nothing to convert: nothing copied
    page = {"count": 2, "results": [{"score": "7.50", "k": 1}, {"score": "8", "k": 2}, {"score": None}]}
    out = numbers(page, tree)
    assert out == {"count": 2, "results": [{"score": 7.5, "k": 1}, {"score": 8, "k": 2}, {"score": None}]}
    assert list(out["results"][0]) == ["score", "k"]  # the fields keep their order
    assert page["results"][0]["score"] == "7.50"  # the input is left as it was
    assert out["results"][2] is page["results"][2]


def test_streamed_pages_are_checked_one_by_one(sandbox) -> None:
    _bulk(sandbox, 40, drifted=True)
    r = invoke("call", "willo.list_participants", "-i", "all=true", "--jsonl", WILLO_SCHEMA_MODE="strict")
    one_line_error(r, "output does not match its schema: /results/*/video_count: appeared (integer)")
    assert len(r.stdout.splitlines()) == 30  # the first page went out; none of the drifted one
    r = invoke("call", "willo.list_participants", "-i", "all=true", "--jsonl")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 46
    assert r.stderr.count("schema drift in willo.list_participants: /results/*/video_count") == 1


def test_a_stream_reads_the_next_page_only_when_asked(conn, sandbox) -> None:
    _bulk(sandbox, 60)
    stream = conn.stream("willo.list_participants", {"all": True})
    assert conn.client.requests_sent == 1  # the first page, before anything is given out
    batches = iter(stream.batches)
    assert len(next(batches)) == 30 and conn.client.requests_sent == 1
    assert len(next(batches)) == 30 and conn.client.requests_sent == 2
    assert len(list(batches)) == 1 and stream.count == 65 and conn.client.requests_sent == 3
    call = conn.call("willo.list_participants", {"all": True, "status": "completed"})  # the same, held
    assert call.output["count"] == len(call.output["results"]) == 20 + 4


@pytest.mark.subprocess
def test_a_reader_that_goes_away_ends_the_stream_quietly(sandbox, tmp_path: Path) -> None:
    _bulk(sandbox, 400)  # 14 pages, more than a pipe holds
    env = script_env(
        WILLO_BASE_URL=sandbox.base_url,
        WILLO_API_KEY=sandbox.api_key,
        WILLO_RATE_LIMIT="0",
        XDG_CACHE_HOME=str(tmp_path),
    )
    before = sandbox.app.requests_served
    proc = subprocess.Popen(
        [*script(), "call", "willo.list_participants", "-i", "all=true", "--jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    assert proc.stdout is not None and json.loads(proc.stdout.readline())["key"]
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.wait(timeout=30) == 141 and err == ""
    assert sandbox.app.requests_served - before < 14  # it stopped reading


@pytest.mark.parametrize(
    "args",
    [("actions",), ("show", "willo.create_interview"), ("triggers",), ("runs",), ("catalog", "--json")],
)
def test_a_reader_that_went_away_is_not_an_error(args: tuple[str, ...], tmp_path: Path) -> None:
    """`willo-connector actions | head -1`: the reader closes the pipe; the command stops
    quietly as SIGPIPE would stop it (141), not with 'internal error ... please report
    it'. The pipe's read end is closed before the command writes, so every write fails."""
    import os

    read, write = os.pipe()
    os.close(read)
    try:
        out = subprocess.run(
            [*script(), *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=script_env(WILLO_STATE_DIR=str(tmp_path), XDG_CACHE_HOME=str(tmp_path)),
            timeout=60,
        )
    finally:
        os.close(write)
    assert (out.returncode, out.stderr) == (141, "")
