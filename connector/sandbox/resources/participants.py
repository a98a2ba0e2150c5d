"""Participants (candidates): invitations, stages, identity checks; the webhooks they fire."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from connector.sandbox import framework as fw
from connector.sandbox import validate as v
from connector.sandbox.resources.base import ApiError, Resource, _public, ordering
from connector.sandbox.store import DEFAULT_STAGES

ORDERING = {"created_at", "completed_at", "updated_at"}


class Participants(Resource):
    PART_RULES: dict[str, v.Rule] = {
        "email": v.email,
        "first_name": v.nullable(v.text(100, allow_blank=True)),
        "last_name": v.nullable(v.text(100, allow_blank=True)),
        "phone": v.nullable(v.phone),
        "stage": v.text(100),
    }
    INVITE_RULES: dict[str, v.Rule] = {
        "interview": v.matches(v.KEY, "Invalid key."),
        "send_email": v.boolean,
        "send_sms": v.boolean,
        **{k: r for k, r in PART_RULES.items() if k != "stage"},
    }

    def participant_out(self, p: dict[str, Any]) -> dict[str, Any]:
        return {**_public(p), "score": fw.decimal_text(p.get("score"))}  # a DecimalField

    def participants_list(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        args = request.args
        interviews = self.store.table("interviews")
        spec = {
            "interview": ("interview", "interviews"),
            "stage": ("stage", None),
            "status": ("status", ("invited", "completed")),
            "email": ("email", None),  # exact, case included, as Django's
        }
        items = self.listing(
            request,
            "participants",
            spec=spec,
            search=("email", "first_name", "last_name"),
            order=ordering(args.get("ordering"), ORDERING),
            visible=(
                None
                if self.privileged(user)
                else lambda p: self.interview_visible(user, interviews[p["interview"]])
            ),
            viewer=user["key"],
        )
        return self.page(request, items, self.participant_out)

    def participants_create(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        data = self.clean(body, self.INVITE_RULES, ("interview", "email"), partial=False)
        self.ref("interviews", data["interview"], "interview")
        self.check_interview(user, self.store.table("interviews")[data["interview"]])
        if data.get("send_sms") and not data.get("phone"):
            raise ApiError(400, {"phone": ["A phone number is required to send an SMS."]})
        if self.store.table("participants").bucket({"interview": data["interview"], "email": data["email"]}):
            raise ApiError(  # unique_together
                400, {"non_field_errors": ["The fields interview, email must make a unique set."]}
            )
        now = self.store.clock.now()
        record = self.store.insert(
            "participants",
            {
                "interview": data["interview"],
                "email": data["email"],
                "first_name": data.get("first_name"),
                "last_name": data.get("last_name"),
                "phone": data.get("phone"),
                "stage": DEFAULT_STAGES[0],
                "status": "invited",
                "score": None,
                "created_at": now,
                "updated_at": now,
                "completed_at": None,
                "_comments": [],
            },
        )
        self.store.update("participants", record, {"invite_link": f"{request.host_url}i/{record['key']}"})
        return 201, self.participant_out(record)

    def _participant(self, user: dict[str, Any], key: str) -> dict[str, Any]:
        p = self.get("participants", key)
        self.check_interview(user, self.store.table("interviews")[p["interview"]])
        return p

    def _board_stage(self, p: dict[str, Any], stage: str) -> str:
        board = self.store.table("interviews")[p["interview"]]["stages"]
        match = stage if stage in board else None  # exact, as a choice is on DRF
        if match is None:
            raise ApiError(
                400, {"stage": [f'"{stage}" is not a stage of this interview ({", ".join(board)}).']}
            )
        return str(match)

    def _set_stage(self, p: dict[str, Any], stage: str) -> None:
        match = self._board_stage(p, stage)
        before = p["stage"]
        if match != before:
            self.store.update("participants", p, {"stage": match, "updated_at": self.store.clock.now()})
            self.fire("stage_change", p, from_stage=before, to_stage=match)

    def participant_get(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        return 200, self.participant_out(self._participant(user, key))

    def _update_participant(self, p: dict[str, Any], data: dict[str, Any]) -> None:
        stage = data.pop("stage", None)
        if stage is not None:
            self._board_stage(p, stage)  # validate before changing anything
        self.store.update("participants", p, {**data, "updated_at": self.store.clock.now()})
        if stage is not None:
            self._set_stage(p, stage)

    def participant_put(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self._participant(user, key)
        data = self.clean(body, self.PART_RULES, ("email",), partial=False)
        data = {"first_name": None, "last_name": None, "phone": None, **data}
        self._update_participant(p, data)
        return 200, self.participant_out(p)

    def participant_patch(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self._participant(user, key)
        self._update_participant(p, self.clean(body, self.PART_RULES, (), partial=True))
        return 200, self.participant_out(p)

    def participant_delete(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        self._participant(user, key)
        del self.store.table("participants")[key]
        return 204, None

    def participant_idv_info(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self._participant(user, key)
        info = self.store.idv.get(key) or {
            "status": "not_started",
            "document_type": None,
            "country": None,
            "verified_at": None,
        }
        return 200, {"participant": p["key"], **info}

    def participant_idv_media(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self._participant(user, key)
        media = []
        if key in self.store.idv and self.store.idv[key]["status"] == "verified":
            base = f"{request.host_url}media/idv/{key}"
            media = [{"type": t, "url": f"{base}/{t}.jpg"} for t in ("document_front", "selfie")]
        return 200, {"participant": p["key"], "media": media}

    def fire(self, event: str, participant: dict[str, Any], **extra: Any) -> None:
        interview = self.store.table("interviews")[participant["interview"]]
        data = {
            "participant": self.participant_out(participant),
            "interview": {"key": interview["key"], "title": interview["title"]},
            **extra,
        }
        self.deliverer.publish(event, data)
