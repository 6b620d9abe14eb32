"""Navigation by role: planners never see a link they cannot follow and always reach Predict, their reviews and the dashboards."""

from __future__ import annotations

import re

import pytest

from quality.models import QualityCycle
from training.models import TrainingJob

pytestmark = pytest.mark.postgres

PAGES = ["/", "/predict/", "/reviews/", "/quality/", "/quality/history/", "/quality/compare/"]


@pytest.fixture
def records(db):
    QualityCycle.objects.create(status="succeeded", sample_strategy="random", sample_size=10, items_evaluated=10, metrics={"mae": 1.0})
    TrainingJob.enqueue(label="shown", run_inline=True)


def _links(html: str) -> set[str]:
    return {href for href in re.findall(r'href="(/[^"#]*)', html) if not href.startswith("/static/")}


def test_planner_can_follow_every_link_and_reaches_predict_reviews_and_dashboards_from_everywhere(client, planner, records):
    client.force_login(planner)
    seen: set[str] = set()
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', html, re.S).group(1)
        assert {"/predict/", "/reviews/", "/quality/"} <= _links(nav), url
        assert "/admin/" not in html and "(admin)" not in html and "Administration" not in html, url
        seen |= _links(html)
    for link in sorted(seen):
        assert client.get(link).status_code < 400, link


def test_ml_admin_reaches_everything_including_the_admin(client, ml_admin, records):
    client.force_login(ml_admin)
    home = client.get("/").content.decode()
    assert {"/predict/", "/reviews/", "/quality/", "/admin/"} <= _links(home)
    dashboard = client.get("/quality/").content.decode()
    assert "Alerts (admin)" in dashboard and "/admin/training/trainingjob/" in dashboard


def test_anonymous_home_offers_a_login_and_no_role_links(client, db):
    html = client.get("/").content.decode()
    assert "/accounts/login/" in html and "/predict/" not in html and "/admin/" not in html
