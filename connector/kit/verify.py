"""``willo-connector plugins verify NAME``: a plugin's conformance, every problem listed.

Checks, for the plugin's own manifests, handlers and filters:

- the plugin loaded, and every failure the host recorded for it (import, hooks,
  handler or filter clashes);
- its manifests are valid (schema, samples, request expressions, handlers);
- ids are namespaced by the plugin (``NAME.*``; ``willo.*`` for the built-ins);
- titles, descriptions and every input's description are present, and a
  ``version`` is declared; a deprecation names a replacement that exists;
- samples satisfy their output schema, drift included;
- handlers and poll handlers can be called as ``handler(inputs, client)`` and
  ``poll(options, client, cursor)``; none is registered without a manifest;
- its template filters clash with no built-in filter and no other plugin's;
- every action (and every poll-handler trigger) is exercised in strict drift mode:
  replayed from its cassette (``DIR/<id>.yaml`` with ``DIR/inputs.json``), or else run
  against an in-process sandbox from its scenario (``DIR/scenarios.yaml``).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.catalog import drift
from connector.catalog.index import get_catalog, yaml_files
from connector.catalog.plugins import PluginHost, build_host, handler_map
from connector.catalog.types import Catalog, Manifest
from connector.errors import ConnectorError
from connector.http.cassettes import replay
from connector.http.client import Settings
from connector.kit import scenarios as scenario_files
from connector.kit.recording import load_inputs
from connector.workflows.runtime import Connector
from connector.yamlio import YamlError, load_file

#: where ``verify`` looks for cassettes and scenarios when not told (a plugin project's)
DEFAULT_CASSETTES = Path("tests") / "cassettes"
REPLAY_BASE_URL = "https://willo.invalid/api/integrations/v2"

#: how each kind of plugin callable is called
SIGNATURES = {"action_handlers": ("inputs", "client"), "poll_handlers": ("options", "client", "cursor")}


@dataclass
class Report:
    plugin: str
    version: str = "?"
    source: str = "?"
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "version": self.version,
            "source": self.source,
            "ok": self.ok,
            "problems": self.problems,
            "checked": self.checked,
        }


def verify(name: str, *, host: PluginHost | None = None, cassettes: str | Path | None = None) -> Report:
    """Check the plugin ``name`` (as ``willo-connector plugins`` lists it)."""
    host = host or build_host(strict=False)
    info = host.plugins.get(name)
    if info is None:
        known = ", ".join(sorted(host.plugins)) or "none"
        raise ConnectorError(f"no plugin {name!r} is installed (plugins: {known}){_install_hint(name)}")
    report = Report(name, info.version, info.source)
    cat = get_catalog(host)
    files = _files(host, name)
    mine = sorted((m for m in cat.manifests.values() if m.plugin == name), key=lambda m: m.id)
    namespace = "willo" if info.builtin else name
    report.problems += _manifest_problems(cat, files, name)
    if not files and not info.errors:
        report.problems.append(f"plugin {name}: ships no manifests (its manifest_paths hook returns none)")
    for m in mine:
        report.problems += _conformance(m, namespace, cat)
    problems, broken = _signatures(host, name, _named_handlers(files))
    report.problems += problems
    runnable = [m for m in mine if not {m.handler, m.poll_handler} & broken]  # reported already
    report.problems += _exercise_all(host, runnable, _cassette_dir(cassettes), report.checked)
    report.problems += _filter_clashes(host, name)  # after: a host that checks them has by now
    # last: exercising builds connectors, and the host records what goes wrong meanwhile
    recorded = [f"plugin {name}: {err}" for err in host.plugins[name].errors]
    report.problems = recorded + [p for p in report.problems if p not in recorded]
    return report


def _install_hint(name: str) -> str:
    """When the current folder is the plugin's project: say to install it."""
    from connector.kit.scaffold import find_plugin

    try:
        project = find_plugin()
    except ConnectorError:
        return ""
    return f"; install it first: pip install -e {project.root}" if project.name == name else ""


# --------------------------------------------------------------------------- manifests


def _files(host: PluginHost, name: str) -> set[str]:
    found: set[str] = set()
    for plugin, paths in host.call_each("manifest_paths"):
        if plugin == name:
            found.update(str(p) for p in yaml_files(paths))
    return found


def _manifest_problems(cat: Catalog, files: set[str], name: str) -> list[str]:
    """The catalog's problems that belong to this plugin's files, and its id clashes."""
    found = [p for p in cat.problems if any(p.startswith(f"{f}:") for f in files)]
    for mid, claims in cat.conflicts.items():
        if any(plugin == name for plugin, _ in claims) and not any(mid in p for p in found):
            named = " and ".join(f"plugin {p} ({f})" for p, f in claims)
            found.append(f"{claims[-1][1]}:1: /id: {mid} is claimed by both {named}")
    return found


def _where(m: Manifest, ptr: str) -> str:
    try:
        return load_file(m.path).where(ptr)
    except YamlError:
        return f"{m.path}:1"


#: built-ins that are not Willo operations and keep the ids DESIGN section 13 gives them
BUILTIN_OTHERS = ("http.request", "schedule.cron")


def _conformance(m: Manifest, namespace: str, cat: Catalog) -> list[str]:
    problems: list[str] = []

    def add(ptr: str, msg: str) -> None:
        problems.append(f"{_where(m, ptr)}: {ptr or '/'}: {msg}")  # the root is /

    if m.id.split(".", 1)[0] != namespace and not (namespace == "willo" and m.id in BUILTIN_OTHERS):
        add("/id", f"{m.id} is not namespaced by the plugin (expected {namespace}.{m.id.split('.', 1)[-1]})")
    for key in ("title", "description"):
        if not str(m.data.get(key, "")).strip():
            add(f"/{key}", f"{key} is blank")
    if m.title.strip() == m.id:
        add("/title", "the title repeats the id; say what it does for people")
    for prop, schema in (m.input_schema.get("properties") or {}).items():
        if not isinstance(schema, dict) or not str(schema.get("description", "")).strip():
            add(f"/input/properties/{prop}", "input has no description (forms and docs show it)")
    if m.version is None:
        add("", "no version declared (add `version: 1.0.0`)")
    report = drift.compare(m.output_schema, m.data["sample"])
    if report:
        add("/sample", "sample drifts from its own output schema: " + "; ".join(report))
    replacement = (m.deprecated or {}).get("replacement")
    if replacement and replacement not in cat.manifests:
        add("/deprecated/replacement", f"{replacement} is not in the catalog")
    return problems


# --------------------------------------------------------------------------- code


def _accepts(fn: Callable[..., Any], params: tuple[str, ...]) -> str | None:
    """Why ``fn`` cannot be called with ``len(params)`` positional arguments, or None."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # a builtin or C callable: cannot tell
    try:
        sig.bind(*params)
    except TypeError as exc:
        return f"{fn.__name__}{sig} cannot be called as ({', '.join(params)}): {exc}"
    return None


def _named_handlers(files: set[str]) -> set[str]:
    """Every handler and poll handler the plugin's manifest files name (valid or not)."""
    named: set[str] = set()
    for f in files:
        try:
            data = load_file(f).data
        except YamlError:
            continue
        if isinstance(data, dict):
            polling = data.get("polling")
            for hid in (data.get("handler"), polling.get("handler") if isinstance(polling, dict) else None):
                if isinstance(hid, str):
                    named.add(hid)
    return named


def _signatures(host: PluginHost, name: str, named: set[str]) -> tuple[list[str], set[str | None]]:
    """Problems with the plugin's handlers, and the ids of those that cannot be called."""
    problems: list[str] = []
    broken: set[str | None] = set()
    for hook, params in SIGNATURES.items():
        for hid, (plugin, fn) in handler_map(host, hook).items():
            if plugin != name:
                continue
            what = "handler" if hook == "action_handlers" else "poll handler"
            if not callable(fn):
                problems.append(f"plugin {name}: {what} {hid} is not callable ({type(fn).__name__})")
                broken.add(hid)
                continue
            why = _accepts(fn, params)
            if why:
                problems.append(f"plugin {name}: {what} {hid}: {why}")
                broken.add(hid)
            if hid not in named:
                problems.append(
                    f"plugin {name}: {what} {hid} is registered but no manifest of the plugin names it"
                )
    return problems, broken


def _filter_clashes(host: PluginHost, name: str) -> list[str]:
    """This plugin's filters against Jinja's built-in ones and every other plugin's.
    (The host records clashes too, once it checks them; this works either way.)"""
    from jinja2.defaults import DEFAULT_FILTERS

    by_plugin = [(plugin, dict(filters)) for plugin, filters in host.call_each("template_filters")]
    recorded = [e for e in host.plugins[name].errors if "filter" in e]
    problems: list[str] = []
    for fname in (f for plugin, filters in by_plugin if plugin == name for f in filters):
        clashes = ["the built-in filter"] if fname in DEFAULT_FILTERS else []
        clashes += [f"plugin {p}'s filter" for p, filters in by_plugin if p != name and fname in filters]
        if any(repr(fname) in e or f" {fname} " in e for e in recorded):
            continue  # already in the host's own report
        problems += [f"plugin {name}: filter {fname!r} clashes with {c} {fname!r}" for c in clashes]
    return problems


# --------------------------------------------------------------------------- exercising


def _cassette_dir(cassettes: str | Path | None) -> Path | None:
    if cassettes is not None:
        path = Path(cassettes)
        if not path.is_dir():
            raise ConnectorError(f"--cassettes {path}: no such folder")
        return path
    return DEFAULT_CASSETTES if DEFAULT_CASSETTES.is_dir() else None


def _needs_exercise(m: Manifest) -> bool:
    return m.kind == "action" or m.poll_handler is not None


class _Sandboxed:
    """One in-process sandbox for the whole verification, started on first use."""

    def __init__(self, host: PluginHost, stack: contextlib.ExitStack):
        self.host, self.stack = host, stack
        self.conn: Connector | None = None
        self.box: Any = None

    def connector(self) -> Connector:
        if self.conn is None:
            from connector.sandbox import Sandbox, SandboxOptions

            self.box = self.stack.enter_context(
                Sandbox(SandboxOptions(rate_limit=(0, 0), webhook_backoff=0.05))
            )
            settings = Settings.from_env(
                base_url=self.box.base_url, api_key=self.box.api_key, auth_scheme="", rate="0"
            )
            self.conn = Connector(self.host, settings=settings, schema_mode="strict")
        self.box.reset()
        return self.conn


def _exercise_all(
    host: PluginHost, mine: list[Manifest], folder: Path | None, checked: list[str]
) -> list[str]:
    if folder is None:
        return [
            f"{m.id}: not exercised: no cassettes folder (pass --cassettes DIR, holding {m.id}.yaml "
            "or a scenarios.yaml; by default tests/cassettes)"
            for m in mine
            if _needs_exercise(m)
        ]
    inputs = load_inputs(folder)
    scenarios_file = folder / "scenarios.yaml"
    found: dict[str, scenario_files.Scenario] = {}
    if scenarios_file.is_file():
        try:
            found = scenario_files.load(scenarios_file, get_catalog(host), only={m.id for m in mine})
        except ConnectorError as exc:
            return [str(exc)]
    # actions and poll handlers always; other triggers when there is a way to exercise them
    todo = [m for m in mine if _needs_exercise(m) or m.id in found or (folder / f"{m.id}.yaml").is_file()]
    problems: list[str] = []
    with contextlib.ExitStack() as stack:
        sandbox = _Sandboxed(host, stack)
        for m in todo:
            cassette = folder / f"{m.id}.yaml"
            try:
                if cassette.is_file() and m.id in inputs:
                    problems += _replay(host, m, cassette, inputs[m.id])
                    checked.append(f"{m.id}: replayed {cassette} (strict)")
                elif m.id in found:
                    conn = sandbox.connector()
                    scenario_files.exercise(conn, m, scenario_files.prepare(conn, found[m.id]), strict=True)
                    checked.append(f"{m.id}: ran its scenario against the sandbox (strict)")
                elif _needs_exercise(m):
                    problems.append(
                        f"{m.id}: not exercised: no cassette ({cassette} with its inputs in "
                        f"{folder / 'inputs.json'}) and no scenario in {scenarios_file}"
                    )
            except ConnectorError as exc:
                problems.append(f"{m.id}: {exc}")
    return problems


def _replay(host: PluginHost, m: Manifest, cassette: Path, inputs: Any) -> list[str]:
    conn = Connector(
        host, settings=Settings(base_url=REPLAY_BASE_URL, api_key="replay", rate="0"), schema_mode="strict"
    )
    conn.serial = True
    with replay(cassette) as played:
        scenario_files.exercise(conn, m, dict(inputs), strict=True)
        unplayed = len(played) - played.play_count
    if unplayed > 0:
        return [f"{m.id}: {cassette}: {unplayed} recorded request(s) were not made (re-record it)"]
    return []
