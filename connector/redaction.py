"""One process-wide registry of secret values, and the scrubbing everything shares.

Whatever holds a secret registers its value here (the client its API key, the
receiver its webhook secret; later, workflow ``secrets.NAME`` and every named
connection's key). Everything that shows or stores text scrubs it through here:
error messages (:class:`connector.errors.ConnectorError`), the CLI's error printer
and JSON output, the state store's error and output columns, and every log record
(a record factory installed with the first secret). A value is replaced by ``***``
in its plain form, in the forms it takes in URLs, JSON and Python reprs, in upper,
lower and title case, and base64-encoded whole. (A value derived in other ways, a
slice of it or a hash, is not recognised: keep secrets out of expressions that
transform them.)
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "***"
#: shorter values are not treated as secrets: scrubbing "abc" would garble output
MIN_LENGTH = 6
#: environment variables whose values are secrets whenever they are set
SECRET_ENV = ("WILLO_API_KEY", "WILLO_WEBHOOK_SECRET")
SECRET_ENV_PREFIXES = ("WILLO_SECRET_",)

_lock = threading.Lock()
_values: set[str] = set()
_forms: tuple[str, ...] = ()  # every form of every value, longest first
_factory_installed = False


def _variants(value: str) -> set[str]:
    """The forms a secret takes when shown: as it is, in URLs, JSON and reprs; in the
    other case a template filter gives it (``upper``, ``lower``, ``title``...); and
    base64-encoded whole (a Basic auth header, ``b64encode`` in a plugin)."""
    cased = {value, value.upper(), value.lower(), value.title(), value.capitalize(), value.swapcase()}
    found = set(cased)
    for v in cased:
        found |= {quote(v, safe=""), quote_plus(v), json.dumps(v)[1:-1], repr(v)[1:-1]}
    raw = value.encode("utf-8", "surrogatepass")
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        found |= {text, text.rstrip("=")}  # padded where it is, the longer form first
    return {v for v in found if len(v) >= MIN_LENGTH}


def register(*values: str | None) -> None:
    """Treat each value as a secret from now on (None, empty and short ones are ignored)."""
    global _forms
    fresh = [v for v in values if isinstance(v, str) and len(v) >= MIN_LENGTH and v not in _values]
    if not fresh:
        return
    with _lock:
        for v in fresh:
            _values.add(v)
        forms = set(_forms)
        for v in fresh:
            forms |= _variants(v)
        _forms = tuple(sorted(forms, key=len, reverse=True))
    _install_log_factory()


def register_env(env: Mapping[str, str] | None = None) -> None:
    """Register the secrets the environment holds (API key, webhook secret, WILLO_SECRET_*)."""
    env = os.environ if env is None else env
    register(*(env.get(name, "").strip() for name in SECRET_ENV))
    register(*(v.strip() for k, v in env.items() if k.startswith(SECRET_ENV_PREFIXES)))


def secrets() -> frozenset[str]:
    return frozenset(_values)


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    forms = _forms
    if not forms or not isinstance(text, str):
        return text
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def contains_secret(text: str) -> bool:
    return any(form in text for form in _forms)


def scrub_value(value: Any) -> Any:
    """A JSON-like value with every string (and mapping key) scrubbed; unchanged
    values are returned as they are, so the common case copies nothing."""
    if not _forms:
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {scrub(k) if isinstance(k, str) else k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_value(v) for v in value]
    return value


def scrub_all(values: Iterable[str]) -> list[str]:
    return [scrub(v) for v in values]


# --------------------------------------------------------------------------- logging


def _install_log_factory() -> None:
    """Scrub every log record as it is made, whatever handler later formats it."""
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if not _forms:
                return record
            try:
                message = record.getMessage()
            except Exception:  # a bad format string: leave it to the handler to report
                return record
            clean = scrub(message)
            if clean != message:
                record.msg, record.args = clean, None
            if record.exc_info and not record.exc_text:
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True
