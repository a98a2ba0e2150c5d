"""``willo-connector new plugin|action|trigger``: a plugin that works as written.

``new plugin NAME`` writes a pip-installable project (``templates/plugin``): the
``willo_connector`` entry point, a YAML action, a handler action, a polling trigger
fed by a poll handler, an example workflow, tests for the willo-connector pytest
plugin, a scenario file, and a README; then it records one cassette per scenario
against an in-process sandbox (key scrubbed), so the tests replay from the start.
``new action|trigger NAME`` adds a working manifest (and with ``--handler`` its
Python) to the plugin found from a folder, and a scenario that exercises it.

Templates mark their values as ``@@key@@``; nothing else in them is interpreted.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from connector import __version__
from connector.errors import ConnectorError

TEMPLATES = Path(__file__).parent / "templates"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_NAME = 40
#: namespaces a third-party plugin cannot take
RESERVED = {"willo", "http", "schedule", "connector", "test", "tests"}


class ScaffoldError(ConnectorError):
    """A name or a folder the scaffold cannot use."""


def check_name(name: str, what: str) -> None:
    """One line saying why ``name`` cannot name a plugin, action or trigger."""
    if not NAME.match(name) or len(name) > MAX_NAME:
        fixed = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
        hint = f" (e.g. {fixed})" if fixed and NAME.match(fixed) else ""
        raise ScaffoldError(
            f"{what} name {name!r}: use lower-case letters, digits and underscores, starting with a "
            f"letter, at most {MAX_NAME} characters{hint}"
        )
    if keyword.iskeyword(name):
        raise ScaffoldError(f"{what} name {name!r} is a Python keyword")
    if what == "plugin" and name in RESERVED:
        raise ScaffoldError(f"plugin name {name!r} is reserved (willo-connector uses it)")


def render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    left = re.search(r"@@[a-z_]+@@", text)
    if left:  # a template names a value nobody gave: a bug of the kit, never shipped
        raise AssertionError(f"template value {left.group()} not given")
    return text


# --------------------------------------------------------------------------- new plugin


@dataclass
class Plugin:
    """A plugin project on disk."""

    root: Path
    name: str  # the entry point name, and the namespace of its ids
    package: str

    @property
    def package_dir(self) -> Path:
        src = self.root / "src" / self.package
        return src if src.is_dir() else self.root / self.package

    @property
    def manifests(self) -> Path:
        return self.package_dir / "manifests"

    @property
    def cassettes(self) -> Path:
        return self.root / "tests" / "cassettes"


def new_plugin(name: str, directory: str | Path | None = None, *, record: bool = True) -> Plugin:
    """Write the plugin ``name`` into ``directory`` (default ``./willo-NAME``), then
    record its cassettes against an in-process sandbox."""
    check_name(name, "plugin")
    dist = f"willo-{name.replace('_', '-')}"
    root = Path(directory) if directory is not None else Path(dist)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ScaffoldError(f"{root}: already exists and is not an empty folder; choose another --dir")
    values = {
        "name": name,
        "package": f"willo_{name}",
        "dist": dist,
        "title": name.replace("_", " ").title(),
        "connector_version": __version__,
    }
    base = TEMPLATES / "plugin"
    written: list[Path] = []
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScaffoldError(f"{root}: cannot create: {exc.strerror}") from None
    try:
        for template in sorted(p for p in base.rglob("*.tmpl") if p.is_file()):
            rel = render(str(template.relative_to(base))[: -len(".tmpl")], values)
            target = root / (".gitignore" if rel == "gitignore" else rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(render(template.read_text(encoding="utf-8"), values), encoding="utf-8")
            written.append(target)
        plugin = Plugin(root, name, values["package"])
        if record:
            record_cassettes(plugin)
    except BaseException:
        for path in written:  # leave no half-made plugin behind
            path.unlink(missing_ok=True)
        _prune(root)
        raise
    return plugin


def _prune(root: Path) -> None:
    if not root.is_dir():
        return
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
    if not any(root.iterdir()):
        root.rmdir()


@contextmanager
def loaded(plugin: Plugin) -> Iterator[ModuleType]:
    """The plugin's package imported from its folder (installed or not), for as long
    as the context lasts; whatever held its name before is put back after."""
    name = plugin.package
    saved = {k: v for k, v in sys.modules.items() if k == name or k.startswith(name + ".")}
    for k in saved:
        del sys.modules[k]
    init = plugin.package_dir / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    if spec is None or spec.loader is None:
        raise ScaffoldError(f"{init}: cannot import the plugin")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        for k in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[k]
        sys.modules.update(saved)


def record_cassettes(plugin: Plugin, only: list[str] | None = None) -> list[str]:
    """Record the plugin's scenarios (all, or ``only``) against an in-process sandbox,
    loading the plugin from its folder: no install needed."""
    from connector.catalog.plugins import build_host
    from connector.kit.recording import record_scenarios, target

    with loaded(plugin) as module:
        host = build_host([], extra=[(plugin.name, module)], strict=False)
        failures = [f"plugin {n}: {e}" for n, e in host.failures]
        if failures:
            raise ScaffoldError("; ".join(failures))
        with target(sandbox=True, host=host) as t:
            if t.conn.catalog.problems:
                raise ScaffoldError("; ".join(t.conn.catalog.problems))
            done = record_scenarios(t, plugin.cassettes / "scenarios.yaml", plugin.cassettes, only=only or ())
    return [str(r.cassette) for r in done]


# --------------------------------------------------------------------------- new action / trigger


def find_plugin(start: str | Path | None = None) -> Plugin:
    """The plugin project holding ``start`` (default: the current folder): the nearest
    pyproject.toml with a ``willo_connector`` entry point."""
    here = Path(start or ".").resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if not pyproject.is_file():
            continue
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ScaffoldError(f"{pyproject}: cannot read: {exc}") from None
        eps = data.get("project", {}).get("entry-points", {}).get("willo_connector", {})
        if len(eps) == 1:
            (name, module), *_ = eps.items()
            return Plugin(folder, str(name), str(module).split(":")[0])
        raise ScaffoldError(
            f"{pyproject}: expected one [project.entry-points.willo_connector] entry, found {len(eps)}"
        )
    raise ScaffoldError(f"{here}: not inside a plugin project (no pyproject.toml); use --dir")


def new_part(
    kind: str, name: str, directory: str | Path | None = None, *, handler: bool = False, record: bool = True
) -> list[Path]:
    """Add an action or a polling trigger ``name`` to the plugin at ``directory``, with
    a scenario, and record its cassette; returns the files written or changed."""
    check_name(name, kind)
    plugin = find_plugin(directory)
    mid = f"{plugin.name}.{name}"
    manifest = plugin.manifests / f"{name}.yaml"
    if manifest.exists():
        raise ScaffoldError(f"{manifest}: already exists")
    if not plugin.manifests.is_dir():
        raise ScaffoldError(f"{plugin.manifests}: no manifests folder (was the plugin made by `new plugin`?)")
    handlers = plugin.package_dir / "handlers.py"
    if handler and not handlers.is_file():
        raise ScaffoldError(f"{handlers}: no handlers module to add the handler to")
    values = {"id": mid, "title": name.replace("_", " ").capitalize(), "function": name}
    if handler and re.search(rf"^def {re.escape(name)}\(", handlers.read_text(encoding="utf-8"), re.M):
        raise ScaffoldError(f"{handlers}: already defines {name}()")
    yaml_template = {
        ("action", False): "action.yaml",
        ("action", True): "handler_action.yaml",
        ("trigger", False): "trigger.yaml",
        ("trigger", True): "poll_trigger.yaml",
    }[(kind, handler)]
    scenarios = plugin.cassettes / "scenarios.yaml"
    with _undo_on_failure([manifest, handlers, scenarios, plugin.cassettes / f"{mid}.yaml"]):
        changed = [manifest]
        manifest.write_text(_part(yaml_template, values), encoding="utf-8")
        if handler:
            code = _part("handler.py" if kind == "action" else "poller.py", values)
            with handlers.open("a", encoding="utf-8") as fh:
                fh.write(code)
            changed.append(handlers)
        if scenarios.is_file():
            with scenarios.open("a", encoding="utf-8") as fh:
                fh.write(f"\n{mid}:\n  with: {{search: Backend}}\n")
            changed.append(scenarios)
            if record:
                changed += [Path(p) for p in record_cassettes(plugin, only=[mid])]
                changed.append(plugin.cassettes / "inputs.json")
    return changed


@contextmanager
def _undo_on_failure(paths: list[Path]) -> Iterator[None]:
    """Put ``paths`` back as they were (or absent) if the block fails: a plugin's own
    files are never left half-changed."""
    before = {p: p.read_bytes() if p.is_file() else None for p in paths}
    try:
        yield
    except BaseException:
        for path, data in before.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
        raise


def _part(template: str, values: dict[str, str]) -> str:
    return render((TEMPLATES / "parts" / f"{template}.tmpl").read_text(encoding="utf-8"), values)
