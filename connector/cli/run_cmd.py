"""``run``, ``runs`` and ``resume``: workflows, their journal, and resuming."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import click

from connector.cli.common import (
    connection_option,
    csv_origins,
    echo,
    emit_json,
    input_option,
    json_option,
    parse_inputs,
    say,
    stdout_is_terminal,
)

engine_option = click.option(
    "--engine",
    type=click.Choice(["local", "temporal"]),
    default="local",
    show_default=True,
    envvar="WILLO_ENGINE",
    help="Where units of work run: threads of this process, or Temporal workers (docs/temporal.md).",
)

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    envvar="WILLO_STATE_DIR",
    help="Folder of the state store (default: $XDG_STATE_HOME/willo-connector).",
)


def _load_mapping(path: str, what: str) -> Any:
    from connector.errors import InputError
    from connector.yamlio import YamlError, load_file

    try:
        return load_file(path).data
    except YamlError as exc:
        raise InputError(f"{what}: {exc}") from None


def _collect_inputs(inputs: tuple[str, ...], input_file: str | None, schema: Any) -> dict[str, Any]:
    from connector.errors import InputError

    values: dict[str, Any] = {}
    if input_file:
        data = _load_mapping(input_file, "--input-file")
        if not isinstance(data, dict):
            raise InputError(f"{input_file}: --input-file must hold a mapping of inputs")
        values.update(data)
    values.update(parse_inputs(inputs, (schema or {}).get("properties")))
    return values


#: at most this many rejected items are listed in the human report
SHOW_FAILED = 50


def _report(result: Any, as_json: bool, engine: str = "local") -> None:
    from connector.cli.call_cmd import show_requests
    from connector.workflows.runner import summarize

    if as_json:  # indented on a terminal, one line elsewhere (as `call --json` prints a list)
        emit_json(result.as_dict(), indent=stdout_is_terminal())
    else:
        head = f"run {result.run_id}" if result.run_id else "dry run"
        click.echo(f"{head}: {result.workflow}" + (f" (rerun of {result.parent})" if result.parent else ""))
        for step in result.steps:
            if result.dry_run and step.requests:
                click.echo(f"  step {step.id} ({step.action}) would send:")
                show_requests(step.requests)
            detail = step.error if step.error else summarize(step.output)
            if step.retries:
                detail += f" ({step.retries} retried)"
            echo(f"  {step.status:<9} {step.id:<16} {step.action:<36} {detail}")
            _show_failed_items(step)
        click.echo(result.status if not result.dry_run else f"{result.status} (dry run: nothing sent)")
    if result.status == "interrupted" and result.run_id and engine == "local":
        say(f"run {result.run_id} interrupted; resume with `willo-connector resume {result.run_id}`")
        raise SystemExit(130)
    if result.status != "succeeded":
        if not as_json:
            say(f"error: {result.error}", "error")
        raise SystemExit(1)


def _show_failed_items(step: Any) -> None:
    """The rejected rows of a foreach, by CSV line when the items came from a CSV."""
    from connector.redaction import scrub

    failed = [i for i in step.items or [] if i["status"] == "failed"]
    for entry in failed[:SHOW_FAILED]:
        where = entry.get("source") or f"item {entry['item']}"
        click.echo(scrub(f"      rejected {where}: {entry.get('error', '')}"))
    if len(failed) > SHOW_FAILED:
        click.echo(f"      ... and {len(failed) - SHOW_FAILED} more (see --json or runs show)")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM or a first Ctrl-C asks the run to stop at its next unit (units in flight
    finish, and it can be resumed); a second Ctrl-C stops at once."""
    cancel = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return

    def handler(signum: int, _frame: Any) -> None:
        if cancel.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        cancel.set()
        say("stopping after the units in flight (Ctrl-C again to stop at once)")

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield cancel
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def _announce(run_id: str) -> None:
    say(f"run {run_id} started")


@click.command()
@click.argument("workflow", type=click.Path(dir_okay=False))
@input_option("One workflow input; K=@file.csv loads rows, K=@file.json a value. Repeatable.")
@click.option(
    "--input-file", type=click.Path(exists=True, dir_okay=False), help="A JSON or YAML mapping of inputs."
)
@click.option(
    "--event",
    type=click.Path(exists=True, dir_okay=False),
    help="A JSON or YAML trigger event, for a test run.",
)
@click.option("--dry-run", is_flag=True, help="Send nothing; print each request; use samples as outputs.")
@click.option(
    "--cassette", type=click.Path(dir_okay=False), help="Answer every request from this vcrpy cassette."
)
@click.option(
    "--sandbox",
    "use_sandbox",
    is_flag=True,
    help="Run against the local simulator with demo data (no Willo account needed).",
)
@engine_option
@click.option(
    "--detach",
    is_flag=True,
    help="With --engine temporal: print the run's workflow id once it has started and return.",
)
@connection_option
@state_dir_option
@json_option
def run(
    workflow: str,
    inputs: tuple[str, ...],
    input_file: str | None,
    event: str | None,
    dry_run: bool,
    cassette: str | None,
    use_sandbox: bool,
    engine: str,
    detach: bool,
    connection: str | None,
    state_dir: str | None,
    as_json: bool,
) -> None:
    """Validate and run WORKFLOW (a workflow YAML file)."""
    from connector.cli.context import connector_for
    from connector.engines.local import LocalExecutor
    from connector.errors import InputError
    from connector.state.store import StateStore
    from connector.workflows.model import load
    from connector.workflows.runner import Runner, check_event

    if detach and engine != "temporal":
        raise InputError("--detach goes with --engine temporal (a local run runs in this process)")
    if engine == "temporal" and not dry_run:
        if use_sandbox or cassette:
            flag = "--sandbox" if use_sandbox else "--cassette"
            raise InputError(
                f"{flag} answers requests in this process; with --engine temporal the workers send them "
                "(point them at a sandbox: willo-connector sandbox, WILLO_BASE_URL)"
            )
        _run_on_temporal(workflow, inputs, input_file, event, detach, as_json, connection)
        return
    store = None if dry_run else StateStore(state_dir)
    with (
        connector_for(
            dry_run=dry_run, sandbox=use_sandbox, cassette=cassette, connection=connection, store=store
        ) as conn,
        stop_on_signals() as cancel,
    ):
        wf = load(workflow, conn.catalog, connections=conn.pool_names())
        check_connection(wf, connection)
        values = _collect_inputs(inputs, input_file, wf.data.get("inputs"))
        trigger = None
        if event:
            trigger = _load_mapping(event, "--event")
            check_event(wf, conn, trigger, event)
        if use_sandbox and not as_json:
            say(f"sandbox: {conn.client.settings.base_url}")
        runner = Runner(conn, wf, store=store, executor=LocalExecutor(), cancel=cancel, on_start=_announce)
        result = runner.start(values, trigger, origins=csv_origins(values))
    _report(result, as_json)


def _run_on_temporal(
    workflow: str,
    inputs: tuple[str, ...],
    input_file: str | None,
    event: str | None,
    detach: bool,
    as_json: bool,
    connection: str | None = None,
) -> None:
    """The local run's static checks, here, then the run on Temporal (on the account
    of ``connection``: the workflow's, else --connection, else ``default``)."""
    from connector import connections as named
    from connector.cli.temporal_cmd import temporal_settings
    from connector.workflows.model import load
    from connector.workflows.runner import check_event, prepare_inputs
    from connector.workflows.runtime import Connector

    settings = temporal_settings()
    from connector.engines.temporal import client as tc

    known = named.load()
    known.get(connection, "--connection: ")
    conn = Connector(dry_run=True)
    wf = load(workflow, conn.catalog, connections=known.names())
    check_connection(wf, connection)
    account = wf.data.get("connection") or connection or named.DEFAULT
    values = _collect_inputs(inputs, input_file, wf.data.get("inputs"))
    trigger = None
    if event:
        trigger = _load_mapping(event, "--event")
        check_event(wf, conn, trigger, event)
    origins = csv_origins(values)
    prepared = prepare_inputs(wf, values, origins)
    req = tc.run_request(settings, wf, prepared, trigger, origins, account)

    async def start() -> Any:
        return await tc.start_run(await tc.connect(settings), settings, req)

    if detach:
        import asyncio

        run_id = asyncio.run(start()).id
        if as_json:
            emit_json({"run_id": run_id, "engine": "temporal", "status": "started"})
        else:
            click.echo(run_id)
        return
    _report(_follow_on_temporal(start), as_json, engine="temporal")


def _follow_on_temporal(start: Callable[[], Awaitable[Any]]) -> Any:
    """Start a run on Temporal (``start`` gives its handle), say so, and wait for its
    result as a local run is waited for; Ctrl-C stops the waiting, not the run."""
    import asyncio

    from connector.engines.temporal import client as tc

    async def go() -> Any:
        handle = await start()
        _announce(handle.id)
        try:
            return await tc.wait(handle)
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        click.echo(
            "stopped waiting; the run goes on on Temporal (willo-connector runs show --engine temporal ID)",
            err=True,
        )
        raise SystemExit(130) from None


def check_connection(wf: Any, connection: str | None) -> None:
    """``--connection`` gives a workflow's connection only when the workflow names none:
    running a workflow written for one account against another is refused."""
    from connector.errors import InputError

    named = wf.data.get("connection")
    if connection and named and named != connection:
        raise InputError(
            f"{wf.doc.where('/connection')}: /connection: the workflow runs on connection {named}; "
            f"--connection {connection} would not apply (drop one of them)"
        )


def _run_connection(row: Any) -> str | None:
    """The connection a run was started with (None: ``default``, or a run from before
    connections)."""
    import json

    name = json.loads(row["settings"] or "{}").get("connection")
    return str(name) if name else None


def _unit_connector(store: Any, conn: Any, run_id: str, step: str, item: int | None) -> Any:
    """The connector of the account a unit was sent to (for its reconcile lookup)."""
    from connector.errors import ConnectorError

    rows = store.query(
        "SELECT account FROM units WHERE run_id = ? AND step = ? AND item = ?",
        (run_id, step, -1 if item is None else item),
    )
    account = rows[0]["account"] if rows else None
    if not account:
        return conn
    target = conn.using(account.split("/", 1)[0])
    if target.account.id != account:
        raise ConnectorError(
            f"step {step}: it was sent to account {account}, but connection {target.connection_name} is "
            f"now account {target.account.id}; settle it with --output-json (as Willo shows it) or "
            "--not-sent"
        )
    return target


def _temporal(fn: Any) -> Any:
    """``fn(client, settings)`` against the configured Temporal cluster."""
    import asyncio

    from connector.cli.temporal_cmd import temporal_settings

    settings = temporal_settings()
    from connector.engines.temporal import client as tc

    async def go() -> Any:
        return await fn(await tc.connect(settings), settings)

    return asyncio.run(go())


def _temporal_runs(limit: int) -> list[dict[str, Any]]:
    from connector.engines.temporal import client as tc

    found = list(_temporal(lambda client, settings: tc.list_runs(client, settings, limit)))
    for row in found:
        row["started_at"], row["finished_at"] = _when(row["started_at"]), _when(row["finished_at"])
    return found


def _status(row: Any, store: Any) -> str:
    """A run's status; ``running`` only while a live process holds its lease."""
    from connector.workflows.runner import run_is_live

    status = str(row["status"])
    if status == "running" and not run_is_live(store, row["id"]):
        return "interrupted"
    return status


def _find_run(store: Any, run_id: str) -> Any:
    from connector.errors import ConnectorError

    rows = store.find_run(run_id)
    if not rows:
        raise ConnectorError(f"no run {run_id!r} in {store.path} (see willo-connector runs)")
    if len(rows) > 1:
        raise ConnectorError(f"{run_id!r} matches {len(rows)} runs; give more of the id")
    return rows[0]


def _when(ts: float | None) -> str | None:
    import datetime

    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


@click.group(invoke_without_command=True)
@click.option("--limit", default=20, show_default=True, help="How many runs, newest first.")
@engine_option
@state_dir_option
@json_option
@click.pass_context
def runs(ctx: click.Context, limit: int, engine: str, state_dir: str | None, as_json: bool) -> None:
    """List journaled runs, newest first; `runs show RUN_ID` shows one whole, `runs
    resolve` settles a blocked unit. With --engine temporal: the runs on Temporal."""
    if ctx.invoked_subcommand is not None:
        return
    from connector.redaction import scrub
    from connector.state.store import StateStore

    items: list[dict[str, Any]] = []
    if engine == "temporal":
        items = _temporal_runs(limit)
        rows = []
    else:
        store = StateStore(state_dir)
        rows = store.runs(limit)
    for row in rows:
        units = store.units(row["id"])
        done = sum(1 for u in units.values() if u["status"] == "succeeded")
        items.append(
            {
                "id": row["id"],
                "workflow": row["name"],
                "file": row["workflow"],
                "status": _status(row, store),
                "error": scrub(row["error"]) if row["error"] else row["error"],
                "attempts": row["attempts"],
                "units_succeeded": done,
                "units": len(units),
                "started_at": _when(row["started_at"]),
                "rerun_of": row["parent"],
            }
        )
    if as_json:
        emit_json(items)
        return
    if not items:
        click.echo("no runs yet")
    for it in items:
        click.echo(
            scrub(
                f"{it['id']}  {it['status']:<11} {it['workflow']:<24} "
                f"{it['units_succeeded']}/{it['units']} units  {it['started_at']}"
                + (f"  {it['error']}" if it["error"] else "")
            )
        )


@runs.command("show")
@click.argument("run_id")
@engine_option
@state_dir_option
@json_option
def runs_show(run_id: str, engine: str, state_dir: str | None, as_json: bool) -> None:
    """One run whole: its steps and items, inputs (secrets redacted), outputs, errors
    and timings. A Temporal run (--engine temporal, or an id such as willo-run-...)
    is read from Temporal: its history is its journal."""
    from connector.engines.temporal import looks_like_run_id
    from connector.state.store import StateStore

    if engine == "temporal" or looks_like_run_id(run_id):
        store = StateStore(state_dir) if engine != "temporal" else None
        if store is not None and store.find_run(run_id):
            info = _describe_run(store, _find_run(store, run_id))
        else:
            info = _describe_temporal_run(run_id)
    else:
        store = StateStore(state_dir)
        info = _describe_run(store, _find_run(store, run_id))
    if as_json:
        emit_json(info)
        return
    _print_run(info)


def _describe_run(store: Any, row: Any) -> dict[str, Any]:
    """A run as a dict: the run, then every step of its workflow (branches included,
    in order) with the journal's record of it."""
    import json

    from connector.redaction import scrub_value
    from connector.state.store import loads
    from connector.workflows.model import walk_steps
    from connector.workflows.runner import item_labels
    from connector.yamlio import YamlError, load_text

    settings = json.loads(row["settings"] or "{}")
    origins = settings.get("origins") or {}
    units = store.units(row["id"])
    try:
        steps = [
            s for s, _p, _path in walk_steps(load_text(row["source"], row["workflow"]).data.get("steps"))
        ]
    except (YamlError, AttributeError):
        steps = []
    out_steps = []
    for step in steps:
        mine = sorted((u for (sid, _), u in units.items() if sid == step.get("id")), key=lambda u: u["item"])
        out_steps.append(_describe_step(step, mine, origins, item_labels))
    finished = row["finished_at"]
    return scrub_value(
        {
            "id": row["id"],
            "workflow": row["name"],
            "file": row["workflow"],
            "status": _status(row, store),
            "error": row["error"],
            "attempts": row["attempts"],
            "rerun_of": row["parent"],
            "started_at": _when(row["started_at"]),
            "finished_at": _when(finished),
            "duration_s": round(finished - row["started_at"], 3) if finished else None,
            "inputs": loads(row["inputs"]),
            "trigger": loads(row["trigger"]),
            "steps": out_steps,
        }
    )


def _describe_temporal_run(run_id: str) -> dict[str, Any]:
    """A Temporal run in the shape of :func:`_describe_run`: its request (from the
    history's first event), its journal (the result's, or the running workflow's)."""
    import json

    from connector.engines.temporal import client as tc
    from connector.engines.temporal import wire
    from connector.redaction import scrub_value
    from connector.workflows.model import walk_steps
    from connector.workflows.runner import item_labels
    from connector.yamlio import YamlError, load_text

    data = _temporal(lambda client, _settings: tc.describe_run(client, run_id))
    req = data["request"] or {}
    result = data["result"] or {}
    outputs = {s["id"]: s.get("output") for s in result.get("steps") or []}
    rows: dict[str, list[dict[str, Any]]] = {}
    for key, row in (data["journal"] or {}).items():
        step, item = wire.split(key)
        if "output" in row:
            output = wire.shown(json.loads(row["output"])) if row["output"] is not None else None
        elif item >= 0:
            whole = outputs.get(step)
            output = whole[item] if isinstance(whole, list) and item < len(whole) else None
        else:
            output = outputs.get(step)
        status = row.get("status")
        if status == "failed" and row.get("landing"):  # it may have landed (or did): as a local journal says
            status = row["landing"]
        rows.setdefault(step, []).append(
            {
                **row,
                "status": status,
                "item": item,
                "tries": row.get("tries") or 0,
                "output": json.dumps(output),
                "error": row.get("error"),
                "started_at": row.get("started_at"),
                "updated_at": row.get("updated_at") or row.get("started_at") or 0.0,
            }
        )
    origins = req.get("origins") or {}
    try:
        steps = [
            s
            for s, _p, _path in walk_steps(
                load_text(req.get("source") or "", req.get("path") or "").data.get("steps")
            )
        ]
    except (YamlError, AttributeError):
        steps = []
    out_steps = [
        _describe_step(
            step, sorted(rows.get(str(step.get("id")), []), key=lambda u: u["item"]), origins, item_labels
        )
        for step in steps
    ]
    started, finished = data["started_at"], data["finished_at"]
    status = result.get("status") or data["execution"]
    waiting = [_waiting_entry(run_id, w) for w in (data.get("waiting") or {}).values()]
    if waiting:
        status = "blocked"  # running, and waiting for an operator
    return scrub_value(
        {
            "id": run_id,
            "engine": "temporal",
            "workflow": data["workflow"],
            "file": data["file"],
            "status": status,
            "error": result.get("error"),
            "waiting": waiting,
            "attempts": 1,
            "rerun_of": result.get("rerun_of") or data.get("rerun_of"),
            "started_at": _when(started),
            "finished_at": _when(finished),
            "duration_s": round(finished - started, 3) if finished and started else None,
            "inputs": wire.shown(req.get("inputs")),
            "trigger": wire.shown(req.get("trigger")),
            "steps": out_steps,
        }
    )


def _waiting_entry(run_id: str, w: dict[str, Any]) -> dict[str, Any]:
    """A unit a Temporal run waits on, and the commands that settle it."""
    item = int(w["item"])
    base = f"willo-connector runs resolve {run_id} --step {w['step']}" + (
        f" --item {item}" if item >= 0 else ""
    )
    return {
        "step": w["step"],
        "item": item,
        "label": w.get("label") or "",
        "action": w["action"],
        "account": w["account"],
        "error": w["error"],
        "sent": f"{base} --sent",
        "not_sent": f"{base} --not-sent",
    }


def _unit_dict(u: Any) -> dict[str, Any]:
    from connector.state.store import loads

    took = u["updated_at"] - u["started_at"] if u["started_at"] is not None else None
    d: dict[str, Any] = {
        "status": u["status"],
        "tries": u["tries"],
        "started_at": _when(u["started_at"]),
        "finished_at": _when(u["updated_at"]) if u["status"] not in ("sending",) else None,
        "duration_s": round(took, 3) if took is not None else None,
        "output": loads(u["output"]),
    }
    if u["error"]:
        d["error"] = u["error"]
    return d


def _describe_step(
    step: dict[str, Any], mine: list[Any], origins: dict[str, Any], labels: Any
) -> dict[str, Any]:
    kind = step.get("use") or ("switch" if "switch" in step else "if")
    entry: dict[str, Any] = {"id": step.get("id"), "action": kind}
    if "foreach" not in step:
        entry.update(_unit_dict(mine[0]) if mine else {"status": "not run"})
        return entry
    items = [u for u in mine if u["item"] >= 0]
    names = labels(step, origins, max((u["item"] for u in items), default=-1) + 1) if items else []
    entry["items"] = []
    for u in items:
        item = {"item": u["item"], **_unit_dict(u)}
        if names and not names[u["item"]].startswith("item "):
            item["source"] = names[u["item"]]
        entry["items"].append(item)
    statuses = [u["status"] for u in items]
    skipped = any(u["item"] < 0 and u["status"] == "skipped" for u in mine)
    entry["status"] = (
        "skipped"
        if skipped
        else "not run"
        if not statuses
        else "failed"
        if any(x in ("failed", "ambiguous", "sent") for x in statuses)
        else "succeeded"
        if all(x == "succeeded" for x in statuses)
        else "incomplete"
    )
    starts = [u["started_at"] for u in items if u["started_at"] is not None]
    ends = [u["updated_at"] for u in items]
    if starts:
        entry["started_at"], entry["finished_at"] = _when(min(starts)), _when(max(ends))
        entry["duration_s"] = round(max(ends) - min(starts), 3)
    entry["tries"] = sum(u["tries"] for u in items)
    return entry


def _print_run(info: dict[str, Any]) -> None:
    import json

    from connector.redaction import scrub
    from connector.workflows.runner import summarize

    def echo(text: str) -> None:
        click.echo(scrub(text))

    echo(f"run {info['id']}  {info['status']}  {info['workflow']} ({info['file']})")
    took = f" ({info['duration_s']}s)" if info["duration_s"] is not None else ""
    end = info["finished_at"] or "-"
    echo(f"  started {info['started_at']}  finished {end}{took}  attempts {info['attempts']}")
    if info["rerun_of"]:
        echo(f"  rerun of {info['rerun_of']}")
    echo(f"  inputs: {json.dumps(info['inputs'])[:400]}")
    if info["trigger"]:
        echo(f"  trigger: {json.dumps(info['trigger'])[:400]}")
    if info["error"]:
        echo(f"  error: {info['error']}")
    echo("  steps:")
    for w in info.get("waiting") or []:
        where = f"step {w['step']}" + (f" {w['label'] or 'item ' + str(w['item'])}" if w["item"] >= 0 else "")
        echo(f"  waiting for an operator: {where} ({w['action']}, account {w['account']}): {w['error']}")
        echo(f"    check Willo, then: {w['sent']} [--output-json JSON]")
        echo(f"                  or: {w['not_sent']}")
    for step in info["steps"]:
        took = f"{step['duration_s']}s" if step.get("duration_s") is not None else ""
        if "items" in step:
            counts: dict[str, int] = {}
            for item in step["items"]:
                counts[item["status"]] = counts.get(item["status"], 0) + 1
            detail = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            retried = sum(max(0, i["tries"] - 1) for i in step["items"])
            detail += f", {retried} retried" if retried else ""
        else:
            detail = step.get("error") or summarize(step.get("output"))
        echo(f"    {step['status']:<10} {step['id']:<16} {step['action']:<36} {took:>8}  {detail}")
        for item in step.get("items", []):
            if item["status"] != "succeeded":
                where = item.get("source") or f"item {item['item']}"
                echo(f"        {item['status']:<10} {where}: {item.get('error', '')}")


@runs.command("resolve")
@click.argument("run_id")
@click.option("--step", required=True, help="The step id of the unit to settle.")
@click.option("--item", type=int, help="The foreach item (0-based) of the unit, for a foreach step.")
@click.option("--sent", "sent", flag_value=True, default=None, help="It landed in Willo (you checked).")
@click.option("--not-sent", "sent", flag_value=False, help="It is not in Willo: resume sends it again.")
@click.option(
    "--output-json",
    metavar="JSON",
    help="With --sent: the unit's output, the resource as Willo shows it (checked against the "
    "action's output schema). Default: the 2xx body kept when it was sent, else the action's "
    "reconcile lookup.",
)
@engine_option
@state_dir_option
@json_option
def resolve(
    run_id: str,
    step: str,
    item: int | None,
    sent: bool | None,
    output_json: str | None,
    engine: str,
    state_dir: str | None,
    as_json: bool,
) -> None:
    """Settle a unit that may have been sent (after checking Willo), so `resume` can go
    on. A Temporal run (an id such as willo-run-..., or --engine temporal) waits for
    this and goes on by itself."""
    import json

    from connector.cli.context import connector_for
    from connector.errors import InputError
    from connector.state.store import StateStore
    from connector.triggers.dispatch import requeue_event_of
    from connector.workflows.runner import settle

    if sent is None:
        raise InputError("runs resolve: say --sent or --not-sent")
    output = None
    if output_json is not None:
        if not sent:
            raise InputError("runs resolve: --output-json goes with --sent")
        try:
            output = json.loads(output_json)
        except (ValueError, RecursionError) as exc:
            raise InputError(f"--output-json: not JSON ({str(exc)[:80]})") from None
    store = StateStore(state_dir)
    if _on_temporal(store, run_id, engine):
        _resolve_on_temporal(run_id, step, item, sent, output, as_json)
        return
    row = _find_run(store, run_id)
    with connector_for(connection=_run_connection(row), store=store) as conn:
        done = settle(
            store,
            lambda: _unit_connector(store, conn, row["id"], step, item),
            conn.catalog,
            row["id"],
            step,
            item,
            sent=sent,
            output=output,
        )
    event = requeue_event_of(store, row)
    done = {"run_id": row["id"], **done, "event_requeued": event}
    if as_json:
        emit_json(done)
        return
    where = f"step {step}" + (f" item {done['item']}" if done["item"] != -1 else "")
    click.echo(f"run {row['id']}: {where} settled as {done['status']}")
    if event is not None:
        click.echo(f"event {event} requeued: the listener or poller resumes the run")
    else:
        click.echo(f"continue with: willo-connector resume {row['id']}")


def _on_temporal(store: Any, run_id: str, engine: str) -> bool:
    """Is ``run_id`` a Temporal run: no local run has it, and ``--engine temporal``
    (or ``WILLO_ENGINE``) says so or its id does? A local run stays local whatever the
    default engine is."""
    from connector.engines.temporal import looks_like_run_id

    if store.find_run(run_id):
        return False
    return engine == "temporal" or looks_like_run_id(run_id)


def _resolve_on_temporal(
    run_id: str, step: str, item: int | None, sent: bool, output: Any, as_json: bool
) -> None:
    """Settle the unit a Temporal run waits on; the run goes on by itself."""
    from connector.engines.temporal import client as tc

    done = _temporal(lambda client, _settings: tc.resolve(client, run_id, step, item, sent, output))
    done = {"run_id": run_id, "engine": "temporal", **done}
    if as_json:
        emit_json(done)
        return
    where = f"step {step}" + (f" item {done['item']}" if done["item"] != -1 else "")
    click.echo(f"run {run_id}: {where} settled as {done['status']}; the run goes on")
    click.echo(f"follow it with: willo-connector runs show {run_id}")


@click.command()
@click.argument("run_id")
@state_dir_option
@json_option
def resume(run_id: str, state_dir: str | None, as_json: bool) -> None:
    """Continue RUN_ID without resending any step or item that completed. A failed
    Temporal run goes on in a new run linked to it (as `rerun --failed`); a running one
    goes on by itself (see `runs resolve`)."""
    import json

    from connector.cli.context import connector_for
    from connector.engines.local import LocalExecutor
    from connector.errors import ConnectorError
    from connector.state.store import StateStore
    from connector.triggers.dispatch import requeue_event_of
    from connector.workflows.model import load
    from connector.workflows.runner import Runner

    store = StateStore(state_dir)
    if _on_temporal(store, run_id, "local"):
        # a running one goes on by itself (a lost worker's units go to another; a unit that
        # may have landed waits for `runs resolve`); a finished one cannot be reopened, so
        # what failed runs again in a new run linked to it, as `rerun --failed`
        _rerun_on_temporal(run_id, True, as_json)
        return
    row = _find_run(store, run_id)
    if row["status"] == "succeeded":
        raise ConnectorError(f"run {row['id']} already succeeded; nothing to resume")
    with connector_for(connection=_run_connection(row), store=store) as conn, stop_on_signals() as cancel:
        wf = load(Path(row["workflow"]), conn.catalog, text=row["source"], connections=conn.pool_names())
        runner = Runner(conn, wf, store=store, executor=LocalExecutor(), cancel=cancel, on_start=_announce)
        settings = json.loads(row["settings"] or "{}")
        settings.update(pid=os.getpid(), owner=store.leases.owner)
        with store.tx() as db:
            db.execute("UPDATE runs SET settings = ? WHERE id = ?", (json.dumps(settings), row["id"]))
        result = runner.resume(row["id"], json.loads(row["inputs"]), json.loads(row["trigger"]))
    if result.status == "succeeded":
        requeue_event_of(store, row)  # its parked event: redispatched, it finds the run done
    _report(result, as_json)


@click.command()
@click.argument("run_id")
@click.option(
    "--failed",
    "only_failed",
    is_flag=True,
    help="Re-run only what did not succeed; reuse the outputs of what did.",
)
@state_dir_option
@json_option
def rerun(run_id: str, only_failed: bool, state_dir: str | None, as_json: bool) -> None:
    """Run the finished run RUN_ID again, as a new run linked to it (same workflow
    source, inputs and trigger event). With --failed, only its failed (and unstarted)
    units run; a unit that may have landed is looked up before anything is resent."""
    import json

    from connector.cli.context import connector_for
    from connector.engines.local import LocalExecutor
    from connector.errors import ConnectorError
    from connector.state.store import StateStore
    from connector.workflows.model import load
    from connector.workflows.runner import Runner

    store = StateStore(state_dir)
    if _on_temporal(store, run_id, "local"):
        _rerun_on_temporal(run_id, only_failed, as_json)
        return
    row = _find_run(store, run_id)
    status = _status(row, store)
    if status in ("running", "interrupted"):
        hint = (
            "it is still running" if status == "running" else f"resume it: willo-connector resume {row['id']}"
        )
        raise ConnectorError(f"run {row['id']} has not finished; {hint}")
    if only_failed and status == "blocked":
        raise ConnectorError(
            f"run {row['id']} is blocked on a unit that may have been sent: settle it with "
            f"`willo-connector runs resolve {row['id']} ...` (see its error), then resume it"
        )
    if only_failed and not any(
        u["status"] in ("failed", "ambiguous", "sent") for u in store.units(row["id"]).values()
    ):
        raise ConnectorError(f"run {row['id']}: nothing failed; nothing to run again")
    settings = json.loads(row["settings"] or "{}")
    with connector_for(connection=_run_connection(row), store=store) as conn, stop_on_signals() as cancel:
        wf = load(Path(row["workflow"]), conn.catalog, text=row["source"], connections=conn.pool_names())
        runner = Runner(conn, wf, store=store, executor=LocalExecutor(), cancel=cancel, on_start=_announce)
        result = runner.start(
            json.loads(row["inputs"]),
            json.loads(row["trigger"]),
            origins=settings.get("origins"),
            parent=row["id"],
            reuse=only_failed,
        )
    _report(result, as_json)


def _rerun_on_temporal(run_id: str, only_failed: bool, as_json: bool) -> None:
    """A finished Temporal run again, as a new Temporal run linked to it; with
    ``--failed``, reusing what succeeded and settling first what may have landed."""

    from connector.cli.temporal_cmd import temporal_settings
    from connector.errors import ConnectorError

    settings = temporal_settings()
    from connector.engines.temporal import client as tc

    async def start() -> Any:
        client = await tc.connect(settings)
        request, journal = await tc.rerun_source(client, run_id)
        if only_failed and not tc.needs_rerun(journal):
            raise ConnectorError(f"run {run_id}: nothing failed; nothing to run again")
        req = tc.rerun_request(request, journal, run_id, only_failed)
        return await tc.start_run(client, settings, req)

    _report(_follow_on_temporal(start), as_json, engine="temporal")
