"""Built-in triggers: Willo's four webhook events and three polling triggers
(YAML in ``manifests/triggers``)."""

from __future__ import annotations

from pathlib import Path

from willo_manifests import ROOT

from connector import hookimpl


@hookimpl
def manifest_paths() -> list[str | Path]:
    return [ROOT / "triggers"]
