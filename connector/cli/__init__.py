"""The ``willo-connector`` command line.

Commands live in one module per group and are imported only when used, so that
``--help`` and ``--version`` start fast. Expected failures (:class:`ConnectorError`)
become one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, NoReturn

import click

from connector import __version__

#: command name -> (module, attribute, one-line help shown by --help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "plugins": ("connector.cli.catalog_cmds", "plugins", "Loaded plugins, versions and load errors."),
    "actions": ("connector.cli.catalog_cmds", "actions", "List the actions in the catalog."),
    "triggers": ("connector.cli.catalog_cmds", "triggers", "List the triggers in the catalog."),
    "show": ("connector.cli.catalog_cmds", "show", "Show one action or trigger manifest."),
    "catalog": ("connector.cli.catalog_cmds", "catalog", "Export every action and trigger with schemas."),
    "options": ("connector.cli.catalog_cmds", "options", "List live choices for an input field."),
    "validate": ("connector.cli.catalog_cmds", "validate", "Validate manifests and workflows."),
    "call": ("connector.cli.call_cmd", "call", "Call one action."),
    "run": ("connector.cli.run_cmd", "run", "Run a workflow."),
    "runs": ("connector.cli.run_cmd", "runs", "List journaled workflow runs; runs show RUN_ID."),
    "resume": ("connector.cli.run_cmd", "resume", "Resume an interrupted run."),
    "rerun": ("connector.cli.run_cmd", "rerun", "Run a finished run again (--failed: only what failed)."),
    "poll": ("connector.cli.trigger_cmds", "poll", "Poll a polling trigger."),
    "listen": ("connector.cli.trigger_cmds", "listen", "Receive webhooks for workflows."),
    "state": ("connector.cli.trigger_cmds", "state", "Inspect, prune, back up or vacuum the state store."),
    "events": ("connector.cli.events_cmd", "events", "List, show, retry or drop trigger events."),
    "connections": (
        "connector.cli.accounts_cmd",
        "connections",
        "The connections (Willo accounts), keys' fingerprints, today's use; test one.",
    ),
    "config": ("connector.cli.accounts_cmd", "config", "Show every setting and where it came from."),
    "serve": (
        "connector.cli.serve_cmd",
        "serve",
        "Serve every workflow of a folder: schedules, polls, webhooks.",
    ),
    "worker": ("connector.cli.temporal_cmd", "worker", "Run Temporal workers (pip install '.[temporal]')."),
    "sandbox": ("connector.cli.sandbox_cmd", "sandbox", "Run the local Willo simulator."),
    "record": ("connector.cli.record_cmd", "record", "Record cassettes of a call, a run or scenarios."),
    "new": ("connector.cli.new_cmd", "new", "Start a plugin, or add an action or trigger to one."),
    "mcp": ("connector.cli.interop_cmds", "mcp", "Serve the catalog as MCP tools."),
    "export": ("connector.cli.interop_cmds", "export", "Export the catalog (OpenAPI, Swagger 2.0, docs)."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[cmd_name]
        cmd: click.Command = getattr(importlib.import_module(module), attr)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, COMMANDS[n][2]) for n in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        """The config file's settings go in first, under the environment, so that every
        option read from a WILLO_* variable (--log-format, --state-dir...) sees them;
        they are taken back when the command ends. A broken file is reported when a
        command runs (--help and --version still work)."""
        from connector import config

        try:
            added, problem = config.apply_settings(), None
        except Exception as exc:  # a ConfigError: said by invoke()
            added, problem = {}, str(exc)
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except BaseException:
            config.unapply(added)
            raise
        ctx.call_on_close(lambda: config.unapply(added))
        ctx.meta["willo.config_problem"] = problem
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        from connector.errors import ConnectorError

        if ctx.meta.get("willo.config_problem"):
            fail(ctx.meta["willo.config_problem"])
        try:
            return super().invoke(ctx)
        except ConnectorError as exc:
            if os.environ.get("WILLO_CONNECTOR_DEBUG") and exc.__cause__ is not None:
                import traceback  # a plugin's bug: its traceback, on request

                traceback.print_exception(exc.__cause__, file=sys.stderr)
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `actions | head`: the reader has all it wanted
            pipe_closed()
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug: one line, the traceback only on request
            if os.environ.get("WILLO_CONNECTOR_DEBUG"):
                raise
            fail(
                f"internal error: {type(exc).__name__}: {exc} "
                "(set WILLO_CONNECTOR_DEBUG=1 for the traceback, and please report it)",
                70,
            )


def run() -> NoReturn:
    """The console script: :func:`main`, and its exit. A process that talked to
    Temporal ends without the interpreter's teardown: the Temporal client's Rust
    threads outlive it, and can abort it (SIGABRT, "Fatal Python error" at
    finalization) after the command has done its work and said so. The exit
    handlers (a quota block given back, logs flushed) run first, as at any exit."""
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    temporal = sys.modules.get("connector.engines.temporal.client")
    if not getattr(temporal, "connected", False):
        raise SystemExit(code)
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    import atexit
    import contextlib

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader gone away: nothing more reaches it
            stream.flush()
    os._exit(code or 0)


def pipe_closed() -> NoReturn:
    """The reader of stdout went away (``| head``): nothing more reaches it, so stop
    quietly, as a command killed by SIGPIPE does (141), without failing again when the
    interpreter flushes stdout at exit."""
    import contextlib

    with contextlib.suppress(OSError, ValueError):  # not a real file (CliRunner)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(141)


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` (each line of it, secrets scrubbed) to stderr and exit."""
    from connector.redaction import scrub
    from connector.telemetry import log_format, status_line

    if log_format() == "json":  # one JSON line, like every other line on stderr
        click.echo(status_line(scrub(message).removeprefix("error: "), "error"), err=True)
        sys.exit(code)
    for line in scrub(message).splitlines() or [""]:
        click.echo(f"error: {line}" if not line.startswith(("error:", " ")) else line, err=True)
    sys.exit(code)


LEVELS = ("debug", "info", "warning", "error")


def setup_logging(verbose: int, log_format: str = "text", level: str | None = None) -> None:
    """Log lines on stderr: ``text`` (time, level, logger, message, then the context
    fields that apply: run id, step, trigger, event id...) or ``json`` (one object a
    line). ``-v`` is info, ``-vv`` debug (with HTTP); ``WILLO_LOG_LEVEL`` sets the
    level when no ``-v`` is given. Every line is scrubbed of secrets."""
    import logging  # not at module level: --help and --version need none of it

    from connector import telemetry

    telemetry.set_format(log_format)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(telemetry.formatter(log_format))
    handler.addFilter(telemetry.ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if verbose == 0 and level:
        root.setLevel(getattr(logging, level.upper()))
    else:
        root.setLevel(logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="willo-connector")
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-vv for HTTP).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="WILLO_LOG_FORMAT",
    help="Log lines as text or as one JSON object a line (WILLO_LOG_FORMAT).",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS),
    envvar="WILLO_LOG_LEVEL",
    help="Log level when no -v is given (WILLO_LOG_LEVEL); default warning.",
)
def main(verbose: int, log_format: str, log_level: str | None) -> None:
    """Drive the Willo Integration API V2 from YAML actions, triggers and workflows.

    Settings come from the environment: WILLO_API_KEY, WILLO_BASE_URL,
    WILLO_AUTH_SCHEME (e.g. Bearer), WILLO_RATE_LIMIT (per second/per minute, default
    10/100), WILLO_SCHEMA_MODE (warn, strict or off), WILLO_STATE_DIR; and from the
    config file (WILLO_CONFIG, else connections.yaml in the XDG config folder), which
    also names more connections (--connection): see `config show`.
    """
    from connector.redaction import register_env

    register_env()  # from here on, no output, error or log line shows these values
    setup_logging(verbose, log_format, log_level)
