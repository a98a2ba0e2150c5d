"""The catalog as Model Context Protocol tools, on the official ``mcp`` SDK.

One tool per action, named by its id (``--tool-names safe`` writes ``willo-get_interview``
for clients that refuse dots; both spellings are accepted in calls), with the
manifest's input and output schemas, title, description and annotations
(``readOnlyHint`` for GET, ``destructiveHint`` for DELETE, ``idempotentHint`` from
``idempotent``). A call goes through :meth:`Connector.call`, like ``willo-connector
call``: inputs are validated, outputs checked; an error comes back as a tool error
(``isError``) whose text is the CLI's one-line message. ``--workflows DIR`` adds each
workflow as a tool whose input schema is the workflow's ``inputs``; it runs with the
journal ``run`` keeps.

The SDK is an optional extra (``willo-connector[mcp]``): nothing here imports it until
a server is built, so listing commands and ``--help`` never pay for it. Everything
below :func:`build_server` is plain Python and is tested without the SDK.
"""

from __future__ import annotations

import fnmatch
import hmac
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector import __version__
from connector.catalog import schemas
from connector.catalog.types import Manifest
from connector.errors import ConfigError, ConnectorError, ManifestError
from connector.http.client import is_loopback
from connector.interop import from_safe, safe_name
from connector.workflows.runtime import Connector

if TYPE_CHECKING:
    from connector.state.store import StateStore
    from connector.workflows.model import Workflow

log = logging.getLogger(__name__)

EXTRA = "pip install 'willo-connector[mcp]'"
NAMINGS = ("id", "safe")
#: Tool names longer than this are refused by some clients (Claude's is 64).
NAME_LIMIT = 64
MIN_TOKEN = 16
WORKFLOW_NAMESPACE = "workflow"

INSTRUCTIONS = (
    "Tools for the Willo Integration API V2 (asynchronous video interviews): departments, "
    "interviews, participants and their Kanban stages, message templates, users, webhooks. "
    "Resources are named by 32-character hex keys: find them with the list tools first. "
    "Tools marked read-only change nothing; invitations send real emails unless the server "
    "runs with --dry-run."
)

#: The structured result of a workflow tool: the summary ``run --json`` prints.
RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["run_id", "workflow", "status", "dry_run", "steps"],
    "properties": {
        "run_id": {
            "type": ["string", "null"],
            "description": "Journal id (willo-connector runs / resume); null for a dry run.",
        },
        "workflow": {"type": "string", "description": "The workflow's name."},
        "status": {"enum": ["succeeded", "failed"]},
        "dry_run": {"type": "boolean"},
        "error": {"type": ["string", "null"], "description": "Why the run failed."},
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "action", "status"],
                "properties": {
                    "id": {"type": "string"},
                    "action": {"type": "string"},
                    "status": {"enum": ["succeeded", "failed", "skipped"]},
                    "output": {"description": "The step's output (a list for foreach)."},
                    "error": {"type": "string"},
                    "items": {"type": "array", "description": "Per-item status of a foreach step."},
                    "requests": {"type": "array", "description": "What a dry run would send."},
                },
            },
        },
    },
}


def require_sdk() -> None:
    """Fail with one line naming the extra when the MCP SDK is not installed."""
    try:
        import mcp.server  # noqa: F401
    except ImportError:
        raise ConfigError(f"the MCP server needs the MCP SDK: {EXTRA}") from None


# --------------------------------------------------------------------------- tools


@dataclass
class Tool:
    """One MCP tool: an action or a workflow, as clients see it."""

    name: str
    ident: str  # the action id, or workflow.<name>
    title: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    read_only: bool
    destructive: bool
    idempotent: bool
    workflow: Workflow | None = None
    #: the output goes under ``result``: MCP wants an object, the manifest's output is not one
    wrapped: bool = False

    def annotations(self) -> dict[str, Any]:
        """MCP's hints; destructive and idempotent only mean something for a tool that writes."""
        hints: dict[str, Any] = {"title": self.title, "read_only_hint": self.read_only}
        if not self.read_only:
            hints["destructive_hint"] = self.destructive
            hints["idempotent_hint"] = self.idempotent
        return hints


def method(manifest: Manifest) -> str | None:
    req = manifest.request
    return str(req["method"]) if req is not None else None


def read_only(manifest: Manifest) -> bool:
    """A GET changes nothing; a handler-backed composite is treated as writing."""
    return method(manifest) == "GET"


def tool_name(ident: str, naming: str) -> str:
    return safe_name(ident) if naming == "safe" else ident


#: actions offered only when --actions names them: a tool that calls any URL is not
#: something an agent should get by default
OPT_IN = ("http.request",)


def select(manifests: Iterable[Manifest], patterns: Iterable[str]) -> list[Manifest]:
    """The actions whose id matches any glob; a glob that matches nothing is an error.
    Without globs, or with globs that do not name them, every action but the opt-in
    ones (:data:`OPT_IN`)."""
    pool = list(manifests)
    wanted = [p.strip() for raw in patterns for p in raw.split(",") if p.strip()]
    if not wanted:
        return [m for m in pool if m.id not in OPT_IN]
    for pattern in wanted:
        if not any(_names(pattern, m.id) for m in pool):
            raise ConfigError(f"--actions {pattern!r} matches no action (see willo-connector actions)")
    return [m for m in pool if any(_names(p, m.id) for p in wanted)]


def _names(pattern: str, ident: str) -> bool:
    """Whether ``pattern`` picks ``ident``: an opt-in action only by a glob of its own
    namespace (``http.request``, ``http.*``), never by ``*`` alone."""
    if ident in OPT_IN and not pattern.startswith(ident.split(".", 1)[0] + "."):
        return False
    return fnmatch.fnmatchcase(ident, pattern)


def action_tool(manifest: Manifest, naming: str, dry_run: bool) -> Tool:
    description = str(manifest.data["description"])
    if dry_run:
        description += " (Dry run: nothing is sent; the result is the manifest's sample.)"
    output = manifest.output_schema
    wrapped = output.get("type") != "object"
    if wrapped:  # MCP's structured content is an object (through protocol 2025-11-25)
        output = {"type": "object", "required": ["result"], "properties": {"result": output}}
    return Tool(
        name=tool_name(manifest.id, naming),
        ident=manifest.id,
        title=manifest.title,
        description=description,
        input_schema=manifest.input_schema,
        output_schema=output,
        read_only=read_only(manifest),
        destructive=method(manifest) == "DELETE",
        idempotent=manifest.idempotent,
        wrapped=wrapped,
    )


def workflow_tools(conn: Connector, folder: str | Path, naming: str, only_read: bool) -> list[Tool]:
    """Each workflow in ``folder`` as a tool; any invalid workflow stops the server
    (with every problem), as ``validate`` would report them."""
    from connector.catalog.index import yaml_files
    from connector.workflows.model import load

    tools: list[Tool] = []
    problems: list[str] = []
    by_name: dict[str, str] = {}
    for path in yaml_files([folder]):
        try:
            wf = load(path, conn.catalog, connections=conn.pool_names())
        except ManifestError as exc:
            problems.extend(exc.problems)
            continue
        if wf.trigger:
            log.warning(
                "%s: not served: it starts from the trigger %s (run it with listen or poll)",
                path,
                wf.trigger["use"],
            )
            continue
        steps = [conn.catalog.get(s["use"], "action") for s in wf.steps]
        if only_read and not all(read_only(m) for m in steps):
            continue
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", wf.name).strip("_") or path.stem
        ident = f"{WORKFLOW_NAMESPACE}.{slug}"
        if ident in by_name:
            problems.append(f"{path}: workflow name {wf.name!r} is also the name of {by_name[ident]}")
            continue
        by_name[ident] = str(path)
        text = wf.data.get("description") or f"Run the workflow {wf.name!r} ({path.name})."
        tools.append(
            Tool(
                name=tool_name(ident, naming),
                ident=ident,
                title=f"Workflow: {wf.name}",
                description=f"{text} Steps: " + ", ".join(f"{s['id']} ({s['use']})" for s in wf.steps) + ".",
                input_schema=dict(wf.data.get("inputs") or {"type": "object"}),
                output_schema=RUN_SCHEMA,
                read_only=all(read_only(m) for m in steps),
                destructive=any(method(m) == "DELETE" for m in steps),
                idempotent=all(m.idempotent for m in steps),
                workflow=wf,
            )
        )
    if problems:
        raise ManifestError(problems)
    return tools


def build_tools(
    conn: Connector,
    *,
    patterns: Iterable[str] = (),
    only_read: bool = False,
    workflows: str | Path | None = None,
    naming: str = "id",
) -> list[Tool]:
    """The tools a server offers, in a stable order (actions by id, then workflows)."""
    if naming not in NAMINGS:
        raise ConfigError(f"tool names: use one of {', '.join(NAMINGS)}, not {naming!r}")
    actions = select(conn.catalog.of_kind("action"), patterns)
    tools = [action_tool(m, naming, conn.dry_run) for m in actions if read_only(m) or not only_read]
    if workflows is not None:
        wf_tools = workflow_tools(conn, workflows, naming, only_read)
        taken = {t.name for t in tools}
        for t in wf_tools:
            if t.name in taken:
                raise ConfigError(f"workflow tool {t.name} has the name of an action; rename the workflow")
        tools += wf_tools
    for t in tools:
        if len(t.name) > NAME_LIMIT:
            log.warning(
                "tool name %s is longer than %d characters; some clients refuse it", t.name, NAME_LIMIT
            )
    return tools


# --------------------------------------------------------------------------- calls


@dataclass
class Outcome:
    """What one tool call returns: structured content, text blocks, and the error flag."""

    structured: Any
    texts: list[str] = field(default_factory=list)
    is_error: bool = False


class Toolbox:
    """Runs tools with one connector (one account) and one state store. No SDK here."""

    def __init__(self, conn: Connector, tools: list[Tool], store: StateStore | None = None):
        self.conn = conn
        self.tools = tools
        self.store = store
        self._by_name = {t.name: t for t in tools}
        self._by_ident = {t.ident: t for t in tools}
        self._validators: dict[str, Any] = {}

    def find(self, name: str) -> Tool | None:
        """The tool called ``name``, in either spelling (``willo.x`` or ``willo-x``)."""
        return self._by_name.get(name) or self._by_ident.get(name) or self._by_ident.get(from_safe(name))

    def unknown(self, name: str) -> str:
        import difflib

        close = difflib.get_close_matches(name, list(self._by_name), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"unknown tool {name!r}{hint}"

    def call(self, tool: Tool, arguments: Mapping[str, Any]) -> Outcome:
        """Run one tool; every failure becomes a tool error with the CLI's one-line message."""
        try:
            if tool.workflow is not None:
                return self._workflow(tool, dict(arguments))
            return self._action(tool, dict(arguments))
        except ConnectorError as exc:
            return self._error(str(exc))
        except Exception as exc:  # a bug: one line, as the CLI prints it
            log.debug("tool %s failed", tool.name, exc_info=True)
            return self._error(
                f"internal error: {type(exc).__name__}: {exc} "
                "(set WILLO_CONNECTOR_DEBUG=1 for the traceback, and please report it)"
            )

    def _action(self, tool: Tool, arguments: dict[str, Any]) -> Outcome:
        result = self.conn.call(tool.ident, arguments)
        output = self._scrubbed({"result": result.output} if tool.wrapped else result.output)
        problems = self._output_problems(tool, output)
        if problems:
            # MCP clients reject structured content that breaks the advertised schema; the
            # call did happen, so its answer goes back as text rather than being lost.
            return Outcome(
                None,
                [
                    self.scrub(f"{tool.ident}: output does not match its schema: " + "; ".join(problems)),
                    _dump(output),
                ],
                is_error=True,
            )
        texts = [_dump(output)]
        if result.dry_run:
            texts.append(self.scrub(_describe_requests(result.requests)))
        return Outcome(output, texts)

    def _workflow(self, tool: Tool, arguments: dict[str, Any]) -> Outcome:
        from connector.engines.local import LocalExecutor
        from connector.workflows.runner import Runner

        assert tool.workflow is not None
        runner = Runner(self.conn, tool.workflow, store=self.store, progress=False, executor=LocalExecutor())
        result = runner.start(arguments)
        run = self._scrubbed(result.as_dict())
        if result.status != "succeeded":
            return Outcome(run, [self.scrub(str(result.error)), _dump(run)], is_error=True)
        return Outcome(run, [_dump(run)])

    def _output_problems(self, tool: Tool, output: Any) -> list[str]:
        validator = self._validators.get(tool.ident)
        if validator is None:
            validator = self._validators[tool.ident] = schemas.validator(tool.output_schema)
        return [f"{ptr or '/'}: {msg}" for ptr, msg in schemas.errors(output, validator)]

    def _error(self, message: str) -> Outcome:
        return Outcome(None, [self.scrub(message)], is_error=True)

    def scrub(self, text: str) -> str:
        return self.conn.client.scrub(text)

    def _scrubbed(self, value: Any) -> Any:
        key = self.conn.client.settings.api_key
        if key and key in json.dumps(value, default=str):
            return json.loads(self.scrub(json.dumps(value, default=str)))
        return value


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _describe_requests(requests: list[dict[str, Any]]) -> str:
    lines = ["dry run: nothing was sent; it would send:"]
    for req in requests:
        if "handler" in req:
            lines.append(f"  handler {req['handler']} with {json.dumps(req['inputs'], default=str)}")
            continue
        query = "&".join(f"{k}={v}" for k, v in req["params"].items())
        lines.append(f"  {req['method']} {req['url']}{'?' + query if query else ''}")
        if req.get("json") is not None:
            lines.append("  " + json.dumps(req["json"], default=str))
    return "\n".join(lines)


# --------------------------------------------------------------------------- the server


def build_server(box: Toolbox) -> Any:
    """A low-level SDK ``Server`` that lists and calls ``box``'s tools."""
    require_sdk()
    import anyio
    import mcp_types as types
    from mcp.server import Server
    from mcp.shared.exceptions import MCPError

    listing = types.ListToolsResult(
        tools=[
            types.Tool(
                name=t.name,
                title=t.title,
                description=t.description,
                input_schema=t.input_schema,
                output_schema=t.output_schema,
                annotations=types.ToolAnnotations(**t.annotations()),
            )
            for t in box.tools
        ]
    )

    async def list_tools(ctx: Any, params: Any) -> Any:
        return listing

    async def call_tool(ctx: Any, params: Any) -> Any:
        tool = box.find(params.name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, box.unknown(params.name))
        outcome = await anyio.to_thread.run_sync(box.call, tool, params.arguments or {})
        return types.CallToolResult(
            content=[types.TextContent(text=text) for text in outcome.texts],
            structured_content=outcome.structured,
            is_error=outcome.is_error,
        )

    def input_schema(name: str) -> Mapping[str, Any] | None:
        tool = box.find(name)
        return tool.input_schema if tool is not None else None

    return Server(
        "willo-connector",
        version=__version__,
        title="Willo",
        instructions=INSTRUCTIONS,
        get_tool_input_schema=input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def serve_stdio(server: Any, announce: Callable[[str], None]) -> None:
    """Serve over this process's stdin/stdout until the client closes them."""
    import anyio
    from mcp.server.stdio import stdio_server

    async def run() -> None:
        async with stdio_server() as (read, write):
            announce("stdio")
            await server.run(read, write, server.create_initialization_options())

    anyio.run(run)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; a bare ``PORT`` means 127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--http {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8808")
    return host, int(port)


def check_token(host: str, token: str | None) -> None:
    """Loopback may go without a token; any other interface needs a strong one."""
    if token is not None and len(token) < MIN_TOKEN:
        raise ConfigError(f"the MCP bearer token must be at least {MIN_TOKEN} characters")
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to serve MCP on {host} without a bearer token: set WILLO_MCP_TOKEN "
            "(or --token), or serve on a loopback address such as 127.0.0.1"
        )


def rebinding_guard(host: str) -> Any:
    """On a loopback address, accept only loopback ``Host`` and ``Origin`` headers, so a web
    page cannot reach the server through DNS rebinding (the SDK does this itself only for
    127.0.0.1, localhost and ::1, not for the rest of 127.0.0.0/8)."""
    if not is_loopback(host):
        return None  # a public interface: the bearer token guards it
    from mcp.server.transport_security import TransportSecuritySettings

    names = sorted({f"[{host}]" if ":" in host else host, "127.0.0.1", "localhost", "[::1]"})
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{n}:*" for n in names],
        allowed_origins=[f"http://{n}:*" for n in names],
    )


class BearerGate:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>``."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self.expected = token.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            body = b'{"error": "unauthorized: send Authorization: Bearer <token>"}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="willo-connector"'),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: dict[str, Any]) -> bool:
        for name, value in scope.get("headers") or []:
            if name.lower() == b"authorization":
                scheme, _, given = bytes(value).partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.expected)
        return False


def serve_http(server: Any, host: str, port: int, token: str | None, announce: Callable[[str], None]) -> None:
    """Serve streamable HTTP at ``http://HOST:PORT/mcp`` until interrupted."""
    import socket

    import uvicorn

    check_token(host, token)
    app: Any = server.streamable_http_app(host=host, transport_security=rebinding_guard(host))
    if token:
        app = BearerGate(app, token)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    # Listen before announcing: a client that connects as soon as it reads the URL is
    # queued by the kernel until uvicorn accepts, instead of refused while it starts.
    sock.listen(config.backlog)
    announce(f"http://{shown}:{bound}/mcp" + (" (bearer token required)" if token else ""))
    uvicorn.Server(config).run(sockets=[sock])


def announcer(count: int) -> Callable[[str], None]:
    def announce(where: str) -> None:
        print(f"willo-connector mcp: {count} tools on {where}", file=sys.stderr, flush=True)

    return announce
