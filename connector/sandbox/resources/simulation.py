"""What people do in Willo's own UI (respond, comment, score, move), and the
sandbox's own controls (reset, faults, deliveries)."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from connector.sandbox import framework as fw
from connector.sandbox import validate as v
from connector.sandbox.faults import FAULTS
from connector.sandbox.resources.base import ApiError, detail
from connector.sandbox.resources.participants import Participants
from connector.sandbox.store import DEFAULT_STAGES, new_key


class Simulation(Participants):
    def sim_respond(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self.get("participants", key)
        if p["status"] == "completed":
            raise ApiError(400, {"non_field_errors": ["This participant has already responded."]})
        itv = self.store.table("interviews")[p["interview"]]
        answers = body.get("answers") if isinstance(body.get("answers"), list) else []
        responses = []
        for i, q in enumerate(itv["questions"]):
            given = answers[i] if i < len(answers) and isinstance(answers[i], str) else None
            text_answer = q.get("answer_type") == "text"
            responses.append(
                {
                    "question": q["text"],
                    "answer_type": q.get("answer_type", "video"),
                    "text": (given or "My answer.") if text_answer else None,
                    "media_url": None if text_answer else f"{request.host_url}media/responses/{key}/{i}.mp4",
                }
            )
        now = self.store.clock.now()
        self.store.update("participants", p, {"status": "completed", "completed_at": now, "updated_at": now})
        self.store.responses[key] = responses
        if body.get("idv"):
            self.store.idv[key] = {
                "status": "verified",
                "document_type": "passport",
                "country": "GB",
                "verified_at": now,
            }
        if p["stage"] == DEFAULT_STAGES[0] and "Completed" in itv["stages"]:
            self.store.update("participants", p, {"stage": "Completed"})
        self.fire("new_response", p, responses=responses)
        return 200, self.participant_out(p)

    def sim_comment(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self.get("participants", key)
        data = self.clean(body, {"text": v.text(5000)}, ("text",), partial=False)
        comment = {"key": new_key(), "text": data["text"], "author": user["email"]}
        p["_comments"].append(comment)
        self.fire("new_comment", p, comment=comment)
        return 201, comment

    def sim_score(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self.get("participants", key)
        score = body.get("score")
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not 0 <= score <= 5:
            raise ApiError(400, {"score": ["A number from 0 to 5 is required."]})
        self.store.update("participants", p, {"score": score, "updated_at": self.store.clock.now()})
        self.fire("new_score", p, score=fw.decimal_text(score), scored_by=user["email"])
        return 200, self.participant_out(p)

    def sim_stage(self, request: Request, user: dict[str, Any], body: Any, key: str) -> Any:
        p = self.get("participants", key)
        data = self.clean(body, {"stage": v.text(100)}, ("stage",), partial=False)
        self._set_stage(p, data["stage"])
        return 200, self.participant_out(p)

    def sim_reset(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        if self._reset is None:
            raise detail(404, "Not found.")
        self._reset()
        return 200, {"detail": "Sandbox reset."}

    def sim_faults(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        plan = body.get("next", [])
        if not isinstance(plan, list) or any(f not in FAULTS for f in plan):
            raise ApiError(400, {"next": [f"Expected a list of: {', '.join(FAULTS)}."]})
        self.faults.planned.extend(plan)
        return 200, {"planned": list(self.faults.planned), "injected": self.faults.injected}

    def sim_deliveries(self, request: Request, user: dict[str, Any], body: Any) -> Any:
        return 200, {"results": self.deliverer.log()}
