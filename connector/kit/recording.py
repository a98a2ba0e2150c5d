"""``willo-connector record``: cassettes of an action call, a workflow run, or every
scenario of a scenario file, recorded against the sandbox or a live account.

Every credential header is filtered and the key scrubbed from URLs and bodies (see
:mod:`connector.http.cassettes`). Record modes follow pytest-recording: ``rewrite``
(the default here: a fresh recording), ``all``, ``new_episodes``, ``once``, ``none``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.catalog.plugins import PluginHost
from connector.errors import ConfigError, ConnectorError
from connector.http.cassettes import record
from connector.http.client import Settings
from connector.kit import scenarios as scenario_files
from connector.sandbox import Sandbox, SandboxOptions
from connector.workflows.runtime import Call, Connector

log = logging.getLogger(__name__)

INPUTS_FILE = "inputs.json"


@dataclass
class Target:
    """Where recordings are made: a connector, the sandbox behind it (if any), and the
    secrets to scrub."""

    conn: Connector
    sandbox: Sandbox | None = None
    secrets: list[str] = field(default_factory=list)

    def fresh(self) -> None:
        """Back to the sandbox's demo data (nothing to do on a live account)."""
        if self.sandbox is not None:
            self.sandbox.reset()


@contextlib.contextmanager
def target(
    *, sandbox: bool, host: PluginHost | None = None, schema_mode: str | None = None
) -> Iterator[Target]:
    """A connector on a fresh in-process sandbox (demo data), or on the account the
    environment names (``WILLO_API_KEY``, ``WILLO_BASE_URL``...)."""
    with contextlib.ExitStack() as stack:
        box = None
        if sandbox:
            box = stack.enter_context(Sandbox(SandboxOptions(rate_limit=(0, 0), webhook_backoff=0.05)))
            settings = Settings.from_env(base_url=box.base_url, api_key=box.api_key, auth_scheme="", rate="0")
        else:
            settings = Settings.from_env()
            if not settings.api_key:
                raise ConfigError(
                    "set WILLO_API_KEY (and WILLO_BASE_URL) to record against a live account, "
                    "or use --sandbox"
                )
        conn = Connector(host, settings=settings, schema_mode=schema_mode)
        conn.serial = True  # vcrpy records one request at a time
        try:
            yield Target(conn, box, [settings.api_key or ""])
        finally:
            if conn._client is not None:
                conn._client.close()


def record_call(
    t: Target, action_id: str, inputs: Mapping[str, Any], cassette: str | Path, mode: str = "rewrite"
) -> Call:
    """One action call, recorded into ``cassette``."""
    t.conn.catalog.get(action_id, "action")  # an unknown id fails before a file is written
    with record(cassette, mode, t.secrets):
        return t.conn.call(action_id, inputs)


def record_run(
    t: Target,
    workflow: str | Path,
    inputs: Mapping[str, Any],
    cassette: str | Path,
    *,
    event: Any = None,
    mode: str = "rewrite",
) -> Any:
    """One workflow run (every request of every step), recorded into ``cassette``;
    replay it with ``willo-connector run WORKFLOW --cassette CASSETTE``."""
    from connector.kit.harness import run_workflow

    wf_path = Path(workflow)
    run_workflow(t.conn, wf_path, inputs, event=event, check_only=True)  # problems before recording
    with record(cassette, mode, t.secrets):
        return run_workflow(t.conn, wf_path, inputs, event=event).result


@dataclass
class Recorded:
    id: str
    cassette: Path
    inputs: dict[str, Any]


def record_scenarios(
    t: Target,
    file: str | Path,
    out: str | Path,
    *,
    only: tuple[str, ...] | list[str] = (),
    mode: str = "rewrite",
) -> list[Recorded]:
    """One cassette per scenario of ``file``, as ``OUT/<id>.yaml``; the inputs each was
    recorded with are merged into ``OUT/inputs.json``. Setups are not recorded; on the
    sandbox, each scenario starts from fresh demo data."""
    found = scenario_files.load(file, t.conn.catalog)
    unknown = sorted(set(only) - set(found))
    if unknown:
        raise ConnectorError(f"{file}: no scenario for {', '.join(unknown)}")
    out_dir = Path(out)
    done: list[Recorded] = []
    for sid, sc in sorted(found.items()):
        if only and sid not in only:
            continue
        t.fresh()
        inputs = scenario_files.prepare(t.conn, sc)
        manifest = t.conn.catalog.get(sid)
        path = out_dir / f"{sid}.yaml"
        with record(path, mode, t.secrets):
            scenario_files.exercise(t.conn, manifest, inputs)
        done.append(Recorded(sid, path, inputs))
    save_inputs(out_dir, {r.id: r.inputs for r in done})
    return done


def save_inputs(out_dir: Path, inputs: dict[str, Any]) -> None:
    """Merge ``{id: inputs}`` into ``out_dir/inputs.json`` (sorted, written atomically,
    under a lock: two recordings at once both keep their entries)."""
    import fcntl
    import threading

    path = out_dir / INPUTS_FILE
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = os.open(out_dir, os.O_RDONLY)  # the lock is the folder's: no stray lock file
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        saved = load_inputs(out_dir)
        saved.update(inputs)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path)
    finally:
        os.close(folder)


def load_inputs(out_dir: str | Path) -> dict[str, Any]:
    path = Path(out_dir) / INPUTS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConnectorError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConnectorError(f"{path}: expected an object of {{id: inputs}}")
    return data
