"""``willo-connector mcp``: the catalog as MCP tools, talked to with the SDK's own client
over stdio (the installed script as a subprocess), streamable HTTP, and in process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.errors import ConfigError, ManifestError
from connector.http.client import Settings
from connector.interop import from_safe, mcp, safe_name
from connector.sandbox import Sandbox
from connector.state.store import StateStore
from connector.workflows.runtime import Connector
from tests.conftest import script, script_env

pytest.importorskip("mcp")

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

INTERVIEW_RE = re.compile(r"^[0-9a-f]{32}$")
BAD_INVITE = {"interview": "not-a-key"}  # email missing, interview malformed
TOKEN = "t0ken-for-tests-0123456789"


def everything(result: Any) -> str:
    """All a client received from one call, as text (to look for secrets in)."""
    return json.dumps(result.model_dump(mode="json", by_alias=True), default=str)


async def scenario(client: Client, dry_run: bool) -> dict[str, Any]:
    """What the issue asks of a session: list, two calls, a tool error, and what came back."""
    seen: list[str] = []
    tools = await client.list_tools()
    seen.append(everything(tools))
    listed = {t.name: t for t in tools.tools}
    interviews = await client.call_tool("willo.list_interviews", {"page_size": 5})
    seen.append(everything(interviews))
    assert not interviews.is_error, interviews.content
    first = interviews.structured_content["results"][0]["key"]
    invite = await client.call_tool(
        "willo.invite_participant", {"interview": first, "email": "mcp.test@example.com"}
    )
    seen.append(everything(invite))
    assert not invite.is_error, invite.content
    bad = await client.call_tool("willo.invite_participant", BAD_INVITE)
    seen.append(everything(bad))
    return {
        "listed": listed,
        "interviews": interviews,
        "invite": invite,
        "bad": bad,
        "seen": "\n".join(seen),
        "dry_run": dry_run,
    }


def check_scenario(out: dict[str, Any], sandbox: Sandbox) -> None:
    listed = out["listed"]
    assert len(listed) == 46
    get = listed["willo.get_interview"]
    assert get.annotations.read_only_hint is True
    assert get.output_schema["type"] == "object" and get.input_schema["required"] == ["interview"]
    delete = listed["willo.delete_participant"].annotations
    assert (delete.read_only_hint, delete.destructive_hint, delete.idempotent_hint) == (False, True, True)
    invite = listed["willo.invite_participant"].annotations
    assert (invite.read_only_hint, invite.destructive_hint, invite.idempotent_hint) == (False, False, False)
    bad = out["bad"]
    assert bad.is_error and bad.structured_content is None
    assert bad.content[0].text.startswith("willo.invite_participant: input ")
    assert "'email' is a required property" in bad.content[0].text
    participant = out["invite"].structured_content
    if out["dry_run"]:
        assert participant["email"] == "ada@example.com"  # the manifest's sample
        assert "dry run: nothing was sent" in out["invite"].content[1].text
        assert "POST " in out["invite"].content[1].text
    else:
        assert participant["email"] == "mcp.test@example.com" and INTERVIEW_RE.match(participant["key"])
    assert sandbox.api_key not in out["seen"]


@pytest.fixture
def server_env(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    return script_env(
        WILLO_BASE_URL=sandbox.base_url,
        WILLO_API_KEY=sandbox.api_key,
        WILLO_STATE_DIR=str(tmp_path / "state"),
        WILLO_RATE_LIMIT="0",
    )


def invited(sandbox: Sandbox, email: str) -> int:
    return sum(1 for p in sandbox.store.table("participants").values() if p.get("email") == email)


# --------------------------------------------------------------------------- stdio


@pytest.mark.subprocess
@pytest.mark.parametrize(("dry_run", "mode"), [(False, "legacy"), (True, "auto")])
def test_stdio_session_of_the_installed_script(
    sandbox: Sandbox, server_env: dict[str, str], tmp_path: Path, dry_run: bool, mode: str
) -> None:
    cmd = script()
    args = [*cmd[1:], "mcp", *(["--dry-run"] if dry_run else [])]
    params = StdioServerParameters(command=cmd[0], args=args, env=server_env)
    errlog = tmp_path / "stderr.txt"

    async def session() -> dict[str, Any]:
        with errlog.open("w") as err:
            async with Client(stdio_client(params, errlog=err), mode=mode) as client:
                return await scenario(client, dry_run)

    before = invited(sandbox, "mcp.test@example.com")
    out = anyio.run(session)
    check_scenario(out, sandbox)
    assert invited(sandbox, "mcp.test@example.com") == before + (0 if dry_run else 1)
    stderr = errlog.read_text()
    assert "willo-connector mcp: 46 tools on stdio" in stderr
    assert sandbox.api_key not in stderr and "Traceback" not in stderr


# --------------------------------------------------------------------------- streamable HTTP


@pytest.fixture
def http_server(server_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Start ``willo-connector mcp --http HOST:0`` with the given extra arguments."""
    procs: list[subprocess.Popen[str]] = []

    def start(*extra: str, host: str = "127.0.0.1", env: dict[str, str] | None = None) -> str:
        err = (tmp_path / f"http-{len(procs)}.txt").open("w+")
        proc = subprocess.Popen(
            [*script(), "mcp", "--http", f"{host}:0", *extra],
            env=env or server_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
        procs.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            err.seek(0)
            found = re.search(r"tools on http://\S+:(\d+)/mcp", err.read())
            if found:
                return f"http://127.0.0.1:{found.group(1)}/mcp"
            if proc.poll() is not None:
                err.seek(0)
                raise AssertionError(f"server exited {proc.returncode}: {err.read()}")
            time.sleep(0.05)
        raise AssertionError("server did not start")

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@asynccontextmanager
async def http_client(url: str, token: str | None = None, mode: str = "auto") -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


@pytest.mark.subprocess
@pytest.mark.parametrize(("dry_run", "mode"), [(False, "auto"), (True, "legacy")])
def test_streamable_http_session(sandbox: Sandbox, http_server: Any, dry_run: bool, mode: str) -> None:
    url = http_server(*(["--dry-run"] if dry_run else []))

    async def session() -> dict[str, Any]:
        async with http_client(url, mode=mode) as client:
            return await scenario(client, dry_run)

    before = invited(sandbox, "mcp.test@example.com")
    check_scenario(anyio.run(session), sandbox)
    assert invited(sandbox, "mcp.test@example.com") == before + (0 if dry_run else 1)


@pytest.mark.subprocess
def test_a_non_loopback_interface_needs_the_bearer_token(
    http_server: Any, server_env: dict[str, str]
) -> None:
    import httpx2

    url = http_server(host="0.0.0.0", env={**server_env, "WILLO_MCP_TOKEN": TOKEN})
    hello = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}):
        answer = httpx2.post(url, json=hello, headers=headers, timeout=10)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"].startswith("Bearer")

    async def session() -> int:
        async with http_client(url, token=TOKEN) as client:
            return len((await client.list_tools()).tools)

    assert anyio.run(session) == 46


@pytest.mark.subprocess
def test_loopback_refuses_other_hosts_and_origins(http_server: Any) -> None:
    """DNS rebinding: a web page whose name resolves to 127.x must not reach the server."""
    import httpx2

    url = http_server(host="127.0.0.2")
    hello = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    accept = {"Accept": "application/json, text/event-stream"}
    url = url.replace("127.0.0.1", "127.0.0.2")
    evil = httpx2.post(url, json=hello, headers={**accept, "Host": "evil.example"}, timeout=10)
    assert evil.status_code == 421
    origin = httpx2.post(url, json=hello, headers={**accept, "Origin": "http://evil.example"}, timeout=10)
    assert origin.status_code == 403

    async def session() -> int:
        async with http_client(url) as client:
            return len((await client.list_tools()).tools)

    assert anyio.run(session) == 46  # its own name is fine


def test_the_token_rule() -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        mcp.check_token(host, None)  # loopback: no token needed
    for host in ("0.0.0.0", "192.0.2.10", "::", "example.com"):
        with pytest.raises(ConfigError, match="without a bearer token: set WILLO_MCP_TOKEN"):
            mcp.check_token(host, None)
        mcp.check_token(host, TOKEN)
    with pytest.raises(ConfigError, match="at least 16 characters"):
        mcp.check_token("127.0.0.1", "short")


def test_the_cli_refuses_to_serve_a_public_interface_without_a_token() -> None:
    r = CliRunner().invoke(main, ["mcp", "--http", "0.0.0.0:0"])
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [
        "error: refusing to serve MCP on 0.0.0.0 without a bearer token: set WILLO_MCP_TOKEN "
        "(or --token), or serve on a loopback address such as 127.0.0.1"
    ]
    r = CliRunner().invoke(main, ["mcp", "--http", "nonsense"])
    assert r.exit_code == 1 and "expected HOST:PORT" in r.stderr


def test_parse_address() -> None:
    assert mcp.parse_address("127.0.0.1:8808") == ("127.0.0.1", 8808)
    assert mcp.parse_address("[::1]:0") == ("::1", 0)
    assert mcp.parse_address("9000") == ("127.0.0.1", 9000)
    with pytest.raises(ConfigError):
        mcp.parse_address("host:99999")


# --------------------------------------------------------------------------- in process


def serve_in_process(conn: Connector, **kw: Any) -> Any:
    store = kw.pop("store", None)
    box = mcp.Toolbox(conn, mcp.build_tools(conn, **kw), store)
    return mcp.build_server(box)


def test_tool_errors_carry_the_cli_message(conn: Connector, sandbox: Sandbox) -> None:
    server = serve_in_process(conn)

    async def session() -> list[Any]:
        async with Client(server) as client:
            return [
                await client.call_tool("willo.invite_participant", BAD_INVITE),
                await client.call_tool("willo.get_interview", {"interview": "0" * 32}),
            ]

    bad_input, not_found = anyio.run(session)
    cli = CliRunner().invoke(main, ["call", "willo.invite_participant", "-i", "interview=not-a-key"])
    assert cli.exit_code == 1
    assert cli.stderr.strip() == f"error: {bad_input.content[0].text}"
    cli = CliRunner().invoke(main, ["call", "willo.get_interview", "-i", f"interview={'0' * 32}"])
    assert not_found.is_error and cli.stderr.strip() == f"error: {not_found.content[0].text}"
    assert "404" in not_found.content[0].text


def test_an_unknown_tool_is_a_protocol_error_with_a_suggestion(conn: Connector) -> None:
    server = serve_in_process(conn)

    async def session() -> str:
        async with Client(server) as client:
            with pytest.raises(MCPError) as caught:
                await client.call_tool("willo.get_intervew", {})
            return str(caught.value.message)

    assert anyio.run(session).startswith(
        "unknown tool 'willo.get_intervew'; did you mean willo.get_interview"
    )


def test_safe_names_for_clients_that_refuse_dots(conn: Connector, sandbox: Sandbox) -> None:
    server = serve_in_process(conn, naming="safe")

    async def session() -> tuple[list[str], Any, Any]:
        async with Client(server) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            by_safe = await client.call_tool("willo-list_languages", {})
            by_id = await client.call_tool("willo.list_languages", {})
            return names, by_safe, by_id

    names, by_safe, by_id = anyio.run(session)
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", n) for n in names)  # Claude's rule
    assert "willo-get_interview" in names
    assert by_safe.structured_content == by_id.structured_content and not by_safe.is_error
    for ident in ("willo.get_interview", "acme_x.do_it", "workflow.screen-applicants"):
        assert from_safe(safe_name(ident)) == ident


def test_read_only_and_globs_choose_the_tools(conn: Connector) -> None:
    tools = mcp.build_tools(conn, only_read=True)
    assert tools and all(t.read_only for t in tools)
    assert {t.name for t in tools} == {m.id for m in conn.catalog.of_kind("action") if mcp.method(m) == "GET"}
    assert "willo.move_participant_stage" not in {t.name for t in tools}  # a handler counts as writing
    some = mcp.build_tools(conn, patterns=["willo.list_*", "willo.get_interview,willo.get_user"])
    assert {t.name for t in some} >= {"willo.list_interviews", "willo.get_interview", "willo.get_user"}
    assert all(t.name.startswith("willo.list_") or t.name.startswith("willo.get_") for t in some)
    with pytest.raises(ConfigError, match="--actions 'willo.nothing_\\*' matches no action"):
        mcp.build_tools(conn, patterns=["willo.nothing_*"])
    # http.request calls any URL: an agent gets it only when a glob names it
    assert "http.request" not in {t.name for t in mcp.build_tools(conn)}
    assert "http.request" not in {t.name for t in mcp.build_tools(conn, patterns=["*"])}
    named = mcp.build_tools(conn, patterns=["willo.get_user", "http.*"])
    assert {t.name for t in named} == {"willo.get_user", "http.request"}


def test_output_that_breaks_the_schema_is_an_error_that_keeps_the_answer(
    conn: Connector, sandbox: Sandbox
) -> None:
    """MCP clients reject structured content that does not match the advertised schema;
    the call happened, so the answer comes back as text with the mismatch."""
    tool = mcp.action_tool(conn.catalog.get("willo.list_languages"), "id", False)
    tool.output_schema = {**tool.output_schema, "required": ["count", "results", "no_such_field"]}
    outcome = mcp.Toolbox(conn, [tool]).call(tool, {})
    assert outcome.is_error and outcome.structured is None
    assert outcome.texts[0] == (
        "willo.list_languages: output does not match its schema: /: 'no_such_field' is a required property"
    )
    assert json.loads(outcome.texts[1])["results"]


def test_the_api_key_never_appears_even_when_willo_echoes_it(conn: Connector, sandbox: Sandbox) -> None:
    box = mcp.Toolbox(conn, mcp.build_tools(conn))
    tool = box.find("willo.create_department")
    assert tool is not None
    outcome = box.call(tool, {"name": f"Dept {sandbox.api_key}"})  # the key, sent back in the answer
    assert not outcome.is_error
    assert sandbox.api_key not in json.dumps(outcome.structured) + "".join(outcome.texts)
    assert "***" in outcome.structured["name"]


def test_a_live_server_needs_a_key_and_says_so_before_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    r = CliRunner().invoke(main, ["mcp"])
    assert r.exit_code == 1 and r.stderr.startswith("error: set WILLO_API_KEY")


def test_a_missing_sdk_is_one_line_naming_the_extra() -> None:
    code = (
        "import sys\nsys.modules['mcp'] = None\nfrom connector.cli import main\n"
        "sys.argv = ['willo-connector', 'mcp', '--dry-run']\nmain()\n"
    )
    env = script_env()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert out.stderr.strip() == "error: the MCP server needs the MCP SDK: pip install 'willo-connector[mcp]'"


def test_help_and_listing_commands_do_not_import_the_sdk(tmp_path: Path) -> None:
    heavy = ("mcp", "mcp_types", "pydantic", "starlette", "uvicorn", "anyio", "openapi_spec_validator")
    for argv in (["--help"], ["mcp", "--help"], ["export", "--help"], ["actions", "--json"], ["triggers"]):
        code = (
            "import sys\nfrom connector.cli import main\n"
            f"sys.argv = ['willo-connector', *{argv!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}), file=sys.stderr)\n"
        )
        env = script_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert out.stderr.strip().splitlines()[-1] == "[]", (argv, out.stderr)


# --------------------------------------------------------------------------- workflows

WORKFLOW = """\
workflow: 1
name: invite-to-first
description: Invite one candidate to the first interview of the account.
inputs:
  type: object
  additionalProperties: false
  required: [email]
  properties:
    email: {type: string, format: email}
steps:
  - id: interviews
    use: willo.list_interviews
    with: {page_size: 1}
  - id: invite
    use: willo.find_or_invite_participant
    with:
      interview: "{{ steps.interviews.output.results[0].key }}"
      email: "{{ inputs.email }}"
"""


def test_workflows_as_tools_run_with_the_journal(conn: Connector, sandbox: Sandbox, tmp_path: Path) -> None:
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / "invite.yaml").write_text(WORKFLOW)
    (folder / "on_event.yaml").write_text(
        "workflow: 1\nname: on-event\ntrigger: {use: willo.stage_change}\n"
        "steps:\n  - {id: one, use: willo.list_languages}\n"
    )
    store = StateStore(tmp_path / "state")
    server = serve_in_process(conn, workflows=folder, store=store)

    async def session() -> tuple[Any, Any, Any]:
        async with Client(server) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            ok = await client.call_tool("workflow.invite-to-first", {"email": "wf.tool@example.com"})
            bad = await client.call_tool("workflow.invite-to-first", {"email": 3})
            return tools, ok, bad

    tools, ok, bad = anyio.run(session)
    tool = tools["workflow.invite-to-first"]
    assert tool.input_schema["required"] == ["email"] and "Invite one candidate" in tool.description
    assert "workflow.on-event" not in tools  # starts from a trigger: served by listen/poll instead
    assert not ok.is_error, ok.content
    run = ok.structured_content
    assert run["status"] == "succeeded" and [s["status"] for s in run["steps"]] == ["succeeded", "succeeded"]
    row = store.run(run["run_id"])
    assert row is not None and row["status"] == "succeeded"
    assert bad.is_error and bad.content[0].text.endswith("inputs: /email: 3 is not of type 'string'")


def test_an_invalid_workflow_stops_the_server_with_every_problem(conn: Connector, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "workflow: 1\nname: bad\nsteps:\n  - {id: one, use: willo.no_such_action}\n"
    )
    with pytest.raises(ManifestError, match="bad.yaml:4: .*unknown action 'willo.no_such_action'"):
        mcp.build_tools(conn, workflows=tmp_path)


def test_a_failed_workflow_run_is_a_tool_error_with_the_run(
    conn: Connector, sandbox: Sandbox, tmp_path: Path
) -> None:
    (tmp_path / "fails.yaml").write_text(
        "workflow: 1\nname: fails\nsteps:\n"
        "  - {id: get, use: willo.get_interview, with: {interview: '00000000000000000000000000000000'}}\n"
    )
    box = mcp.Toolbox(conn, mcp.build_tools(conn, workflows=tmp_path), StateStore(tmp_path / "s"))
    tool = box.find("workflow-fails")
    assert tool is not None
    outcome = box.call(tool, {})
    assert outcome.is_error and outcome.texts[0].startswith("step get: GET ")
    assert outcome.structured["status"] == "failed" and outcome.structured["run_id"]


def test_dry_run_in_process_returns_the_sample_and_sends_nothing(sandbox: Sandbox) -> None:
    conn = Connector(settings=Settings.from_env(), dry_run=True)
    interviews = len(sandbox.store.table("interviews"))
    server = serve_in_process(conn, patterns=["willo.delete_*"])

    async def session() -> Any:
        async with Client(server) as client:
            return await client.call_tool("willo.delete_interview", {"interview": "2" * 32})

    result = anyio.run(session)
    assert not result.is_error and result.structured_content == {}
    assert "DELETE http://127.0.0.1" in result.content[1].text
    assert conn.client.requests_sent == 0 and len(sandbox.store.table("interviews")) == interviews


def test_a_port_in_use_is_one_line() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = CliRunner().invoke(main, ["mcp", "--dry-run", "--http", f"127.0.0.1:{port}"])
    assert r.exit_code == 1
    assert r.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"


@pytest.mark.subprocess
def test_sandbox_mode_needs_no_account(tmp_path: Path) -> None:
    cmd = script()
    env = script_env(WILLO_STATE_DIR=str(tmp_path / "state"))
    params = StdioServerParameters(
        command=cmd[0], args=[*cmd[1:], "mcp", "--sandbox", "--read-only"], env=env
    )

    async def session() -> tuple[int, Any]:
        with (tmp_path / "err.txt").open("w") as err:
            async with Client(stdio_client(params, errlog=err)) as client:
                tools = (await client.list_tools()).tools
                return len(tools), await client.call_tool("willo.list_interviews", {})

    count, result = anyio.run(session)
    assert count == len([t for t in tools_of_catalog() if t.read_only])
    assert not result.is_error and result.structured_content["count"] >= 1
    assert "sandbox: http://127.0.0.1:" in (tmp_path / "err.txt").read_text()


def tools_of_catalog() -> list[mcp.Tool]:
    return mcp.build_tools(Connector(settings=Settings.from_env(), dry_run=True))


def test_the_docs_describe_every_option_and_the_readme_links_them() -> None:
    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "interop.md").read_text()
    documented = set(re.findall(r"^\| `(--[a-z-]+)", doc, flags=re.M))
    helped = set(
        re.findall(r"^  (--[a-z-]+)", CliRunner().invoke(main, ["mcp", "--help"]).stdout, flags=re.M)
    )
    assert documented == helped - {"--help"}
    assert "(docs/interop.md)" in (root / "README.md").read_text()
    listing = CliRunner().invoke(main, ["--help"]).stdout
    assert "  mcp " in listing and "  export " in listing


def test_a_plugin_action_whose_output_is_not_an_object_is_wrapped(tmp_path: Path, sandbox: Sandbox) -> None:
    from connector.catalog import plugins
    from tests.test_plugins import make_plugin

    manifest = """\
manifest: 1
id: acme.language_codes
kind: action
title: Language codes
description: Just the codes.
input: {type: object, additionalProperties: false, properties: {}}
output: {type: array, items: {type: string}}
sample: [en, fr]
handler: acme.language_codes
"""
    module = """
from pathlib import Path
from connector import hookimpl

@hookimpl
def manifest_paths():
    return [Path(__file__).parent]

@hookimpl
def action_handlers():
    return {"acme.language_codes": lambda inputs, client: ["en", "de"]}
"""
    plugins.set_host(
        plugins.build_host([make_plugin(tmp_path, "acmewrap", module, {"codes.yaml": manifest})])
    )
    conn = Connector(settings=Settings.from_env())
    server = serve_in_process(conn, patterns=["acme.*"])

    async def session() -> tuple[Any, Any]:
        async with Client(server, mode="legacy") as client:
            (tool,) = (await client.list_tools()).tools
            return tool, await client.call_tool("acme.language_codes", {})

    tool, result = anyio.run(session)
    assert tool.output_schema == {
        "type": "object",
        "required": ["result"],
        "properties": {"result": {"type": "array", "items": {"type": "string"}}},
    }
    assert not result.is_error and result.structured_content == {"result": ["en", "de"]}
