"""The host's wings and their floors: imports run one way, down.

Floors, from the bottom: the floor itself (``connector``, ``errors``, ``yamlio``);
catalog and state; http; workflows; engines, triggers and interop; the sandbox and
serve; kit and cli. A module may import its own floor or any floor below, never one
above. A new module must be given a floor here.
"""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "connector"

FLOORS = {
    "connector": 0,
    "connector.errors": 0,
    "connector.redaction": 0,
    "connector.limits": 0,
    "connector.yamlio": 0,
    "connector.secrets": 0,
    "connector._compat": 0,
    "connector.sdk": 0,
    "connector.telemetry": 0,
    "connector.catalog": 1,
    "connector.config": 1,  # the config file: settings, connections' specs, secret references
    "connector.state": 1,  # state.budget: the shared rate budgets
    "connector.http": 2,
    "connector.connections": 2,  # named accounts: settings, keys, budgets of a connection
    "connector.workflows": 3,
    "connector.engines": 4,
    "connector.triggers": 4,
    "connector.interop": 4,
    "connector.sandbox": 5,
    "connector.serve": 5,
    "connector.observe": 5,
    "connector.kit": 6,
    "connector.cli": 6,
    "connector.__main__": 6,
}


def floor_of(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        found = FLOORS.get(".".join(parts[:n]))
        if found is not None and (n > 1 or len(parts) == 1):
            return found
    raise AssertionError(f"{module} has no floor: add it to FLOORS in tests/test_layout.py")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def imports(tree: ast.AST, here: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of a ``connector`` module, at any depth,
    except inside ``if TYPE_CHECKING:`` (types only: nothing is imported at run time)."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "connector")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = here if is_package else here.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rsplit(".", 1)[0]
                base = f"{pkg}.{base}" if base else pkg
            if base.split(".")[0] == "connector":
                for alias in node.names:  # `from connector import x` may name a submodule
                    sub = f"{base}.{alias.name}"
                    found.append(
                        (
                            node.lineno,
                            sub
                            if (PACKAGE.parent / sub.replace(".", "/")).exists()
                            or (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                            else base,
                        )
                    )
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def host_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_floor() -> None:
    for path in host_modules():
        floor_of(module_name(path))


def test_imports_run_down_the_floors() -> None:
    upward = []
    for path in host_modules():
        here = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, target in imports(tree, here, path.name == "__init__.py"):
            if floor_of(target) > floor_of(here):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {here} imports {target}")
    assert upward == []


def test_the_checker_catches_an_upward_import() -> None:
    tree = ast.parse("def f():\n    from connector.cli import main\n")
    assert imports(tree, "connector.catalog.index", False) == [(2, "connector.cli")]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from connector.cli import main\n"
    )
    assert imports(tree, "connector.catalog.index", False) == []


def test_no_wing_imports_in_a_circle() -> None:
    """Within a wing, imports form no cycle (the catalog's old circle
    index -> plugins -> index and manifests -> index is gone: types sits below)."""
    edges: dict[str, set[str]] = {}
    for path in host_modules():
        here = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges[here] = {t for _, t in imports(tree, here, path.name == "__init__.py") if t != here}

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    return [*trail, nxt]
                if nxt not in trail and nxt.rsplit(".", 1)[0] == start.rsplit(".", 1)[0]:
                    stack.append((nxt, [*trail, nxt]))
        return None

    circles = [c for m in edges if m.count(".") == 2 and (c := cycle_from(m))]
    assert circles == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("connector.hookspecs", "connector.catalog.hookspecs"),
        ("connector.client", "connector.http.client"),
        ("connector.runtime", "connector.workflows.runtime"),
        ("connector.expressions", "connector.workflows.expressions"),
    ],
)
def test_old_module_paths_still_import_with_a_warning(old: str, new: str) -> None:
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} has moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_old_names_on_packages_that_replaced_modules_still_resolve() -> None:
    from connector.catalog.index import get_catalog
    from connector.triggers.polling import Poller
    from connector.workflows.model import load

    with pytest.warns(DeprecationWarning, match="connector.catalog.get_catalog has moved"):
        from connector.catalog import get_catalog as old_get
    with pytest.warns(DeprecationWarning):
        from connector.triggers import Poller as old_poller
    with pytest.warns(DeprecationWarning):
        from connector.workflows import load as old_load
    assert (old_get, old_poller, old_load) == (get_catalog, Poller, load)


#: every public name of the 0.1 modules that became packages (their loggers aside)
OLD_NAMES = {
    "connector.catalog": ("CACHE_FORMAT", "Manifest", "Catalog", "yaml_files", "cache_dir", "build", "get_catalog", "forget"),
    "connector.workflows": ("SCOPE", "STEP_FIELDS", "Workflow", "load", "walk_schema", "check_document"),
    "connector.triggers": (
        "PAGE_SIZE", "DEFAULT_WINDOW_DAYS", "ledger_name", "check_options", "PollResult", "Poller",
        "reset_ledger", "claim", "finish", "requeue_interrupted", "Dispatcher", "RunFailed", "workflow_handler",
    ),
    "connector.state": ("SCHEMA", "default_dir", "dumps", "loads", "StateStore"),
}  # fmt: skip


@pytest.mark.parametrize("package", sorted(OLD_NAMES))
def test_every_public_name_of_0_1_still_resolves(package: str) -> None:
    module = importlib.import_module(package)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        missing = [name for name in OLD_NAMES[package] if not hasattr(module, name)]
    assert missing == []


def test_a_plugin_importing_the_old_hookspecs_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin written against 0.1 (``from connector.hookspecs import Handler``) works."""
    import sys

    sys.modules.pop("connector.hookspecs", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec("from connector.hookspecs import Handler, hookspec", {})
    assert any("connector.hookspecs has moved" in str(w.message) for w in caught)


def test_unknown_names_are_still_attribute_errors() -> None:
    import connector.catalog

    with pytest.raises(AttributeError):
        _ = connector.catalog.no_such_thing  # type: ignore[attr-defined]
