"""The catalog's types: one home below the loader, the index and the plugin host.

:class:`Manifest` is one loaded action or trigger; :class:`Catalog` holds them by id.
Everything in the catalog wing imports these; they import nothing of it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from connector.errors import UnknownIdError, short


@dataclass
class Manifest:
    """One loaded action or trigger manifest."""

    data: dict[str, Any]
    path: str
    plugin: str

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def kind(self) -> str:
        return str(self.data["kind"])

    @property
    def title(self) -> str:
        return str(self.data["title"])

    @property
    def input_schema(self) -> dict[str, Any]:
        return dict(self.data["input"])

    @property
    def output_schema(self) -> dict[str, Any]:
        return dict(self.data["output"])

    @functools.cached_property
    def input_validator(self) -> Any:
        """The input schema's validator, built once (building one costs more than using it)."""
        from connector.catalog.schemas import validator

        return validator(self.data["input"])

    @functools.cached_property
    def decimals(self) -> Any:
        """Where the output holds decimals (``x-decimal``), for :func:`~.schemas.numbers`."""
        from connector.catalog.schemas import decimal_tree

        return decimal_tree(self.data["output"])

    @functools.cached_property
    def drift(self) -> Any:
        """Drift reports against the output schema, remembered per shape of record."""
        from connector.catalog.drift import Drift

        return Drift(self.data["output"])

    def numbers(self, output: Any) -> Any:
        """``output`` with its decimal strings as numbers (after validation)."""
        from connector.catalog.schemas import numbers

        return numbers(output, self.decimals) if self.decimals is not None else output

    @property
    def request(self) -> dict[str, Any] | None:
        req = self.data.get("request")
        return dict(req) if req is not None else None

    @property
    def handler(self) -> str | None:
        h = self.data.get("handler")
        return str(h) if h is not None else None

    @property
    def poll_handler(self) -> str | None:
        """The poll handler of a polling trigger that names one instead of a list action."""
        h = (self.data.get("polling") or {}).get("handler")
        return str(h) if h is not None else None

    @property
    def version(self) -> str | None:
        v = self.data.get("version")
        return str(v) if v is not None else None

    @property
    def deprecated(self) -> dict[str, Any] | None:
        """``{message, replacement?, since?}`` when the manifest is deprecated."""
        d = self.data.get("deprecated")
        return dict(d) if isinstance(d, dict) else None

    def deprecation(self) -> str | None:
        """One line saying that this is deprecated, why, and what to use instead."""
        d = self.deprecated
        if d is None:
            return None
        since = f" since {d['since']}" if d.get("since") else ""
        instead = f"; use {d['replacement']} instead" if d.get("replacement") else ""
        return f"{self.id} is deprecated{since}: {d['message']}{instead}"

    @property
    def idempotent(self) -> bool:
        if "idempotent" in self.data:
            return bool(self.data["idempotent"])
        req = self.request
        return req is not None and req["method"] in ("GET", "PUT", "DELETE")

    def summary(self) -> dict[str, Any]:
        found = {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "description": self.data["description"],
            "plugin": self.plugin,
            "version": self.version,
        }
        if self.deprecated is not None:
            found["deprecated"] = self.deprecated
        return found


@dataclass
class Catalog:
    """Manifests by id, plus the problems found while loading them."""

    manifests: dict[str, Manifest] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    conflicts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def get(self, manifest_id: str, kind: str | None = None) -> Manifest:
        found = self.manifests.get(manifest_id)
        if found is not None and (kind is None or found.kind == kind):
            return found
        if manifest_id in self.conflicts:
            claims = " and ".join(f"plugin {p} ({f})" for p, f in self.conflicts[manifest_id])
            raise UnknownIdError(f"{manifest_id} is claimed by both {claims}; it is not loaded")
        what = kind or "action or trigger"
        pool = [m.id for m in self.manifests.values() if kind is None or m.kind == kind]
        import difflib

        close = (
            difflib.get_close_matches(manifest_id, pool, n=3, cutoff=0.6) if len(manifest_id) < 200 else []
        )
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownIdError(f"unknown {what} {short(manifest_id)}{hint}")

    def of_kind(self, kind: str) -> list[Manifest]:
        return sorted((m for m in self.manifests.values() if m.kind == kind), key=lambda m: m.id)
