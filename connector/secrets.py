"""Workflow secrets: what ``{{ secrets.NAME }}`` reads, and from where.

:func:`lookup` is the one place a secret's value comes from. Today the only source
is the environment (``WILLO_SECRET_<NAME>``, the name upper-cased); named
connections (a config file) add theirs with :func:`add_source`. Every value found
is registered with :mod:`connector.redaction`, so it is scrubbed from output,
errors, the journal and logs from then on.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable

from connector import redaction

ENV_PREFIX = "WILLO_SECRET_"
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

#: A source: the secret's value for a name, or None if it does not hold that secret.
Source = Callable[[str], "str | None"]


def env_var(name: str) -> str:
    """The environment variable that holds secret ``name``."""
    return ENV_PREFIX + name.upper()


def _from_environment(name: str) -> str | None:
    value = os.environ.get(env_var(name))
    return value if value else None


_lock = threading.Lock()
_sources: list[tuple[str, Source]] = [("environment", _from_environment)]


def add_source(label: str, source: Source, *, first: bool = False) -> None:
    """Add a source of secrets (e.g. a connections file), asked after (or, with
    ``first``, before) the ones already there. ``label`` names it in messages."""
    with _lock:
        _sources[:] = [s for s in _sources if s[0] != label]
        _sources.insert(0 if first else len(_sources), (label, source))


def remove_source(label: str) -> None:
    with _lock:
        _sources[:] = [s for s in _sources if s[0] != label]


def lookup(name: str) -> str | None:
    """The value of secret ``name`` from the first source that has it, or None."""
    if not NAME.match(name):
        return None
    for _label, source in list(_sources):
        value = source(name)
        if value:
            redaction.register(value)
            return value
    return None


def hint(name: str) -> str:
    """How to provide secret ``name`` (for an error message)."""
    others = [label for label, _ in _sources if label != "environment"]
    where = f"set {env_var(name)}"
    return where + (f" or add it to {', '.join(others)}" if others else "")
