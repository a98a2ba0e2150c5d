"""Views, authentication, pagination and throttles: stock DRF classes, configured."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.utils import timezone
from rest_framework import exceptions, mixins, permissions, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from tests.drf_app import models as m
from tests.drf_app import serializers as s
from tests.drf_app.policy import RATES


class IsAdmin(permissions.BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        return request.user.role in ("owner", "admin")


class AdminWrites(IsAdmin):
    def has_permission(self, request: Any, view: Any) -> bool:
        return request.method in permissions.SAFE_METHODS or super().has_permission(request, view)


class DepartmentViewSet(viewsets.ModelViewSet):
    queryset = m.Department.objects.all()
    serializer_class = s.DepartmentSerializer
    search_fields = ["name", "description"]
    ordering_fields = ["created_at", "name"]

    def perform_create(self, serializer: Any) -> None:
        serializer.save(owner=self.request.user)


class InterviewViewSet(viewsets.ModelViewSet):
    queryset = m.Interview.objects.select_related("owner").prefetch_related("questions")
    serializer_class = s.InterviewSerializer
    filterset_fields = ["department", "owner"]
    search_fields = ["title", "description"]
    ordering_fields = ["created_at", "title"]


class ParticipantViewSet(viewsets.ModelViewSet):
    queryset = m.Participant.objects.select_related("interview")
    filterset_fields = ["interview", "stage", "status", "email"]
    search_fields = ["email", "first_name", "last_name"]
    ordering_fields = ["created_at", "completed_at", "updated_at"]

    def get_serializer_class(self) -> type:
        if self.action in ("update", "partial_update"):
            return s.ParticipantUpdateSerializer
        return s.ParticipantSerializer

    @action(detail=True, url_path="idv-info")
    def idv_info(self, request: Any, pk: str) -> Response:
        p = self.get_object()
        return Response(
            {
                "participant": p.key,
                "status": "not_started",
                "document_type": None,
                "country": None,
                "verified_at": None,
            }
        )

    @action(detail=True, url_path="idv-media")
    def idv_media(self, request: Any, pk: str) -> Response:
        return Response({"participant": self.get_object().key, "media": []})


class MessageTemplateViewSet(viewsets.ModelViewSet):
    queryset = m.MessageTemplate.objects.all()
    serializer_class = s.MessageTemplateSerializer
    filterset_fields = ["type", "channel"]

    def perform_create(self, serializer: Any) -> None:
        serializer.save(owner=self.request.user)

    def get_object(self) -> m.MessageTemplate:
        tpl = super().get_object()
        if self.request.method not in permissions.SAFE_METHODS and tpl.is_default:
            raise exceptions.PermissionDenied("System default templates cannot be changed.")
        return tpl


class UserViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    queryset = m.User.objects.all()
    permission_classes = [permissions.IsAuthenticated, AdminWrites]
    filterset_fields = ["role"]
    search_fields = ["email", "full_name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_serializer_class(self) -> type:
        return s.UserUpdateSerializer if self.action == "partial_update" else s.UserSerializer

    def perform_create(self, serializer: Any) -> None:
        serializer.save(status="invited")

    def get_object(self) -> m.User:
        user = super().get_object()
        if self.request.method not in permissions.SAFE_METHODS and user.role == "owner":
            raise exceptions.PermissionDenied("The account owner cannot be changed through the API.")
        return user


class WebhookViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    queryset = m.Webhook.objects.all()
    serializer_class = s.WebhookSerializer
    permission_classes = [permissions.IsAuthenticated, IsAdmin]


class CategoryViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = m.Category.objects.all()
    serializer_class = s.CategorySerializer


class InterviewTemplateViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = m.InterviewTemplate.objects.prefetch_related("questions")
    serializer_class = s.InterviewTemplateSerializer
    filterset_fields = ["category"]
    search_fields = ["title", "description"]

    @action(detail=True, methods=["post"], url_path="interviews")
    def interviews(self, request: Any, pk: str) -> Response:
        tpl = self.get_object()
        body = {k: v for k, v in request.data.items() if k in ("title", "department", "default_language")}
        body.setdefault("title", tpl.title)
        body["description"] = tpl.description
        body["questions"] = s.QuestionSerializer(tpl.questions.all(), many=True).data
        for q in body["questions"]:
            q.pop("key")
        created = s.InterviewSerializer(data=body, context=self.get_serializer_context())
        created.is_valid(raise_exception=True)
        created.save()
        return Response(created.data, status=201)


class ChildViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    queryset = m.Child.objects.all()
    serializer_class = s.ChildSerializer
    permission_classes = [permissions.IsAuthenticated, IsAdmin]

    def perform_create(self, serializer: Any) -> None:
        serializer.save(parent=ORGANISATION["key"])


ORGANISATION = {"key": m.new_key()}


class StaticList(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = s.CodeNameSerializer
    filter_backends: list[Any] = []
    items: list[tuple[str, str]] = []

    def get_queryset(self) -> list[dict[str, str]]:
        return [{"code": c, "name": n} for c, n in self.items]


# ---------------------------------------------------------------- what the sandbox's _sandbox/ paths do


class Simulation(APIView):
    """Test controls at the sandbox's ``_sandbox/`` paths: authenticated, never throttled."""

    throttle_classes: list[Any] = []


class Respond(Simulation):
    def post(self, request: Any, key: str) -> Response:
        p = m.Participant.objects.filter(key=key).first()
        if p is None:
            raise exceptions.NotFound()
        p.status, p.completed_at = "completed", timezone.now()
        if p.stage == "Invited":
            p.stage = "Completed"
        p.save()
        return Response(s.ParticipantSerializer(p, context={"request": request}).data)


class Score(Simulation):
    def post(self, request: Any, key: str) -> Response:
        p = m.Participant.objects.filter(key=key).first()
        if p is None:
            raise exceptions.NotFound()
        p.score = request.data.get("score")
        p.save()
        p.refresh_from_db()
        return Response(s.ParticipantSerializer(p, context={"request": request}).data)


class Reset(Simulation):
    def post(self, request: Any) -> Response:
        from tests.drf_app.seed import reset

        reset(request.data.get("seed", "demo"), request.build_absolute_uri("/"))
        RATES.update(request.data.get("throttle") or dict.fromkeys(RATES))
        cache.clear()
        return Response({"detail": "Sandbox reset."})


class Throttles(Simulation):
    """How many requests each throttle holds against the caller (DRF's own history)."""

    def get(self, request: Any) -> Response:
        ident = request.user.pk
        return Response({scope: len(cache.get(f"throttle_{scope}_{ident}", [])) for scope in RATES})
