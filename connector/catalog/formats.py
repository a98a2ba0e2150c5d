"""The schema dialect's own formats: ``cron`` and ``timezone``.

Registered on the catalog's format checker, so a trigger manifest that declares
``{type: string, format: cron}`` gets a static error naming the cron field that is
wrong (``day-of-week``...), and ``format: timezone`` one for an unknown IANA zone.
:func:`cron_times` is what the schedule trigger runs on: cronsim (a small, well-kept
cron evaluator) over :mod:`zoneinfo`, DST handled as cron daemons do.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, tzinfo
from typing import Any

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
RANGES = {
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT",
}
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class FormatProblem(ValueError):
    """A value that is not of its format; ``str()`` says why."""


def expand(expr: str) -> str:
    text = " ".join(expr.split())
    return MACROS.get(text.lower(), text)


def check_cron(expr: object) -> bool:
    """Raise :class:`FormatProblem` naming the field that is wrong."""
    if not isinstance(expr, str):
        return True  # the type is another keyword's business
    from cronsim import CronSim, CronSimError

    text = expand(expr)
    parts = text.split(" ")
    if len(parts) != 5:
        raise FormatProblem(
            f"{len(parts)} fields; a cron has 5 (minute hour day-of-month month day-of-week) "
            f"or is one of {', '.join(MACROS)}"
        )
    try:
        CronSim(text, datetime(2000, 1, 1))
    except CronSimError as exc:
        field = str(exc).removeprefix("Bad ").strip().lower()
        if field in FIELDS:
            value = parts[FIELDS.index(field)]
            raise FormatProblem(f"{field} field {value!r} is not valid ({RANGES[field]})") from None
        raise FormatProblem(str(exc)) from None
    return True


def zone(name: str) -> tzinfo:
    """The IANA time zone ``name``; :class:`FormatProblem` if there is none."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not name or name.startswith(("/", ".")) or ".." in name or "\x00" in name:
        raise FormatProblem(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise FormatProblem(f"unknown time zone {name!r} (use an IANA name such as Europe/London)") from None


def check_timezone(name: object) -> bool:
    if isinstance(name, str):
        zone(name)
    return True


def cron_times(expr: str, tz: str, after: datetime) -> Iterator[datetime]:
    """The times ``expr`` fires in zone ``tz``, strictly after ``after`` (aware)."""
    from cronsim import CronSim

    local = after.astimezone(zone(tz))
    return iter(CronSim(expand(expr), local))


def latest_time(expr: str, tz: str, now: datetime) -> datetime:
    """The latest time ``expr`` fires in zone ``tz`` at or before ``now`` (aware)."""
    from datetime import timedelta

    from cronsim import CronSim

    local = now.astimezone(zone(tz))
    for slot in CronSim(expand(expr), local + timedelta(minutes=1), reverse=True):
        if slot <= local:
            return slot
    raise AssertionError("unreachable")  # pragma: no cover - a cron iterator never ends


def register(checker: Any) -> None:
    """Add the formats to a jsonschema FormatChecker."""
    checker.checks("cron", raises=FormatProblem)(check_cron)
    checker.checks("timezone", raises=FormatProblem)(check_timezone)
