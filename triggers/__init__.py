"""Built-in triggers: Willo's four webhook events and three polling triggers
(YAML in ``manifests/triggers``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from connector import hookimpl


@hookimpl
def manifest_paths() -> list[str | Path]:
    return [Path(str(resources.files("willo_manifests").joinpath("triggers")))]
