"""Built-in actions: every Willo operation (YAML in ``manifests/actions``) and the
composite actions whose work is more than one request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from willo_manifests import ROOT

from connector import hookimpl
from connector.errors import AmbiguousRequestError, InputError, ServerError

from .http import http_request


@hookimpl
def manifest_paths() -> list[str | Path]:
    return [ROOT / "resources.yaml", ROOT / "actions"]


@hookimpl
def action_handlers() -> dict[str, Any]:
    return {
        "willo.move_participant_stage": move_participant_stage,
        "willo.find_or_invite_participant": find_or_invite_participant,
        "http.request": http_request,
    }


def board_stage(stages: list[str], wanted: str) -> str | None:
    """The board's spelling of ``wanted``, matched case-insensitively, or None."""
    folded = wanted.strip().casefold()
    return next((s for s in stages if s.casefold() == folded), None)


def move_participant_stage(inputs: dict[str, Any], client: Any) -> dict[str, Any]:
    """Move a participant to the stage of their interview's board named ``stage``."""
    participant = client.call("willo.get_participant", {"participant": inputs["participant"]})
    interview = client.call("willo.get_interview", {"interview": participant["interview"]})
    stages = list(interview.get("stages") or [])
    stage = board_stage(stages, inputs["stage"])
    if stage is None:
        raise InputError(
            f"willo.move_participant_stage: /stage: {inputs['stage']!r} is not a stage of "
            f"interview {interview.get('title', interview['key'])!r} "
            f"(stages: {', '.join(stages) or 'none'})"
        )
    if participant.get("stage") == stage:
        return dict(participant)
    return dict(client.call("willo.update_participant", {"participant": participant["key"], "stage": stage}))


def _find(client: Any, interview: str, email: str) -> dict[str, Any] | None:
    """The participant of ``interview`` whose email is ``email`` in any case.

    Willo's server is Django's: its ``email`` filter and unique constraint compare
    case-sensitively, so ``Case@Example.com`` is a new participant to it. Emails are
    compared casefolded here, whatever the server's filters do: first the exact filter
    (one request finds the usual duplicate), then a ``search`` (DRF's SearchFilter is
    case-insensitive; a server that ignores it sends the whole list, still correct).
    An exact match wins over a match in another case, the oldest over a newer one.
    """
    folded = email.casefold()
    for query in ({"email": email}, {"search": email}):
        page = client.call("willo.list_participants", {"interview": interview, **query, "all": True})
        found = [
            dict(item)
            for item in page.get("results", [])
            if item.get("interview", interview) == interview
            and str(item.get("email", "")).casefold() == folded
        ]
        if found:
            return min(reversed(found), key=lambda item: item["email"] != email)  # lists are newest first
    return None


def find_or_invite_participant(inputs: dict[str, Any], client: Any) -> dict[str, Any]:
    """Invite unless that email already is a participant of that interview.

    The lookup is authoritative: after a failure that may have landed (connection
    lost, 5xx) it looks again and returns the participant if the invitation did land.
    Otherwise the failure stands, and the step's retry policy tries again after its
    backoff, lookup first: the invitation is never sent twice.
    """
    found = _find(client, inputs["interview"], inputs["email"])
    if found is not None:
        return {"participant": found, "created": False}
    try:
        created = client.call("willo.invite_participant", inputs)
    except (AmbiguousRequestError, ServerError):
        landed = _find(client, inputs["interview"], inputs["email"])
        if landed is None:
            raise
        return {"participant": landed, "created": True}
    return {"participant": created, "created": True}
