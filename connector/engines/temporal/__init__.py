"""The Temporal engine: the same workflow YAML on any number of workers and machines.

A run is a Temporal workflow (``WilloRun``, :mod:`.workflows`) that stays thin: it
keeps the run's journal and asks a local activity (``willo.plan``) what to do next;
that activity runs the very :class:`~connector.workflows.runner.Runner` a local run
uses, over the journal so far, until it needs units of work that have not run. Each
unit (a step, or one foreach item) is one activity (``willo.unit``) on the task
queue of its account, rate-limited by the Temporal server, running the local
executor's own :func:`~connector.workflows.runner.try_unit`. Expressions, branches and
step logic therefore never run inside Temporal's workflow sandbox: they run in
activities, whose results history records, so a replay is deterministic whatever
plugins' filters or the catalog do.

This package's top level imports nothing of ``temporalio`` (the optional extra
``willo-connector[temporal]``): only the modules that need it do, and only when the
Temporal engine is used. Settings come from the environment:

- ``WILLO_TEMPORAL_ADDRESS`` (``host:port``, required), ``WILLO_TEMPORAL_NAMESPACE``
  (default ``default``);
- ``WILLO_TEMPORAL_API_KEY`` (Temporal Cloud's API key; turns TLS on), or mTLS with
  ``WILLO_TEMPORAL_TLS_CERT`` and ``WILLO_TEMPORAL_TLS_KEY`` (files), optionally
  ``WILLO_TEMPORAL_TLS_CA`` (a server CA file) and ``WILLO_TEMPORAL_TLS_SERVER_NAME``;
  ``WILLO_TEMPORAL_TLS=1`` turns TLS on with the system's roots;
- ``WILLO_TEMPORAL_TASK_QUEUE``: the prefix of every task queue and workflow id
  (default ``willo``), to keep two deployments apart on one namespace;
- ``WILLO_TEMPORAL_HEARTBEAT``: seconds without a heartbeat after which a unit's
  worker counts as lost and the unit is tried elsewhere (default 15).
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.errors import ConfigError

EXTRA = "temporal"
INSTALL_HINT = f"pip install 'willo-connector[{EXTRA}]'"
#: the workflow type of a run, and of a polling trigger's poller
RUN_WORKFLOW = "WilloRun"
POLL_WORKFLOW = "WilloPoller"
#: the workflow type of an account's shared rate budget
BUDGET_WORKFLOW = "WilloBudget"
#: the most a unit's worker may be lost (killed, cut off) before the unit fails
MAX_LOST = 3
_ID_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def require() -> None:
    """Raise a one-line :class:`ConfigError` naming the extra if ``temporalio`` is missing."""
    try:
        import temporalio  # noqa: F401
    except ImportError:
        raise ConfigError(f"the Temporal engine needs the optional extra {EXTRA!r}: {INSTALL_HINT}") from None


@dataclass(frozen=True)
class TemporalSettings:
    address: str
    namespace: str = "default"
    api_key: str | None = None
    tls: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    tls_server_name: str | None = None
    prefix: str = "willo"
    heartbeat: float = 15.0

    @classmethod
    def from_env(cls, env: Any = None) -> TemporalSettings:
        env = os.environ if env is None else env
        address = (env.get("WILLO_TEMPORAL_ADDRESS") or "").strip()
        if not address:
            raise ConfigError(
                "the Temporal engine needs WILLO_TEMPORAL_ADDRESS (host:port of the Temporal "
                "frontend, e.g. localhost:7233); see docs/temporal.md"
            )
        if "://" in address or ":" not in address:
            raise ConfigError(f"WILLO_TEMPORAL_ADDRESS={address!r}: expected host:port, e.g. localhost:7233")
        cert, key = env.get("WILLO_TEMPORAL_TLS_CERT") or None, env.get("WILLO_TEMPORAL_TLS_KEY") or None
        if bool(cert) != bool(key):
            raise ConfigError("WILLO_TEMPORAL_TLS_CERT and WILLO_TEMPORAL_TLS_KEY go together (mTLS)")
        for name in ("WILLO_TEMPORAL_TLS_CERT", "WILLO_TEMPORAL_TLS_KEY", "WILLO_TEMPORAL_TLS_CA"):
            path = env.get(name)
            if path and not Path(path).is_file():
                raise ConfigError(f"{name}={path}: no such file")
        prefix = (env.get("WILLO_TEMPORAL_TASK_QUEUE") or "willo").strip()
        if not prefix or _ID_SAFE.search(prefix):
            raise ConfigError(f"WILLO_TEMPORAL_TASK_QUEUE={prefix!r}: use letters, digits, '.', '_' or '-'")
        raw_beat = env.get("WILLO_TEMPORAL_HEARTBEAT") or "15"
        try:
            beat = float(raw_beat)
        except ValueError:
            beat = -1.0
        if not 0.5 <= beat <= 3600:
            raise ConfigError(f"WILLO_TEMPORAL_HEARTBEAT={raw_beat!r}: seconds between 0.5 and 3600")
        api_key = (env.get("WILLO_TEMPORAL_API_KEY") or "").strip() or None
        if api_key:
            from connector import redaction

            redaction.register(api_key)
        tls_flag = (env.get("WILLO_TEMPORAL_TLS") or "").strip().lower() in ("1", "true", "yes", "on")
        return cls(
            address=address,
            namespace=(env.get("WILLO_TEMPORAL_NAMESPACE") or "default").strip(),
            api_key=api_key,
            tls=tls_flag or bool(api_key) or bool(cert),
            tls_cert=cert,
            tls_key=key,
            tls_ca=env.get("WILLO_TEMPORAL_TLS_CA") or None,
            tls_server_name=env.get("WILLO_TEMPORAL_TLS_SERVER_NAME") or None,
            prefix=prefix,
            heartbeat=beat,
        )

    # ------------------------------------------------------------------ names

    @property
    def control_queue(self) -> str:
        """The task queue of workflows (runs, pollers) and their plans: every worker polls it."""
        return f"{self.prefix}-control"

    def unit_queue(self, account: str) -> str:
        """The task queue of one account's units: rate-limited to its budget."""
        return unit_queue(self.prefix, account)

    def run_id(self) -> str:
        return f"{self.prefix}-run-{uuid.uuid4().hex[:20]}"

    def event_workflow_id(self, account: str, trigger: str, event_id: str) -> str:
        """One workflow id per delivered event: the server refuses a second start."""
        return event_workflow_id(self.prefix, account, trigger, event_id)

    def budget_id(self, account: str) -> str:
        """The one budget workflow of an account (started by the first request that needs it)."""
        return f"{self.prefix}-budget-{safe_id(account)}"

    def schedule_id(self, account: str, workflow: str) -> str:
        """The one Temporal Schedule of a workflow's ``schedule`` trigger on an account."""
        return f"{self.prefix}-schedule-{safe_id(account)}-{safe_id(workflow)}"

    def poller_id(self, account: str, trigger: str, options: Any, workflow: str) -> str:
        """One poller per account, trigger, options and workflow: a second is refused."""
        digest = hashlib.sha256(repr((options, workflow)).encode()).hexdigest()[:16]
        return f"{self.prefix}-poll-{safe_id(account)}-{safe_id(trigger)}-{digest}"


def event_workflow_id(prefix: str, account: str, trigger: str, event_id: str) -> str:
    """The run of one event (a delivery, a polled item) of ``account``: ``trigger`` names
    the workflow and its trigger."""
    return f"{prefix}-event-{safe_id(account)}-{safe_id(trigger)}-{safe_id(event_id, 120)}"


def unit_queue(prefix: str, account: str) -> str:
    """The task queue of ``account``'s units under ``prefix``."""
    return f"{prefix}-units-{safe_id(account)}"


def safe_id(text: str, limit: int = 80) -> str:
    """``text`` as a piece of a workflow id or task queue name: safe characters, and a
    digest when it had to be changed or cut (so two texts never share a piece)."""
    clean = _ID_SAFE.sub("_", str(text))
    if clean == text and len(clean) <= limit:
        return clean
    digest = hashlib.sha256(str(text).encode()).hexdigest()[:12]
    return f"{clean[: max(1, limit - 13)]}~{digest}"


def looks_like_run_id(text: str, env: Any = None) -> bool:
    """Is ``text`` the id of a Temporal run of this deployment (``PREFIX-run-...`` or
    ``PREFIX-event-...``)?"""
    env = os.environ if env is None else env
    prefix = (env.get("WILLO_TEMPORAL_TASK_QUEUE") or "willo").strip()
    return text.startswith((f"{prefix}-run-", f"{prefix}-event-"))
