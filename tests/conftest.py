"""Shared fixtures: named personas, API clients, an isolated artifact directory."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from routing_ml.roles import ML_ADMINS, PLANNERS


@pytest.fixture(autouse=True)
def isolated_model_root(settings, tmp_path):
    """Every test writes artifacts and reports to its own directory, and starts with a cold model cache."""
    settings.MODEL_ROOT = tmp_path / "models"
    settings.MODEL_ROOT.mkdir()
    settings.QUALITY_REPORT_ROOT = tmp_path / "quality_reports"
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.MODEL_RELOAD_INTERVAL = 0
    from registry.loader import loader

    loader.clear()
    yield settings.MODEL_ROOT
    loader.clear()


def _user(django_user_model, username: str, group: str | None, **extra):
    user = django_user_model.objects.create_user(username=username, password="pw-" + username, **extra)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def planner(db, django_user_model):
    """A production planner: predicts and reads dashboards."""
    return _user(django_user_model, "pat_planner", PLANNERS)


@pytest.fixture
def ml_admin(db, django_user_model):
    """An ML admin: trains, activates, rolls back, tunes thresholds. Staff, so the admin site opens."""
    return _user(django_user_model, "alex_admin", ML_ADMINS, is_staff=True)


@pytest.fixture
def outsider(db, django_user_model):
    """An authenticated account with no role."""
    return _user(django_user_model, "olly_outsider", None)


@pytest.fixture
def ml_admin_client(client, ml_admin):
    """The Django test client logged in as the ML admin (for admin pages)."""
    client.force_login(ml_admin)
    return client


@pytest.fixture
def api():
    """An anonymous integration: no credentials."""
    return APIClient()


@pytest.fixture
def planner_api(planner):
    client = APIClient()
    client.force_authenticate(planner)
    return client


@pytest.fixture
def admin_api(ml_admin):
    client = APIClient()
    client.force_authenticate(ml_admin)
    return client


@pytest.fixture(autouse=True)
def fresh_throttle_counts():
    """Throttle counts (the token endpoint's, the API's shared and per-process ones) start at zero in every test."""
    from django.core.cache import caches

    from routing_ml.throttling import UserRateThrottle

    caches["throttle"].clear()
    UserRateThrottle.counts.clear()
    yield
    caches["throttle"].clear()
    UserRateThrottle.counts.clear()
