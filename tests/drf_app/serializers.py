"""ModelSerializers: every field is sent, ``null`` when empty, as DRF does."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from rest_framework import serializers

from tests.drf_app import models as m

STAGES = ["Invited", "Completed", "Reviewed", "Shortlisted", "Rejected", "Hired"]
EVENTS = ["new_response", "stage_change", "new_comment", "new_score"]
TEMPLATE_REFS = [
    "invitation_email",
    "invitation_sms",
    "reminder_email",
    "reminder_sms",
    "interview_completed_email",
]
E164 = r"^\+[1-9][0-9]{1,14}$"


class OwnerSerializer(serializers.ModelSerializer):
    class Meta:
        model = m.User
        fields = ["key", "email", "full_name"]


class BrandingSerializer(serializers.Serializer):
    logo_url = serializers.URLField(allow_null=True, required=False)
    primary_colour = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", allow_null=True, required=False)


class DepartmentSerializer(serializers.ModelSerializer):
    branding = BrandingSerializer(allow_null=True, required=False)

    class Meta:
        model = m.Department
        fields = ["key", "name", "description", "is_global", "branding", "created_at"]


class QuestionSerializer(serializers.ModelSerializer):
    class Meta:
        model = m.Question
        fields = [
            "key",
            "text",
            "order",
            "answer_type",
            "max_retakes",
            "max_duration",
            "thinking_time",
            "max_characters",
        ]


class SettingsSerializer(serializers.Serializer):
    show_hints_and_tips = serializers.BooleanField(required=False)
    show_availability_calendar = serializers.BooleanField(required=False)
    deadline = serializers.DateTimeField(allow_null=True, required=False)


class TemplateRefsSerializer(serializers.Serializer):
    invitation_email = serializers.CharField(allow_null=True, required=False)
    invitation_sms = serializers.CharField(allow_null=True, required=False)
    reminder_email = serializers.CharField(allow_null=True, required=False)
    reminder_sms = serializers.CharField(allow_null=True, required=False)
    interview_completed_email = serializers.CharField(allow_null=True, required=False)


def _json_ready(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in data.items()}


class InterviewSerializer(serializers.ModelSerializer):
    owner = OwnerSerializer(read_only=True)
    questions = QuestionSerializer(many=True, required=False)
    settings = SettingsSerializer(required=False)
    message_templates = TemplateRefsSerializer(required=False)
    invite_link = serializers.SerializerMethodField()
    stages = serializers.JSONField(read_only=True)

    class Meta:
        model = m.Interview
        fields = [
            "key",
            "title",
            "owner",
            "department",
            "default_language",
            "description",
            "salary",
            "invite_link",
            "questions",
            "settings",
            "message_templates",
            "stages",
            "created_at",
        ]
        extra_kwargs = {"default_language": {"validators": []}}

    def get_invite_link(self, obj: m.Interview) -> str:
        return self.context["request"].build_absolute_uri(f"/invite/{obj.key}")

    @transaction.atomic
    def create(self, data: dict[str, Any]) -> m.Interview:
        questions = data.pop("questions", [])
        settings = {"show_hints_and_tips": True, "show_availability_calendar": False, "deadline": None}
        data["settings"] = settings | _json_ready(data.get("settings") or {})
        data["message_templates"] = dict.fromkeys(TEMPLATE_REFS) | dict(data.get("message_templates") or {})
        data["stages"] = list(STAGES)
        interview = m.Interview.objects.create(owner=self.context["request"].user, **data)
        self._questions(interview, questions)
        return interview

    @transaction.atomic
    def update(self, interview: m.Interview, data: dict[str, Any]) -> m.Interview:
        questions = data.pop("questions", None)
        for name in ("settings", "message_templates"):
            if name in data:
                data[name] = getattr(interview, name) | _json_ready(dict(data[name]))
        for name, value in data.items():
            setattr(interview, name, value)
        interview.save()
        if questions is not None:
            interview.questions.all().delete()
            self._questions(interview, questions)
        return interview

    @staticmethod
    def _questions(interview: m.Interview, questions: list[dict[str, Any]]) -> None:
        for i, q in enumerate(questions):
            m.Question.objects.create(interview=interview, **{"order": i, **q})


class ParticipantSerializer(serializers.ModelSerializer):
    invite_link = serializers.SerializerMethodField()
    phone = serializers.RegexField(
        E164,
        allow_null=True,
        required=False,
        error_messages={"invalid": "Enter a valid phone number in E.164 format, e.g. +447700900123."},
    )
    send_email = serializers.BooleanField(write_only=True, required=False)
    send_sms = serializers.BooleanField(write_only=True, required=False)

    class Meta:
        model = m.Participant
        fields = [
            "key",
            "interview",
            "email",
            "first_name",
            "last_name",
            "phone",
            "stage",
            "status",
            "score",
            "invite_link",
            "created_at",
            "updated_at",
            "completed_at",
            "send_email",
            "send_sms",
        ]
        read_only_fields = ["stage", "status", "score", "completed_at"]

    def get_invite_link(self, obj: m.Participant) -> str:
        return self.context["request"].build_absolute_uri(f"/i/{obj.key}")

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("send_sms") and not data.get("phone"):
            raise serializers.ValidationError({"phone": ["A phone number is required to send an SMS."]})
        return data

    def create(self, data: dict[str, Any]) -> m.Participant:
        data.pop("send_email", None)
        data.pop("send_sms", None)
        return super().create(data)


class ParticipantUpdateSerializer(ParticipantSerializer):
    """PUT and PATCH: the interview is fixed; the stage is one of the board's, exactly."""

    class Meta(ParticipantSerializer.Meta):
        read_only_fields = ["interview", "status", "score", "completed_at"]
        validators: list[Any] = []

    def validate_stage(self, stage: str) -> str:
        board = self.instance.interview.stages
        if stage not in board:
            raise serializers.ValidationError(
                f'"{stage}" is not a stage of this interview ({", ".join(board)}).'
            )
        return stage


class MessageTemplateSerializer(serializers.ModelSerializer):
    class Meta:
        model = m.MessageTemplate
        fields = ["key", "name", "type", "channel", "subject", "body", "is_default", "created_at"]
        read_only_fields = ["is_default"]

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        merged = {
            **({"type": self.instance.type, "channel": self.instance.channel} if self.instance else {}),
            **data,
        }
        if merged.get("type") == "success" and merged.get("channel") == "sms":
            raise serializers.ValidationError({"channel": ["Success messages are sent by email only."]})
        return data


class UserSerializer(serializers.ModelSerializer):
    role = serializers.ChoiceField(choices=["admin", "standard"])

    class Meta:
        model = m.User
        fields = ["key", "email", "first_name", "last_name", "full_name", "role", "status", "created_at"]
        read_only_fields = ["full_name", "status"]

    def to_representation(self, obj: m.User) -> dict[str, Any]:
        out = super().to_representation(obj)
        out["role"] = obj.role  # the owner shows as owner, though no one can be made one
        return out


class UserUpdateSerializer(UserSerializer):
    class Meta(UserSerializer.Meta):
        read_only_fields = ["email", "full_name", "status"]


class WebhookSerializer(serializers.ModelSerializer):
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENTS), allow_empty=False)
    secret = serializers.CharField(write_only=True, allow_null=True, required=False, max_length=500)
    has_secret = serializers.SerializerMethodField()

    class Meta:
        model = m.Webhook
        fields = ["key", "url", "events", "secret", "is_active", "has_secret", "created_at"]

    def get_has_secret(self, obj: m.Webhook) -> bool:
        return bool(obj.secret)


class CategorySerializer(serializers.ModelSerializer):
    class Meta:
        model = m.Category
        fields = ["key", "name"]


class InterviewTemplateSerializer(serializers.ModelSerializer):
    questions = QuestionSerializer(many=True, read_only=True)

    class Meta:
        model = m.InterviewTemplate
        fields = ["key", "title", "category", "description", "questions"]


class ChildSerializer(serializers.ModelSerializer):
    class Meta:
        model = m.Child
        fields = ["key", "name", "parent", "created_at"]
        read_only_fields = ["parent"]


class CodeNameSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
