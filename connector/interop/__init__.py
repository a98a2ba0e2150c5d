"""Interop: the catalog in formats other engines read.

- :mod:`connector.interop.mcp`: every action (and, on request, every workflow) as a
  Model Context Protocol tool, served with the official ``mcp`` SDK (an optional extra,
  imported only when the server starts).
- :mod:`connector.interop.openapi`: OpenAPI 3.1 of every request-backed action, and
  Swagger 2.0 with the ``x-ms-*`` extensions Power Automate custom connectors import.

Both work off the catalog, so plugins' actions are included.
"""

from __future__ import annotations

#: Tool names and Swagger 2.0 operation ids some consumers accept: ``[A-Za-z0-9_-]``.
#: An action id is ``<namespace>.<name>`` with neither part holding a ``-``, so the
#: id's one dot becomes a hyphen and the first hyphen turns back into the dot.


def safe_name(ident: str) -> str:
    """``willo.get_interview`` -> ``willo-get_interview`` (reversible: see :func:`from_safe`)."""
    return ident.replace(".", "-", 1)


def from_safe(name: str) -> str:
    """``willo-get_interview`` -> ``willo.get_interview``; a name without ``-`` is returned as is."""
    return name.replace("-", ".", 1)
