"""The catalog: every manifest the plugins ship, validated, with its handler.

Loading validates each manifest against ``manifests/schemas/manifest.schema.json``,
checks that ``sample`` satisfies ``output`` and that request expressions name real
inputs, and reports every problem as ``file:line: /pointer: message``. A valid
catalog is cached on disk (keyed by the files' sizes and mtimes and the plugins'
versions) so that listing commands start without importing jsonschema.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Iterable
from pathlib import Path

from connector import __version__
from connector.catalog.plugins import PluginHost, get_host
from connector.catalog.types import Catalog, Manifest
from connector.errors import ManifestError

log = logging.getLogger(__name__)

CACHE_FORMAT = 3


# --------------------------------------------------------------------------- files


def yaml_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files given, and every ``*.yaml``/``*.yml`` below the folders given."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml")))
        else:
            files.append(p)
    return files


def _plugin_files(host: PluginHost) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for plugin, paths in host.call_each("manifest_paths"):
        for f in yaml_files(paths):
            found.append((plugin, f))
    return found


def _fingerprint(host: PluginHost, files: list[tuple[str, Path]]) -> str:
    """A key for the cache: plugins' versions and every file's size and mtime.

    (zlib's CRC, twice with different seeds, rather than hashlib: this runs on every
    start and hashlib's import alone costs more than the whole computation.)"""
    parts = [f"{CACHE_FORMAT}:{__version__}"]
    parts += [f"{name}={info.version};" for name, info in sorted(host.plugins.items())]
    for plugin, f in files:
        try:
            st = f.stat()
            parts.append(f"{plugin}|{f}|{st.st_size}|{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{plugin}|{f}|missing")
    data = "\n".join(parts).encode()
    return f"{zlib.crc32(data):08x}{zlib.crc32(data, 0x5BD1E995):08x}{len(data):x}"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "willo-connector"


def _read_cache(key: str) -> Catalog | None:
    if os.environ.get("WILLO_CONNECTOR_NO_CACHE"):
        return None
    try:
        raw = json.loads((cache_dir() / f"catalog-{key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cat = Catalog(problems=list(raw["problems"]))
    for item in raw["manifests"]:
        cat.manifests[item["data"]["id"]] = Manifest(item["data"], item["path"], item["plugin"])
    cat.conflicts = {k: [tuple(x) for x in v] for k, v in raw["conflicts"].items()}
    return cat


def _write_cache(key: str, cat: Catalog) -> None:
    if os.environ.get("WILLO_CONNECTOR_NO_CACHE"):
        return
    d = cache_dir()
    payload = {
        "manifests": [{"data": m.data, "path": m.path, "plugin": m.plugin} for m in cat.manifests.values()],
        "problems": cat.problems,
        "conflicts": cat.conflicts,
    }
    try:
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".catalog-{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(payload), encoding="utf-8")
        tmp.replace(d / f"catalog-{key}.json")
        for old in d.glob("catalog-*.json"):
            if old.name != f"catalog-{key}.json":
                old.unlink(missing_ok=True)
    except OSError as exc:  # a read-only home must not break the tool
        log.debug("catalog cache not written: %s", exc)


# --------------------------------------------------------------------------- loading


def _add(cat: Catalog, m: Manifest) -> None:
    if m.id in cat.conflicts:
        cat.conflicts[m.id].append((m.plugin, m.path))
        return
    other = cat.manifests.get(m.id)
    if other is None:
        cat.manifests[m.id] = m
        return
    del cat.manifests[m.id]
    cat.conflicts[m.id] = [(other.plugin, other.path), (m.plugin, m.path)]


def build(host: PluginHost, files: list[tuple[str, Path]]) -> Catalog:
    """Load and validate every file; problems are collected, never raised."""
    from connector.catalog import manifests as loader  # jsonschema and Jinja2 load only here

    cat = Catalog()
    docs, resources = loader.read_files(files, cat.problems)
    for plugin, doc in docs:
        m = loader.validate(doc, plugin, resources, cat.problems)
        if m is not None:
            _add(cat, m)
    for mid, claims in cat.conflicts.items():
        named = " and ".join(f"plugin {p} ({f})" for p, f in claims)
        cat.problems.append(f"{claims[-1][1]}:1: /id: {mid} is claimed by both {named}")
    from connector.catalog.plugins import handler_map

    handlers = handler_map(host)
    pollers = handler_map(host, "poll_handlers")
    for m in list(cat.manifests.values()):
        if m.handler and m.handler not in handlers:
            cat.problems.append(f"{m.path}:1: /handler: no plugin registers handler {m.handler}")
            del cat.manifests[m.id]
        elif m.poll_handler and m.poll_handler not in pollers:
            cat.problems.append(
                f"{m.path}:1: /polling/handler: no plugin registers poll handler {m.poll_handler}"
            )
            del cat.manifests[m.id]
    return cat


def forget(host: PluginHost | None = None) -> None:
    """Drop the catalog ``host`` (default: the process's) has loaded, so that the next
    :func:`get_catalog` reads the manifests again (the disk cache, keyed by their
    content, still spares re-validating what did not change)."""
    (host or get_host()).catalog = None


def get_catalog(host: PluginHost | None = None) -> Catalog:
    """The catalog of ``host`` (default: the process's), loaded once per host."""
    host = host or get_host()
    host.template_filters()  # a clash of filters is a plugin problem, shown with the others
    if isinstance(host.catalog, Catalog):
        return host.catalog
    files = _plugin_files(host)
    key = _fingerprint(host, files)
    cat = _read_cache(key)
    if cat is None:
        cat = build(host, files)
        _write_cache(key, cat)
    if host.strict and cat.problems:  # the error lists them; no warnings first
        raise ManifestError(cat.problems)
    for problem in cat.problems:
        log.warning("%s", problem)
    host.catalog = cat
    return cat
