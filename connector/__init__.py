"""willo-connector: a pluggy host for YAML-manifested Willo actions and triggers.

A plugin needs only ``from connector import hookimpl``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.1"

PROJECT_NAME = "willo_connector"

from connector import _compat  # noqa: E402  (old import paths, for one release)

_compat.install()

if TYPE_CHECKING:
    import pluggy

    hookimpl: pluggy.HookimplMarker


def __getattr__(name: str) -> Any:
    # pluggy is imported on first use of ``hookimpl``, so that ``--help`` and
    # ``--version`` do not pay for it
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker(PROJECT_NAME)
        globals()["hookimpl"] = marker
        return marker
    raise AttributeError(f"module 'connector' has no attribute {name!r}")


__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]
