"""The two roles exist after migrate and carry the permissions the product promises."""

import pytest
from django.contrib.auth.models import Group


@pytest.mark.django_db
def test_migrate_creates_planner_and_ml_admin_groups():
    assert set(Group.objects.values_list("name", flat=True)) >= {"planners", "ml_admins"}


def test_planner_may_predict_and_view_dashboards_but_not_train(planner):
    assert planner.has_perm("registry.predict")
    assert planner.has_perm("quality.view_dashboard")
    for perm in ["training.add_trainingjob", "registry.activate_modelversion", "quality.change_qualitysettings", "quality.acknowledge_qualityalert"]:
        assert not planner.has_perm(perm), perm


def test_ml_admin_may_train_activate_tune_and_acknowledge(ml_admin):
    for perm in [
        "registry.predict",
        "quality.view_dashboard",
        "training.add_trainingjob",
        "training.cancel_trainingjob",
        "registry.activate_modelversion",
        "quality.change_qualitysettings",
        "quality.run_qualitycycle",
        "quality.acknowledge_qualityalert",
    ]:
        assert ml_admin.has_perm(perm), perm
