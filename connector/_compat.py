"""Old import paths, kept for one release with a DeprecationWarning.

Until 0.2 the host was one flat package (``connector.hookspecs``,
``connector.client``, ``connector.runtime``...). It now lives in wings
(``connector.catalog``, ``connector.http``, ``connector.state``,
``connector.workflows``, ``connector.engines``, ``connector.triggers``). A plugin
that imports an old path still gets the module or name it wants, with a warning
naming the new path. Removed in the next release.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: old module -> its new home (old names that are now packages are handled by
#: :func:`moved_attributes` in the package itself)
MOVED_MODULES = {
    "connector.hookspecs": "connector.catalog.hookspecs",
    "connector.plugins": "connector.catalog.plugins",
    "connector.manifests": "connector.catalog.manifests",
    "connector.schemas": "connector.catalog.schemas",
    "connector.drift": "connector.catalog.drift",
    "connector.options": "connector.catalog.options",
    "connector.validation": "connector.catalog.validation",
    "connector.client": "connector.http.client",
    "connector.pacing": "connector.http.pacing",
    "connector.cassettes": "connector.http.cassettes",
    "connector.expressions": "connector.workflows.expressions",
    "connector.runtime": "connector.workflows.runtime",
    "connector.engine": "connector.workflows.runner",
    "connector.receiver": "connector.triggers.receiver",
    "connector.subscriptions": "connector.triggers.subscriptions",
}


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"{old} has moved to {new}; the old path will be removed in the next release",
        DeprecationWarning,
        stacklevel=3,
    )


class _AliasLoader:
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec: Any) -> ModuleType:
        _warn(spec.name, self.new)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        pass  # already executed under its new name


class MovedModuleFinder:
    """A meta path finder that answers only for the old module names above."""

    @classmethod
    def find_spec(cls, fullname: str, path: Any = None, target: Any = None) -> Any:
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        from importlib.util import spec_from_loader

        return spec_from_loader(fullname, _AliasLoader(new))  # type: ignore[arg-type]


def install() -> None:
    if not any(f is MovedModuleFinder for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder)


def moved_attributes(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for a package that replaced a module of the same name:
    ``table`` maps each old attribute to the module that now holds it."""

    def __getattr__(name: str) -> Any:
        home = table.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        _warn(f"{package}.{name}", f"{home}.{name}")
        return getattr(importlib.import_module(home), name)

    return __getattr__
