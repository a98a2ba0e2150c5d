"""What the host's pieces tell an operator: the context of each log line, and metric
events, with nobody listening by default.

**Log context.** The runner, the dispatcher, the receiver and the pollers say what
they are working on with :func:`bind` (a context manager over a ``contextvars``
variable, so each thread and each foreach unit sees its own): the account, run id,
workflow, step, item, trigger and event id. The formatters here put those fields on
every log line, as text or as one JSON object a line (``--log-format``,
``WILLO_LOG_FORMAT``), scrubbed of every registered secret
(:mod:`connector.redaction`) like the message itself.

**Metric events.** Hot paths call :func:`inc` and :func:`observe` with a metric name
and labels. Until a long-lived command installs a recorder (:func:`set_recorder`:
``connector.observe`` backs it with prometheus_client), each call is one global
lookup and returns: one-shot commands pay nothing and import nothing.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, Protocol

from connector import redaction

#: the context fields, in the order log lines show them
FIELDS = ("account", "run_id", "workflow", "step", "item", "trigger", "event_id")

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("willo_context", default=_EMPTY)


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to the log context for the ``with`` block (None values are left
    out; an enclosing value of the same name comes back after the block)."""
    given = {k: v for k, v in fields.items() if v is not None}
    if not given:
        yield
        return
    token = _context.set({**_context.get(), **given})
    try:
        yield
    finally:
        _context.reset(token)


def current() -> Mapping[str, Any]:
    """The log context of this thread or task, as bound so far."""
    return _context.get()


# --------------------------------------------------------------------------- metrics


class Recorder(Protocol):
    """Where metric events go (``connector.observe.Metrics``)."""

    def inc(self, name: str, labels: Mapping[str, str], amount: float) -> None: ...

    def observe(self, name: str, value: float, labels: Mapping[str, str]) -> None: ...


_recorder: Recorder | None = None


def set_recorder(recorder: Recorder | None) -> None:
    """Send metric events to ``recorder`` from now on (None: drop them)."""
    global _recorder
    _recorder = recorder


def recorder() -> Recorder | None:
    return _recorder


def inc(name: str, amount: float = 1.0, **labels: str) -> None:
    """Count ``amount`` on counter ``name`` (a no-op without a recorder)."""
    rec = _recorder
    if rec is not None:
        rec.inc(name, labels, amount)


def observe(name: str, value: float, **labels: str) -> None:
    """Record ``value`` in histogram ``name`` (a no-op without a recorder)."""
    rec = _recorder
    if rec is not None:
        rec.observe(name, value, labels)


# --------------------------------------------------------------------------- log lines

FORMATS = ("text", "json")


def _when(record: logging.LogRecord) -> str:
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{base}.{int(record.msecs):03d}Z"


class ContextFilter(logging.Filter):
    """Puts the log context of the thread that logs on the record (``willo``), before
    any handler formats it (a handler may format in another thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "willo"):
            record.willo = dict(_context.get())
        return True


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    found = getattr(record, "willo", None)
    return found if isinstance(found, Mapping) else _context.get()


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def _one_line(text: str) -> str:
    """``text`` on one line: a line break or other control character inside a message
    (say, from an id a sender chose) is shown escaped, so it cannot forge a log line."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


class TextFormatter(logging.Formatter):
    """``2026-05-01T10:00:00.123Z info connector.triggers.receiver: message run_id=... step=...``
    (a traceback, when there is one, follows on its own lines)."""

    def format(self, record: logging.LogRecord) -> str:
        ctx = _fields(record)
        line = f"{_when(record)} {record.levelname.lower()} {record.name}: {_one_line(record.getMessage())}"
        extra = " ".join(f"{k}={_one_line(str(ctx[k]))}" for k in FIELDS if k in ctx)
        if extra:
            line += " " + extra
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return redaction.scrub(line)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time``, ``level``, ``logger``, ``message``, the context
    fields that apply, and ``exc`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _when(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ctx = _fields(record)
        for key in FIELDS:
            if key in ctx:
                entry[key] = ctx[key]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        # the line as JSON escaped it: the registry holds each secret's JSON-escaped form too
        return redaction.scrub(json.dumps(entry, default=str))


def formatter(kind: str) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else TextFormatter()


_format = "text"


def set_format(kind: str) -> None:
    """The log format chosen for this process (``--log-format``)."""
    global _format
    _format = kind


def log_format() -> str:
    return _format


def status_line(text: str, level: str = "info", logger: str = "willo-connector") -> str:
    """A status message as the chosen format shows it: ``text`` as it is, or one JSON
    log line (so that, under ``--log-format json``, every line on stderr is JSON)."""
    if _format != "json":
        return text
    text = text.removeprefix(f"{level}: ")  # the level is a field of its own
    record = logging.LogRecord(logger, getattr(logging, level.upper(), logging.INFO), "", 0, text, None, None)
    return JsonFormatter().format(record)


__all__ = [
    "FIELDS",
    "FORMATS",
    "ContextFilter",
    "JsonFormatter",
    "Recorder",
    "TextFormatter",
    "bind",
    "current",
    "formatter",
    "inc",
    "log_format",
    "observe",
    "recorder",
    "set_format",
    "set_recorder",
    "status_line",
]
