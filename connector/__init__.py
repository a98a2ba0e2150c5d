"""willo-connector: a pluggy host for YAML-manifested Willo actions and triggers.

A plugin needs only ``from connector import hookimpl``.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "willo_connector"
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]
