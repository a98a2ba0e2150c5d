"""DRF routing with trailing slashes, under Willo's base path."""

from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from connector.sandbox.seed import IDV_COUNTRIES, LANGUAGES
from tests.drf_app import views as v

router = SimpleRouter()  # trailing_slash=True, as Willo's paths have
router.register("departments", v.DepartmentViewSet, basename="department")
router.register("interviews", v.InterviewViewSet, basename="interview")
router.register("participants", v.ParticipantViewSet, basename="participant")
router.register("message-templates", v.MessageTemplateViewSet, basename="message-template")
router.register("users", v.UserViewSet, basename="user")
router.register("webhooks", v.WebhookViewSet, basename="webhook")
router.register("categories", v.CategoryViewSet, basename="category")
router.register("interview-templates", v.InterviewTemplateViewSet, basename="interview-template")
router.register("children", v.ChildViewSet, basename="child")
router.register("languages", type("Languages", (v.StaticList,), {"items": LANGUAGES}), basename="language")
router.register("idv-counties", type("Countries", (v.StaticList,), {"items": IDV_COUNTRIES}), basename="idv")

sim = [
    path("reset", v.Reset.as_view()),
    path("throttles", v.Throttles.as_view()),
    path("participants/<str:key>/respond", v.Respond.as_view()),
    path("participants/<str:key>/score", v.Score.as_view()),
]
urlpatterns = [
    path("api/integrations/v2/", include(router.urls)),
    path("api/integrations/v2/_sandbox/", include(sim)),
]
