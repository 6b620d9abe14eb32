"""The quality loop's rules on their own: sampling allocation, thresholds, the gate's decision, settings validation."""

from datetime import timedelta

import pandas as pd
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from quality.gate import decide
from quality.models import QualitySettings
from quality.sampling import choose, largest_remainder
from quality.thresholds import breaches


@pytest.mark.parametrize(
    "counts, n, expected",
    [
        ({"A": 10, "B": 3, "C": 1}, 7, {"A": 5, "B": 2, "C": 0}),
        ({"A": 100, "B": 1, "C": 1}, 50, {"A": 49, "B": 1, "C": 0}),
        ({"A": 2, "B": 2}, 10, {"A": 2, "B": 2}),  # more asked than exists: everything, no more
        ({"A": 1, "B": 1, "C": 1}, 2, {"A": 1, "B": 1, "C": 0}),
        ({"A": 5, "B": 0}, 3, {"A": 3}),  # empty strata get no quota at all
    ],
)
def test_largest_remainder_allocation(counts, n, expected):
    assert largest_remainder(pd.Series(counts), n).to_dict() == expected


def test_largest_remainder_never_negative_and_sums_to_n():
    counts = pd.Series({f"P{i}": size for i, size in enumerate([1, 2, 3, 5, 8, 13, 21, 34, 55, 89])})
    for n in [1, 7, 50, 99, 231, 500]:
        quota = largest_remainder(counts, n)
        assert (quota >= 0).all()
        assert (quota <= counts[quota.index]).all()
        assert quota.sum() == min(n, counts.sum())


def test_stratified_choice_is_deterministic_for_a_seed_and_proportional():
    eligible = pd.DataFrame({"ITEM_CD": [f"I{i:03d}" for i in range(300)], "PART_TYPE": ["SLEEVE"] * 200 + ["GLAND"] * 100,
                             "rows": 3, "last_report": pd.Timestamp("2026-10-01")})
    first = choose(eligible, 30, "stratified", seed=5)
    assert first == choose(eligible, 30, "stratified", seed=5)
    assert first != choose(eligible, 30, "stratified", seed=6)
    part_of = dict(zip(eligible["ITEM_CD"], eligible["PART_TYPE"], strict=True))
    assert sum(part_of[c] == "SLEEVE" for c in first) == 20
    assert len(set(first)) == 30


def test_recent_strategy_takes_the_newest_items():
    eligible = pd.DataFrame({"ITEM_CD": ["A", "B", "C"], "PART_TYPE": "X", "rows": 1,
                             "last_report": pd.to_datetime(["2026-01-01", "2026-03-01", "2026-02-01"])})
    assert choose(eligible, 2, "recent", seed=0) == ["B", "C"]


def test_thresholds_report_worst_level_once_with_error_codes():
    cfg = QualitySettings()
    found = {b.metric: b for b in breaches({"mae": 12.0, "process_match": 0.83, "cv": 0.7, "sample_count": 2}, cfg, {"OUTDIAMETER": 0.4})}
    assert found["mae"].level == "critical" and found["mae"].error_code == 3001 and found["mae"].threshold == 10
    assert found["process_match"].level == "warning" and found["process_match"].error_code is None
    assert found["cv"].level == "warning"
    assert found["sample_count"].level == "warning"
    assert found["drift:OUTDIAMETER"].level == "warning"
    assert len(found) == 5


def test_process_match_under_critical_is_3002_and_good_metrics_breach_nothing():
    cfg = QualitySettings()
    (only,) = breaches({"mae": 1.0, "process_match": 0.5}, cfg)
    assert (only.metric, only.level, only.error_code) == ("process_match", "critical", 3002)
    assert breaches({"mae": 4.9, "process_match": 0.9, "cv": 0.2, "sample_count": 5}, cfg) == []


@pytest.mark.parametrize(
    "champion, challenger, deploy",
    [
        ({"mae": 10.0, "process_match": 0.9}, {"mae": 9.4, "process_match": 0.9}, True),  # 6 % better
        ({"mae": 10.0, "process_match": 0.9}, {"mae": 9.6, "process_match": 0.95}, False),  # only 4 % better
        ({"mae": 10.0, "process_match": 0.9}, {"mae": 5.0, "process_match": 0.85}, False),  # worse routings
        ({"mae": 10.0, "process_match": 0.9}, {"mae": None, "process_match": 0.9}, False),
    ],
)
def test_gate_needs_min_improvement_on_mae_and_no_worse_process_match(champion, challenger, deploy):
    decision, reason = decide(champion, challenger, 5.0)
    assert decision is deploy
    assert reason


@pytest.mark.django_db
def test_settings_refuse_nonsense_with_a_message_per_field():
    cfg = QualitySettings.current()
    cfg.mae_warning, cfg.mae_critical = 12, 10
    cfg.process_match_warning, cfg.process_match_critical = 0.7, 0.8
    cfg.schedule_cron = "every night"
    cfg.sample_size = 5
    with pytest.raises(ValidationError) as caught:
        cfg.full_clean()
    assert {"mae_warning", "process_match_warning", "schedule_cron", "sample_size"} <= set(caught.value.message_dict)


@pytest.mark.django_db
def test_defaults_are_the_runbook_thresholds():
    cfg = QualitySettings.current()
    assert (cfg.mae_warning, cfg.mae_critical, cfg.process_match_warning, cfg.process_match_critical) == (5, 10, 0.85, 0.80)
    assert (cfg.cv_max, cfg.sample_count_min, cfg.sample_size, cfg.sample_strategy) == (0.5, 3, 500, "stratified")
    assert (cfg.recent_window_days, cfg.cooldown_hours, cfg.queue_capacity, cfg.schedule_cron) == (30, 24, 3, "0 2 * * *")


@pytest.mark.django_db
def test_saving_settings_keeps_the_cycle_schedule_and_its_next_run_in_step():
    from django_q.models import Schedule
    from django_q.utils import localtime

    cfg = QualitySettings.current()
    created = Schedule.objects.get(name="quality-cycle")
    assert (localtime(created.next_run).hour, localtime(created.next_run).minute) == (2, 0)

    cfg.schedule_cron = "30 3 * * 1"
    cfg.save()
    schedule = Schedule.objects.get(name="quality-cycle")
    assert schedule.cron == "30 3 * * 1"
    # next_run follows the new cron at once (django-q2 itself computes it only on creation), in the cluster's time zone.
    local = localtime(schedule.next_run)
    assert (local.weekday(), local.hour, local.minute) == (0, 3, 30)
    assert timezone.now() < schedule.next_run <= timezone.now() + timedelta(days=7)

    # Saving without changing the cron keeps the next run where the scheduler put it.
    Schedule.objects.filter(pk=schedule.pk).update(next_run=schedule.next_run + timedelta(days=7))
    cfg.mae_warning = 4.0
    cfg.save()
    assert Schedule.objects.get(pk=schedule.pk).next_run == schedule.next_run + timedelta(days=7)

    cfg.schedule_enabled = False
    cfg.save()
    assert not Schedule.objects.filter(name="quality-cycle").exists()
    cfg.schedule_enabled = True
    cfg.save()
    assert localtime(Schedule.objects.get(name="quality-cycle").next_run).weekday() == 0


def test_settings_api_refuses_a_sample_size_over_the_limit_naming_the_field(admin_api):
    response = admin_api.patch("/api/v1/quality/settings/", {"sample_size": 20000}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"} and list(error["details"]) == ["sample_size"]
    assert "10000" in error["details"]["sample_size"][0]
    assert QualitySettings.current().sample_size == 500


def test_settings_api_read_by_planner_changed_only_by_ml_admin_with_history(planner_api, admin_api, ml_admin):
    assert planner_api.get("/api/v1/quality/settings/").json()["mae_critical"] == 10
    assert planner_api.patch("/api/v1/quality/settings/", {"mae_critical": 12}, format="json").status_code == 403
    response = admin_api.patch("/api/v1/quality/settings/", {"mae_critical": 12, "mae_warning": 6}, format="json")
    assert response.status_code == 200 and response.json()["mae_critical"] == 12
    latest = QualitySettings.history.order_by("-history_date").first()
    assert latest.mae_critical == 12 and latest.history_user == ml_admin


def test_settings_api_rejects_warning_looser_than_critical(admin_api):
    response = admin_api.patch("/api/v1/quality/settings/", {"mae_warning": 20}, format="json")
    assert response.status_code == 400
    assert "mae_warning" in response.json()["error"]["details"]
    bad_cron = admin_api.patch("/api/v1/quality/settings/", {"schedule_cron": "61 * * * *"}, format="json")
    assert bad_cron.status_code == 400 and "schedule_cron" in bad_cron.json()["error"]["details"]
