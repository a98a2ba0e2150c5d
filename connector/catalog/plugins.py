"""The plugin manager: built-in plugins first, then the ``willo_connector`` entry points.

A plugin that fails to import, or whose hook raises, is recorded in
:attr:`PluginHost.failures` and reported by ``willo-connector plugins``; the rest keep
working. ``WILLO_CONNECTOR_BLOCK_PLUGINS`` (comma-separated names) skips plugins;
``WILLO_CONNECTOR_STRICT_PLUGINS=1`` turns every recorded failure into an error, for
plugin authors.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from connector import PROJECT_NAME, __version__
from connector.catalog import hookspecs
from connector.errors import ConnectorError

log = logging.getLogger(__name__)

#: Built-in plugins: ordinary modules registered through the same hooks.
DEFAULT_PLUGINS = ("willo_actions", "willo_triggers")

BLOCK_ENV = "WILLO_CONNECTOR_BLOCK_PLUGINS"
STRICT_ENV = "WILLO_CONNECTOR_STRICT_PLUGINS"


class PluginLoadError(ConnectorError):
    """A plugin failed while strict plugin loading is on."""


@dataclass
class PluginInfo:
    """What ``willo-connector plugins`` shows of one plugin."""

    name: str
    version: str
    source: str
    builtin: bool = False
    errors: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "errors": self.errors,
        }


@dataclass
class PluginHost:
    """The pluggy manager plus what was learned while loading plugins."""

    pm: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    strict: bool = False
    #: the catalog built from this host's plugins (set by ``catalog.index.get_catalog``)
    catalog: Any = None
    _filters: dict[str, Callable[..., Any]] | None = None

    def record_failure(self, name: str, message: str) -> None:
        info = self.plugins.get(name)
        if info is None:
            info = self.plugins[name] = PluginInfo(name, "?", "?")
        info.errors.append(message)
        if self.strict:  # the error says it; no warning first
            raise PluginLoadError(f"plugin {name}: {message}")
        log.warning("plugin %s: %s", name, message)

    @property
    def failures(self) -> list[tuple[str, str]]:
        return [(n, e) for n, info in self.plugins.items() for e in info.errors]

    def call_each(self, hook_name: str, **kwargs: Any) -> Iterable[tuple[str, Any]]:
        """Call one hook plugin by plugin, recording (not raising) a plugin's failure."""
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order: built-ins first
            name = self.pm.get_name(impl.plugin) or impl.plugin_name
            try:
                result = impl.function(**kwargs)
            except Exception as exc:  # a third-party hook may raise anything
                self.record_failure(name, f"hook {hook_name} raised {type(exc).__name__}: {exc}")
                continue
            if result is not None:
                yield name, result

    def template_filters(self) -> dict[str, Callable[..., Any]]:
        """The plugins' template filters, once per host. A name that is a built-in
        filter, or that an earlier plugin registered, is recorded as a failure of the
        later plugin naming both; the built-in (or the first plugin's) filter stays."""
        if self._filters is not None:
            return self._filters
        found: dict[str, Callable[..., Any]] = {}
        owners: dict[str, str] = {}
        self._filters = found  # strict mode may raise below: never ask twice
        reserved: frozenset[str] | None = None
        for plugin, mapping in self.call_each("template_filters"):
            try:
                items = list(dict(mapping).items())
            except (TypeError, ValueError):
                self.record_failure(plugin, "hook template_filters did not return a mapping of filters")
                continue
            for name, fn in items:
                if reserved is None:
                    reserved = builtin_filters()
                if name in reserved:
                    self.record_failure(
                        plugin,
                        f"template filter {name!r} would replace the built-in filter {name!r}; "
                        "the built-in stays",
                    )
                elif name in owners:
                    self.record_failure(
                        plugin,
                        f"template filter {name!r} is also registered by plugin {owners[name]}; "
                        f"plugin {owners[name]}'s stays",
                    )
                elif not isinstance(name, str) or not callable(fn):
                    self.record_failure(plugin, f"template filter {name!r} is not a callable with a name")
                else:
                    owners[name] = plugin
                    found[name] = fn
        return found

    def call_quietly(self, hook_name: str, **kwargs: Any) -> None:
        """Call an observer hook; a plugin that raises is logged, never fatal."""
        for _ in self.call_each(hook_name, **kwargs):
            pass


def builtin_filters() -> frozenset[str]:
    """The names of Jinja2's built-in filters, which no plugin may replace."""
    from jinja2.filters import FILTERS

    return frozenset(FILTERS)


def _blocked() -> set[str]:
    raw = os.environ.get(BLOCK_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return sorted(impl.name for impl in pm.get_hookcallers(plugin) or [])


def _register(host: PluginHost, plugin: object, info: PluginInfo) -> None:
    pm = host.pm
    try:
        pm.register(plugin, name=info.name)
    except Exception as exc:
        host.plugins[info.name] = info
        host.record_failure(info.name, f"cannot register: {exc}")
        return
    info.hooks = _hook_names(pm, plugin)
    host.plugins[info.name] = info


def _load_builtins(host: PluginHost, blocked: set[str]) -> None:
    for module_name in DEFAULT_PLUGINS:
        if module_name in blocked:
            continue
        info = PluginInfo(module_name, __version__, "built-in", builtin=True)
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            host.plugins[module_name] = info
            host.record_failure(module_name, f"failed to import: {type(exc).__name__}: {exc}")
            continue
        _register(host, module, info)


def _load_entry_points(host: PluginHost, entry_points: Iterable[md.EntryPoint], blocked: set[str]) -> None:
    for ep in entry_points:
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else ep.value
        if ep.name in blocked or dist_name in blocked:
            log.info("plugin %s blocked by %s", ep.name, BLOCK_ENV)
            continue
        version = dist.version if dist is not None else "?"
        info = PluginInfo(ep.name, version, f"{dist_name} ({ep.value})")
        if ep.name in host.plugins:
            host.plugins.setdefault(ep.name, info)
            host.record_failure(ep.name, f"name already taken; {ep.value} not loaded")
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            host.plugins[ep.name] = info
            host.record_failure(ep.name, f"failed to import: {type(exc).__name__}: {exc}")
            continue
        _register(host, plugin, info)


def build_host(
    entry_points: Iterable[md.EntryPoint] | None = None,
    *,
    builtins: bool = True,
    extra: Iterable[tuple[str, object]] = (),
    strict: bool | None = None,
) -> PluginHost:
    """Create a plugin host. Tests pass ``entry_points`` to control what is discovered."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    if strict is None:
        strict = os.environ.get(STRICT_ENV, "") not in ("", "0", "false", "no")
    host = PluginHost(pm, strict=strict)
    blocked = _blocked()
    if builtins:
        _load_builtins(host, blocked)
    if entry_points is None:
        entry_points = md.entry_points(group=PROJECT_NAME)
    _load_entry_points(host, entry_points, blocked)
    for name, plugin in extra:
        _register(host, plugin, PluginInfo(name, "?", "in-process"))
    pm.check_pending()
    return host


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process's plugin host, built once on first use."""
    global _HOST
    if _HOST is None:
        _HOST = build_host()
    return _HOST


def set_host(host: PluginHost | None) -> None:
    """Replace (or with None, forget) the process's host; for tests and embedding."""
    global _HOST
    _HOST = host


def handler_map(host: PluginHost, hook: str = "action_handlers") -> dict[str, tuple[str, Callable[..., Any]]]:
    """``{handler_id: (plugin, callable)}`` from ``hook`` (``action_handlers`` or
    ``poll_handlers``); a handler id claimed twice is recorded."""
    found: dict[str, tuple[str, Callable[..., Any]]] = {}
    for plugin, mapping in host.call_each(hook):
        for hid, fn in dict(mapping).items():
            if hid in found:
                host.record_failure(plugin, f"handler {hid} is also registered by plugin {found[hid][0]}")
                continue
            found[hid] = (plugin, fn)
    return found
