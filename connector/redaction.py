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
import re
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
_forms: tuple[str, ...] = ()  # every form of every value, lower-cased, longest first
_encoded: tuple[tuple[str, str], ...] = ()  # base64 forms (case matters): (padded, unpadded)
_pattern: re.Pattern[str] | None = None  # the forms, in any case
_factory_installed = False


def _variants(value: str) -> tuple[set[str], set[tuple[str, str]]]:
    """The forms a secret takes when shown: as it is, in URLs, JSON and reprs (matched
    in any case, as a template filter such as ``upper`` or ``title`` gives it); and
    base64-encoded whole (a Basic auth header, ``b64encode`` in a plugin)."""
    found = {value.lower()}
    for v in (value, value.lower(), value.upper()):
        found |= {quote(v, safe="").lower(), quote_plus(v).lower(), json.dumps(v)[1:-1].lower()}
        found.add(repr(v)[1:-1].lower())
    raw = value.encode("utf-8", "surrogatepass")
    both = (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode())
    encoded = {(t, t.rstrip("=")) for t in both}
    return {v for v in found if len(v) >= MIN_LENGTH}, encoded


def register(*values: str | None) -> None:
    """Treat each value as a secret from now on (None, empty and short ones are ignored)."""
    global _forms, _encoded, _pattern
    fresh = [v for v in values if isinstance(v, str) and len(v) >= MIN_LENGTH and v not in _values]
    if not fresh:
        return
    with _lock:
        forms, encoded = set(_forms), set(_encoded)
        for v in fresh:
            _values.add(v)
            plain, b64 = _variants(v)
            forms |= plain
            encoded |= b64
        _forms = tuple(sorted(forms, key=len, reverse=True))
        _encoded = tuple(sorted(encoded))
        _pattern = re.compile("|".join(map(re.escape, _forms)), re.IGNORECASE)
    _install_log_factory()


def register_env(env: Mapping[str, str] | None = None) -> None:
    """Register the secrets the environment holds (API key, webhook secret, WILLO_SECRET_*)."""
    env = os.environ if env is None else env
    register(*(env.get(name, "").strip() for name in SECRET_ENV))
    register(*(v.strip() for k, v in env.items() if k.startswith(SECRET_ENV_PREFIXES)))


def secrets() -> frozenset[str]:
    return frozenset(_values)


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``. Most text holds none:
    that is found with one lower-casing and a substring search a form, and only text
    that holds one goes through the pattern."""
    forms, encoded, pattern = _forms, _encoded, _pattern
    if not forms or pattern is None or not isinstance(text, str):
        return text
    lowered = text.lower()
    if any(form in lowered for form in forms):
        text = pattern.sub(REDACTED, text)
    for padded, bare in encoded:
        if bare in text:  # the padded form holds it too: the padded one goes first
            text = text.replace(padded, REDACTED).replace(bare, REDACTED)
    return text


def contains_secret(text: str) -> bool:
    lowered = text.lower()
    return any(form in lowered for form in _forms) or any(bare in text for _, bare in _encoded)


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
