"""Willo's resources as Django models (field names: the manifests' reading of Willo)."""

from __future__ import annotations

import secrets

from django.db import models


def new_key() -> str:
    return secrets.token_hex(16)


def Key() -> models.CharField:
    return models.CharField(primary_key=True, max_length=32, default=new_key, editable=False)


def Text(max_length: int) -> models.CharField:
    return models.CharField(max_length=max_length, null=True, blank=True)


class User(models.Model):
    key = Key()
    email = models.EmailField(unique=True)
    first_name = models.CharField(max_length=100, blank=True, default="")
    last_name = models.CharField(max_length=100, blank=True, default="")
    full_name = models.CharField(max_length=201, blank=True, default="")
    role = models.CharField(max_length=10, choices=[(r, r) for r in ("owner", "admin", "standard")])
    status = models.CharField(
        max_length=10, default="active", choices=[("invited", "invited"), ("active", "active")]
    )
    created_at = models.DateTimeField(auto_now_add=True)

    is_authenticated = True  # what DRF's IsAuthenticated and UserRateThrottle ask of a user

    def save(self, *args, **kwargs):
        self.full_name = f"{self.first_name} {self.last_name}".strip()
        super().save(*args, **kwargs)

    class Meta:
        ordering = ["-created_at"]


class ApiKey(models.Model):
    key = models.CharField(primary_key=True, max_length=100)
    user = models.ForeignKey(User, on_delete=models.CASCADE)


class Department(models.Model):
    key = Key()
    name = models.CharField(max_length=200)
    description = models.TextField(null=True, blank=True)
    is_global = models.BooleanField(default=False)
    branding = models.JSONField(null=True, blank=True)
    owner = models.ForeignKey(User, on_delete=models.CASCADE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class Interview(models.Model):
    key = Key()
    title = models.CharField(max_length=255)
    owner = models.ForeignKey(User, on_delete=models.CASCADE)
    department = models.ForeignKey(Department, null=True, blank=True, on_delete=models.SET_NULL)
    default_language = models.CharField(max_length=10, default="en")
    description = models.TextField(null=True, blank=True)
    salary = Text(200)
    settings = models.JSONField(default=dict)
    message_templates = models.JSONField(default=dict)
    stages = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


ANSWER_TYPES = [(t, t) for t in ("video", "audio", "text", "file")]


class Question(models.Model):
    key = Key()
    interview = models.ForeignKey(Interview, null=True, on_delete=models.CASCADE, related_name="questions")
    template = models.ForeignKey(
        "InterviewTemplate", null=True, on_delete=models.CASCADE, related_name="questions"
    )
    text = models.CharField(max_length=1000)
    order = models.PositiveIntegerField(null=True, blank=True)
    answer_type = models.CharField(max_length=10, choices=ANSWER_TYPES, default="video")
    max_retakes = models.PositiveIntegerField(null=True, blank=True, default=1)
    max_duration = models.PositiveIntegerField(null=True, blank=True, default=120)
    thinking_time = models.PositiveIntegerField(null=True, blank=True, default=30)
    max_characters = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["order", "pk"]


class Participant(models.Model):
    key = Key()
    interview = models.ForeignKey(Interview, on_delete=models.CASCADE)
    email = models.EmailField()
    first_name = Text(100)
    last_name = Text(100)
    phone = Text(16)
    stage = models.CharField(max_length=100, default="Invited")
    status = models.CharField(
        max_length=10, default="invited", choices=[("invited", "invited"), ("completed", "completed")]
    )
    score = models.DecimalField(max_digits=3, decimal_places=1, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        unique_together = [("interview", "email")]  # Django compares emails case-sensitively


class MessageTemplate(models.Model):
    key = Key()
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=10, choices=[(t, t) for t in ("invite", "reminder", "success")])
    channel = models.CharField(max_length=10, choices=[("email", "email"), ("sms", "sms")])
    subject = Text(255)
    body = models.TextField(max_length=5000)
    is_default = models.BooleanField(default=False)
    owner = models.ForeignKey(User, on_delete=models.CASCADE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class Webhook(models.Model):
    key = Key()
    url = models.URLField()
    events = models.JSONField(default=list)
    secret = Text(500)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class Category(models.Model):
    key = Key()
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)  # not shown: orders the list

    class Meta:
        ordering = ["created_at"]


class InterviewTemplate(models.Model):
    key = Key()
    title = models.CharField(max_length=255)
    category = models.ForeignKey(Category, null=True, on_delete=models.SET_NULL)
    description = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)  # not shown: orders the list

    class Meta:
        ordering = ["created_at"]


class Child(models.Model):
    key = Key()
    name = models.CharField(max_length=200)
    parent = models.CharField(max_length=32, null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
