"""Scenarios: how each action (or polling trigger) of a plugin is exercised.

A scenario file (``scenarios.yaml``, next to the cassettes it produces) maps an id to
the inputs of one call, after optional setup steps that create what the call needs::

    scenarios: 1
    willo.get_interview:
      setup:                        # workflow steps, run first, never recorded
        - id: interview
          use: willo.create_interview
          with: {title: Cassette interview}
      with:                         # the inputs of the one recorded call
        interview: "{{ steps.interview.output.key }}"
    acme.new_scored:                # a polling trigger: `with` holds its options
      with: {min_score: 3}

Setup steps are checked like a workflow's (ids, references, output paths, inputs),
and problems read ``file:line: /pointer: message`` with pointers into this file.
Setups create through the catalog's own actions, so one scenario file records
against the sandbox or a real account alike.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.catalog import drift, schemas
from connector.catalog.types import Catalog, Manifest
from connector.engines.local import LocalExecutor
from connector.errors import ConnectorError, ManifestError, OutputError, UnknownIdError
from connector.state.store import StateStore
from connector.triggers.polling import Poller
from connector.workflows import expressions
from connector.workflows.model import Workflow, check_document
from connector.workflows.runner import Runner
from connector.workflows.runtime import Connector
from connector.yamlio import Document, YamlError, escape, load_file

ID = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")

#: the id of the exercised call in the workflow a scenario is checked and run as
STEP = "scenario"


@dataclass
class Scenario:
    """One entry of a scenario file."""

    id: str
    setup: list[dict[str, Any]] = field(default_factory=list)
    with_: dict[str, Any] = field(default_factory=dict)
    where: str = ""

    def workflow(self) -> dict[str, Any]:
        """The setup steps (and for an action, the call) as a workflow document."""
        steps = list(self.setup)
        steps.append({"id": STEP, "use": self.id, "with": self.with_})
        return {"workflow": 1, "name": f"scenario {self.id}", "steps": steps}


def load(path: str | Path, catalog: Catalog, only: set[str] | None = None) -> dict[str, Scenario]:
    """Read and check a scenario file; raise :class:`ManifestError` with every problem.
    With ``only``, other scenarios are skipped unchecked (``verify`` checks one plugin)."""
    try:
        doc = load_file(path)
    except YamlError as exc:
        raise ManifestError([str(exc)]) from None
    problems = [f"{doc.where(p)}: {p or '/'}: {m}" for p, m in schemas.errors(doc.data, "scenarios")]
    if problems:
        raise ManifestError(problems)
    found: dict[str, Scenario] = {}
    for sid, body in doc.data.items():
        if sid == "scenarios":
            continue
        if only is not None and sid not in only:
            continue
        if not isinstance(sid, str) or not ID.match(sid):
            ptr = "/" + escape(str(sid))
            problems.append(f"{doc.where(ptr)}: {ptr}: not an action or trigger id (<namespace>.<name>)")
            continue
        body = body or {}
        sc = Scenario(sid, list(body.get("setup") or []), dict(body.get("with") or {}))
        sc.where = doc.where("/" + escape(sid))
        problems.extend(_check(doc, sc, catalog))
        found[sid] = sc
    if problems:
        raise ManifestError(problems)
    return found


def _check(doc: Document, sc: Scenario, catalog: Catalog) -> list[str]:
    base = "/" + escape(sc.id)
    try:
        manifest = catalog.get(sc.id)
    except UnknownIdError as exc:
        return [f"{doc.where(base)}: {base}: {exc}"]
    if manifest.kind == "trigger" and manifest.data.get("strategy") != "polling":
        return [f"{doc.where(base)}: {base}: {sc.id} is a webhook trigger; only actions and polling triggers"]
    data = sc.workflow()
    if manifest.kind == "trigger":
        data["steps"].pop()  # the poll is not a step; its options are checked below
    problems: list[str] = []
    if data["steps"]:
        problems += [
            _repoint(p, doc.path, base, len(sc.setup)) for p in check_document(_as(doc, base, data), catalog)
        ]
    if manifest.kind == "trigger":
        literal = {k: v for k, v in sc.with_.items() if "{{" not in str(v)}
        for ptr, msg in schemas.errors(literal, manifest.input_schema):
            problems.append(f"{doc.where(base + '/with' + ptr)}: {base}/with{ptr}: {msg}")
    return problems


def _as(doc: Document, base: str, data: dict[str, Any]) -> Document:
    """A workflow document whose lines are those of the scenario in the file."""
    n = len(data["steps"]) - 1
    lines: dict[str, int] = {"": doc.line_of(base), "/steps": doc.line_of(base)}
    for ptr, line in doc.lines.items():
        if ptr.startswith(base + "/setup"):
            lines["/steps" + ptr[len(base + "/setup") :]] = line
        elif ptr.startswith(base + "/with"):
            lines[f"/steps/{n}" + ptr[len(base) :]] = line
    lines.setdefault(f"/steps/{n}", doc.line_of(base))
    return Document(doc.path, data, lines)


_POINTER = re.compile(r"^(?P<where>.*?:\d+): /steps/(?P<i>\d+)(?P<rest>\S*):")


def _repoint(problem: str, path: str, base: str, setup: int) -> str:
    """A workflow problem's ``/steps/N/...`` pointer as a pointer into the scenario file."""
    m = _POINTER.match(problem)
    if m is None or not problem.startswith(path):
        return problem
    i = int(m["i"])
    ptr = f"{base}/setup/{i}{m['rest']}" if i < setup else f"{base}{m['rest'] if m['rest'] != '/use' else ''}"
    return f"{m['where']}: {ptr}:{problem[m.end() :]}"


# --------------------------------------------------------------------------- running


def prepare(conn: Connector, sc: Scenario) -> dict[str, Any]:
    """Run the setup steps; return the inputs (or options) of the exercised call."""
    scope: dict[str, Any] = {"inputs": {}, "trigger": {}, "steps": {}}
    if sc.setup:
        data = {"workflow": 1, "name": f"scenario {sc.id}", "steps": sc.setup}
        wf = Workflow(Document(sc.where.rsplit(":", 1)[0], data), "")
        result = Runner(conn, wf, progress=False, executor=LocalExecutor()).start({})
        if result.status != "succeeded":
            raise ConnectorError(f"{sc.where}: scenario {sc.id}: setup failed: {result.error}")
        scope["steps"] = {s.id: {"output": s.output, "status": s.status} for s in result.steps}
    rendered: dict[str, Any] = expressions.render(sc.with_, scope)
    return rendered


def exercise(conn: Connector, manifest: Manifest, inputs: dict[str, Any], *, strict: bool = False) -> Any:
    """One call of an action (its output) or one poll of a polling trigger (the items
    it sees). ``strict``: every item and output must match its schema without drift."""
    if manifest.kind == "action":
        return conn.call(manifest.id, inputs).output
    with tempfile.TemporaryDirectory(prefix="willo-poll-") as tmp:
        poller = Poller(conn, StateStore(Path(tmp) / "state"), manifest.id, inputs)
        items, _ = poller.fetch(None, first=True, backfill=False)
        poller.store.close()
    if strict or conn.schema_mode == "strict":
        for i, item in enumerate(items):
            report = [f"/{i}{line}" for line in drift.compare(manifest.output_schema, item)]
            report += [f"/{i}{p}: {m}" for p, m in schemas.errors(item, manifest.output_schema)]
            if report:
                raise OutputError(f"{manifest.id}: event does not match its schema: " + "; ".join(report))
    return items
