"""What crosses Temporal's wire (history): units, results, journal rows, and secrets
sealed out of them.

Pure Python with no import of ``temporalio`` nor of the runner at module level, so
the workflow sandbox can pass it through. Workflow secrets never enter history: a
value read from ``WILLO_SECRET_NAME`` is replaced by a marker naming the secret
(:func:`seal`) before a unit's inputs or outputs leave a worker, and the worker that
sends the unit puts it back from its own environment (:func:`unseal`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.workflows.runner import Pending, RunResult, Unit

SEP = "#"
#: journal statuses the workflow writes for a unit it ran
DONE = ("succeeded", "failed", "blocked", "not_started")
_MARK = "\u0000secret:{}\u0000"
_MARK_RE = re.compile("\u0000secret:([A-Za-z0-9_]+)\u0000")


def key(step: str, item: int) -> str:
    """A journal row's key in history (JSON objects have string keys only)."""
    return f"{step}{SEP}{item}"


def split(text: str) -> tuple[str, int]:
    step, _, item = text.rpartition(SEP)
    return step, int(item)


# --------------------------------------------------------------------------- secrets


def seal(value: Any, secrets: Mapping[str, str]) -> Any:
    """``value`` with every secret's value replaced by a marker naming the secret."""
    pairs = sorted(((n, v) for n, v in secrets.items() if v), key=lambda p: len(p[1]), reverse=True)
    if not pairs:
        return value

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            for name, secret in pairs:
                if secret in v:
                    v = v.replace(secret, _MARK.format(name))
            return v
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)


def unseal(value: Any, lookup: Callable[[str], str]) -> Any:
    """``value`` with each marker replaced by ``lookup(name)``."""

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return _MARK_RE.sub(lambda m: lookup(m.group(1)), v) if "\u0000secret:" in v else v
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)


def shown(value: Any) -> Any:
    """``value`` as it may be shown: each marker as ``***``."""
    return unseal(value, lambda _name: "***")


def secret_names(value: Any) -> set[str]:
    """The secrets whose markers ``value`` holds."""
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, str):
            found.update(_MARK_RE.findall(v))
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(value)
    return found


# --------------------------------------------------------------------------- units


def unit_to_wire(unit: Unit, account: str) -> dict[str, Any]:
    r = unit.retry
    return {
        "step": unit.step,
        "item": unit.item,
        "action": unit.action,
        "inputs": unit.inputs,
        "retry": {
            "attempts": r.attempts,
            "backoff": r.backoff,
            "max_backoff": r.max_backoff,
            "on": list(r.on),
        },
        "timeout": unit.timeout,
        "label": unit.label,
        "account": account,
    }


def unit_from_wire(data: Mapping[str, Any]) -> Unit:
    from connector.workflows.runner import RetryPolicy, Unit

    return Unit(
        data["step"],
        int(data["item"]),
        data["action"],
        dict(data["inputs"]),
        RetryPolicy.from_step(data.get("retry")),
        data.get("timeout"),
        data.get("label") or "",
    )


def pending_to_wire(pending: Pending | None) -> dict[str, Any] | None:
    if pending is None:
        return None
    return {"status": pending.status, "output": pending.output, "cause": pending.cause}


def pending_from_wire(data: Mapping[str, Any] | None) -> Pending | None:
    from connector.workflows.runner import Pending

    if not data:
        return None
    return Pending(data["status"], data.get("output"), data.get("cause"))


# --------------------------------------------------------------------------- results


def result_to_wire(result: RunResult) -> dict[str, Any]:
    """A run's result as the workflow returns it: the local ``--json`` shape, plus each
    failure's kind (so the CLI can rebuild the same :class:`RunResult`)."""
    data = result.as_dict()
    data["kind"] = result.kind
    for step, out in zip(result.steps, data["steps"], strict=True):
        if step.kind:
            out["kind"] = step.kind
    return data


def result_from_wire(data: Mapping[str, Any]) -> RunResult:
    from connector.workflows.runner import RunResult, StepResult

    steps = [
        StepResult(
            s["id"],
            s["action"],
            s["status"],
            s.get("output"),
            s.get("error"),
            s.get("items"),
            s.get("requests") or [],
            int(s.get("retries") or 0),
            s.get("kind"),
        )
        for s in data.get("steps") or []
    ]
    return RunResult(
        data.get("run_id"),
        data.get("workflow") or "",
        data.get("status") or "failed",
        steps,
        data.get("error"),
        bool(data.get("dry_run")),
        kind=data.get("kind"),
        parent=data.get("rerun_of"),
    )
