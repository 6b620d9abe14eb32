"""The incremental ERP snapshot (`erp.snapshot`): a retrain reads only what changed, and never misses a change."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from django.db import connection

from erp import changes, data, snapshot
from erp import frames as data_frames
from erp.models import Item, RoutingOperation, WorkResult

# Database-facing: run again on PostgreSQL by `make test` (see the Makefile).
pytestmark = pytest.mark.postgres

ITEMS = 300


@pytest.fixture
def erp(db):
    call_command("seed_demo_erp", items=ITEMS, seed=5, stdout=io.StringIO())


def full_read():
    return data.load_training_frames(snapshot=False)


def snapshot_read():
    seen = []
    frames = data.load_training_frames(snapshot=True, on_read=seen.append)
    return frames, seen[0]


def assert_same_frames(left, right) -> None:
    for a, b in zip(left, right, strict=True):
        pd.testing.assert_frame_equal(a, b)


# ---------------------------------------------------------------------------------------- equality
def test_snapshot_read_equals_full_read_and_a_second_read_fetches_nothing(erp):
    first, stats = snapshot_read()
    assert set(stats.mode.values()) == {"full"}
    assert_same_frames(first, full_read())
    again, stats = snapshot_read()
    assert stats.mode == {"items": "unchanged", "routings": "unchanged", "work_results": "unchanged"}
    assert sum(stats.rows_read.values()) == 0
    assert_same_frames(again, full_read())


def test_training_from_the_snapshot_equals_training_from_a_full_read(erp):
    from training.engine import EngineConfig, train

    snapshot_read()  # build
    with connection.cursor() as cursor:  # and make the next read a merge of old and re-read partitions
        cursor.execute('UPDATE "BI_WORK_ORDER_RESULTS" SET "SETUP_HOURS" = 0.25 WHERE "ITEM_CD" = %s', [Item.objects.order_by("pk")[7].pk])
    merged, stats = snapshot_read()
    assert stats.mode["work_results"] == "partial"
    full = full_read()
    config = EngineConfig(seed=0, candidates=("baseline",), routing_candidates=("vote",))
    from_snapshot, from_full = train(*merged, config), train(*full, config)
    assert from_snapshot.metrics == from_full.metrics
    assert from_snapshot.candidate_scores == from_full.candidate_scores
    asked = full[0].iloc[::17]
    assert from_snapshot.model.predict(asked) == from_full.model.predict(asked)
    for name, array in from_full.model._arrays().items():
        np.testing.assert_array_equal(from_snapshot.model._arrays()[name], array, err_msg=name)


# ------------------------------------------------------------------------------ inserts, updates, deletes
def _first(model):
    return model.objects.order_by("pk").first()


def insert_item():
    Item.objects.create(
        item_cd="NEW-0001", part_type="SLEEVE", item_material="SUS304", outdiameter=42.0, insrt_dt=datetime(2026, 1, 5, tzinfo=UTC)
    )


def update_item():
    Item.objects.filter(pk=_first(Item).pk).update(item_material="CHANGED", outdiameter=999.0)


def delete_item():
    Item.objects.filter(pk=_first(Item).pk).delete()


def move_item():  # to another partition: both the old and the new month must be re-read
    Item.objects.filter(pk=_first(Item).pk).update(insrt_dt=datetime(2021, 7, 1, tzinfo=UTC))


def insert_routing():
    op = _first(RoutingOperation)
    RoutingOperation.objects.create(
        item_cd=op.item_cd, rout_no="999", proc_seq=10, job_cd="LAP", res_cd="LAP-01", inside_flag="IN", setup_time=5, run_time=1,
        insrt_dt=datetime(2026, 2, 1, tzinfo=UTC),
    )  # fmt: skip


def update_routing():
    RoutingOperation.objects.filter(pk=_first(RoutingOperation).pk).update(run_time=123.0, res_cd="OTHER")


def delete_routing():
    op = _first(RoutingOperation)
    RoutingOperation.objects.filter(item_cd=op.item_cd, rout_no=op.rout_no, proc_seq=op.proc_seq).delete()


def insert_work_result():
    wr = _first(WorkResult)
    WorkResult.objects.create(
        item_cd=wr.item_cd, proc_seq=wr.proc_seq, job_cd=wr.job_cd, res_cd=wr.res_cd, report_dt=datetime(2026, 3, 3, 8, tzinfo=UTC),
        order_qty=10, setup_hours=0.5, mach_worked_hours=2.0,
    )  # fmt: skip


def update_work_result():
    WorkResult.objects.filter(pk=_first(WorkResult).pk).update(mach_worked_hours=77.0)


def delete_work_result():
    WorkResult.objects.filter(pk=_first(WorkResult).pk).delete()


def unusable_work_result():  # a row the snapshot keeps turns into one it must not keep
    WorkResult.objects.filter(pk=_first(WorkResult).pk).update(order_qty=0)


CHANGES = {
    "items": [insert_item, update_item, delete_item, move_item],
    "routings": [insert_routing, update_routing, delete_routing],
    "work_results": [insert_work_result, update_work_result, delete_work_result, unusable_work_result],
}


@pytest.mark.parametrize("table, change", [(t, c) for t, cs in CHANGES.items() for c in cs], ids=lambda v: getattr(v, "__name__", v))
def test_after_a_change_the_next_snapshot_read_equals_a_fresh_full_read(erp, table, change):
    snapshot_read()
    change()
    merged, stats = snapshot_read()
    assert stats.mode[table] == "partial", stats.summary()  # only the touched partitions travelled
    assert 0 < stats.partitions_read[table] <= 2
    assert all(mode == "unchanged" for name, mode in stats.mode.items() if name != table)
    assert_same_frames(merged, full_read())


def test_triggers_installed_after_the_data_still_read_only_the_changed_partition(erp):
    """A database migrated after it was filled has counters only for what changed since: still a partial read."""
    with connection.cursor() as cursor:
        cursor.execute(f'DELETE FROM "{changes.COUNTER_TABLE}"')
    snapshot_read()
    update_work_result()
    merged, stats = snapshot_read()
    assert stats.mode["work_results"] == "partial" and stats.partitions_read["work_results"] == 1
    assert_same_frames(merged, full_read())


def test_changed_days_are_read_through_date_ranges_only_where_they_cover_the_partition_exactly():
    (start, end), = changes.partition_ranges("postgresql", [20250304])
    assert (start, end) == (datetime(2025, 3, 4, tzinfo=UTC), datetime(2025, 3, 5, tzinfo=UTC))
    runs = changes.partition_ranges("postgresql", [20241231, 20250101, 20250103])
    assert [(a.date().isoformat(), b.date().isoformat()) for a, b in runs] == [("2024-12-31", "2025-01-02"), ("2025-01-03", "2025-01-04")]
    assert changes.partition_ranges("postgresql", [0, 20250304]) is None  # partition 0: no date to bound
    assert changes.partition_ranges("postgresql", [20251399]) is None
    # SQLite reads its date text by position ('2025/03/04' is day 20250304, outside any ISO range): its expression is indexed instead.
    assert changes.partition_ranges("sqlite", [20250304]) is None
    assert changes.partition_ranges("microsoft", [20250304]) is None  # its expression is its own


@pytest.mark.django_db
def test_on_sqlite_a_changed_day_is_found_through_the_index_on_the_partition_expression():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite indexes the partition expression itself")
    spec = next(s for s in snapshot.SPECS if s.name == "work_results")
    part = changes.partition_expr("sqlite", '"REPORT_DT"')
    with connection.cursor() as cursor:
        cursor.execute(f'EXPLAIN QUERY PLAN SELECT * FROM "{spec.table}" WHERE {part} IN (%s, %s)', [20250304, 20250305])
        plan = " ".join(str(row[-1]) for row in cursor.fetchall())
    assert "USING INDEX" in plan and "erp_chg_part_" in plan, plan


@pytest.mark.parametrize(
    "text", ["{day} 10:00:00", "{day}", "{day}T23:59:59.999999", "{day} 00:00:00+00:00", "{slashed} 10:00:00", "{slashed}"]
)
def test_a_row_of_a_changed_day_is_read_again_whatever_the_form_of_its_date_text(erp, text):
    if connection.vendor != "sqlite":
        pytest.skip("dates are stored as text on SQLite only")
    snapshot_read()
    row = _first(WorkResult)
    day = WorkResult.objects.order_by("-report_dt").values_list("report_dt", flat=True).first().date()
    value = text.format(day=day.isoformat(), slashed=day.strftime("%Y/%m/%d"))
    with connection.cursor() as cursor:  # as a raw import might have written it
        cursor.execute('UPDATE "BI_WORK_ORDER_RESULTS" SET "REPORT_DT" = %s, "SETUP_HOURS" = 0.5 WHERE "ROW_ID" = %s', [value, row.pk])
    merged, stats = snapshot_read()
    assert stats.mode["work_results"] == "partial" and stats.partitions_read["work_results"] <= 2
    # The snapshot holds every row the ERP holds: the changed one was read again, not lost with its old partition.
    stored, again = snapshot.read_raw(write=False)
    spec = next(s for s in snapshot.SPECS if s.name == "work_results")
    assert again.mode["work_results"] == "unchanged"
    assert len(stored["work_results"]) == len(snapshot._read_rows(spec, data.erp_alias(WorkResult), None))
    if "/" not in value:  # a text the full read understands too: the frames are equal
        assert_same_frames(merged, full_read())


def test_all_changes_at_once_across_trainings(erp):
    snapshot_read()
    for table_changes in CHANGES.values():
        for change in table_changes:
            change()
            merged, _ = snapshot_read()
            assert_same_frames(merged, full_read())


def test_checksums_catch_changes_where_no_triggers_are_installed(erp):
    vendor = connection.vendor
    with connection.cursor() as cursor:
        for statement in changes.uninstall_sql(vendor):
            cursor.execute(statement)
    first, stats = snapshot_read()
    assert snapshot.status()["tables"]["items"]["kind"] == "checksums"
    for change in (update_item, delete_routing, update_work_result, insert_work_result):
        change()
        merged, stats = snapshot_read()
        assert "partial" in stats.mode.values(), stats.summary()
        assert_same_frames(merged, full_read())
    # an update that keeps the row count and the lengths of every value is still caught
    wr = _first(WorkResult)
    WorkResult.objects.filter(pk=wr.pk).update(job_cd=wr.job_cd[::-1] if len(set(wr.job_cd)) > 1 else wr.job_cd + "X")
    merged, stats = snapshot_read()
    assert stats.mode["work_results"] == "partial"
    assert_same_frames(merged, full_read())


def test_reinstalled_triggers_make_the_next_read_a_full_one(erp):
    """Counters that were dropped and start again from zero could repeat the values a snapshot saw."""
    snapshot_read()
    with connection.cursor() as cursor:
        for statement in changes.uninstall_sql(connection.vendor):
            cursor.execute(statement)
        update_item()  # unseen by any trigger
        for statement in changes.install_sql(connection.vendor):
            cursor.execute(statement)
    merged, stats = snapshot_read()
    assert set(stats.mode.values()) == {"full"}
    assert_same_frames(merged, full_read())


def test_past_the_listed_partition_limit_a_read_is_a_full_one(erp, monkeypatch):
    """Each changed day travels as one parameter (SQL Server takes 2,100 a statement): many days, one full read."""
    snapshot_read()
    days = WorkResult.objects.dates("report_dt", "day")
    for day in (days[0], days[len(days) - 1]):
        row = WorkResult.objects.filter(report_dt__date=day).order_by("pk").first()
        WorkResult.objects.filter(pk=row.pk).update(mach_worked_hours=55.0)
    monkeypatch.setattr(snapshot, "MAX_PARTITIONS_LISTED", 1)
    merged, stats = snapshot_read()
    assert stats.mode["work_results"] == "full"
    assert_same_frames(merged, full_read())


@pytest.mark.django_db(transaction=True)
def test_migrating_back_before_day_partitions_removes_the_triggers_and_forward_installs_them_again():
    """Going back: no triggers (older month code then uses checksums); forward again: day triggers and, on SQLite, the index."""
    alias = connection.alias

    def partition_index() -> bool:
        if connection.vendor != "sqlite":
            return False
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'erp_chg_part_%%'")
            return cursor.fetchone()[0] == 3

    assert changes.triggers_installed(alias, "BI_WORK_ORDER_RESULTS") and partition_index() == (connection.vendor == "sqlite")
    try:
        call_command("migrate", "erp", "0004", verbosity=0)
        assert not any(changes.triggers_installed(alias, table) for table in changes.PARTITION_COLUMN)
        assert not partition_index()
    finally:
        call_command("migrate", verbosity=0)
    assert all(changes.triggers_installed(alias, table) for table in changes.PARTITION_COLUMN)
    assert partition_index() == (connection.vendor == "sqlite")
    call_command("seed_demo_erp", items=40, seed=2, stdout=io.StringIO())
    assert {part for part in changes.read_counters(alias, "BI_WORK_ORDER_RESULTS") if part >= 0} <= {
        int(day.strftime("%Y%m%d")) for day in WorkResult.objects.dates("report_dt", "day")
    }  # counted by day


def test_triggers_count_every_kind_of_write(erp):
    before = changes.read_counters(connection.alias, "BI_ROUTING_VIEW")
    update_routing()
    delete_routing()
    after = changes.read_counters(connection.alias, "BI_ROUTING_VIEW")
    assert sum(after.values()) - sum(before.values()) >= 3  # the update bumps its old and new partition, the delete one


# ------------------------------------------------------------------------------- damage and concurrency
def _generation():
    generation, manifest = snapshot.load_manifest()
    return generation, manifest


@pytest.mark.parametrize(
    "damage",
    [
        lambda gen: (gen / "work_results.parquet").write_bytes((gen / "work_results.parquet").read_bytes()[:100]),
        lambda gen: (gen / "routings.parquet").unlink(),
        lambda gen: (gen / "items.parquet").write_bytes(b"PAR1" + b"\0" * 64 + b"PAR1"),
        lambda gen: (gen / "manifest.json").write_text("{not json"),
        lambda gen: (gen.parent / snapshot.POINTER).write_text("gen-missing"),
    ],
    ids=["truncated file", "missing file", "garbage file", "broken manifest", "dangling pointer"],
)
def test_a_corrupt_snapshot_is_detected_and_rebuilt(erp, damage):
    snapshot_read()
    generation, _ = _generation()
    for path in generation.iterdir():
        path.chmod(0o644)
    damage(generation)
    update_work_result()  # so the damaged file has to be read (not merely linked)
    merged, stats = snapshot_read()
    assert "full" in stats.mode.values() and "rebuilt" in stats.reason
    assert_same_frames(merged, full_read())
    again, stats = snapshot_read()
    assert set(stats.mode.values()) == {"unchanged"}


def test_a_crashed_write_leaves_the_previous_snapshot_in_use(erp, monkeypatch):
    snapshot_read()
    before, _ = _generation()
    update_item()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while swapping")

    monkeypatch.setattr(snapshot.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        snapshot_read()
    monkeypatch.undo()
    assert _generation()[0] == before
    assert not [p for p in before.parent.iterdir() if p.name.startswith(".tmp-")]
    merged, stats = snapshot_read()  # the old generation is intact; the change is read now
    assert stats.mode["items"] == "partial"
    assert_same_frames(merged, full_read())


def test_a_background_write_hands_the_frames_over_first_and_lands_a_complete_snapshot(erp, monkeypatch):
    """A training reads, then trains while the refreshed snapshot is written: the frames do not wait for the files."""
    import threading

    snapshot_read()
    before, _ = _generation()
    update_item()
    update_work_result()
    release = threading.Event()
    real_write = snapshot._write_generation

    def held_write(*args, **kwargs):
        assert release.wait(30)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(snapshot, "_write_generation", held_write)
    seen = []
    merged = data.load_training_frames(snapshot=True, on_read=seen.append, background_write=True)
    assert seen[0].mode["items"] == "partial" and _generation()[0] == before  # answered while the write waits
    assert_same_frames(merged, full_read())
    release.set()
    snapshot.wait_for_writes(30)
    assert _generation()[0] != before
    again, stats = snapshot_read()
    assert set(stats.mode.values()) == {"unchanged"}  # the background generation holds both changes
    assert_same_frames(again, full_read())


def test_a_failed_background_write_is_logged_and_the_change_read_again_next_time(erp, monkeypatch, caplog):
    snapshot_read()
    before, _ = _generation()
    update_item()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshot, "_write_generation", disk_full)
    data.load_training_frames(snapshot=True, background_write=True)
    snapshot.wait_for_writes(30)
    monkeypatch.undo()
    assert "ERP snapshot not written" in caplog.text and _generation()[0] == before
    merged, stats = snapshot_read()
    assert stats.mode["items"] == "partial"
    assert_same_frames(merged, full_read())


def test_a_refresh_in_line_still_raises_what_is_not_a_full_disk(erp, monkeypatch):
    """Only a background write swallows (and logs) its failures: `erp_snapshot --rebuild` must not report a broken write as done."""
    def broken(*args, **kwargs):
        raise ValueError("a bug in the writer")

    monkeypatch.setattr(snapshot, "_write_generation", broken)
    with pytest.raises(ValueError, match="a bug in the writer"):
        snapshot.read_raw(rebuild=True)


def test_interleaved_refreshes_each_leave_a_complete_snapshot(erp):
    """Two trainings refreshing at once: each writes its own generation; whichever rename lands last is complete."""
    snapshot_read()
    old_generation, _ = _generation()
    update_item()
    snapshot_read()  # training A
    pointer = old_generation.parent / snapshot.POINTER
    pointer.write_text(old_generation.name)  # training B, which started from the old generation, lands last
    update_work_result()
    merged, stats = snapshot_read()
    assert stats.mode["items"] == "partial"  # B's generation still knows items changed since it
    assert_same_frames(merged, full_read())


def test_a_snapshot_of_another_database_is_not_used(erp, monkeypatch):
    snapshot_read()
    monkeypatch.setattr(snapshot, "_source_identity", lambda alias: "another-database")
    merged, stats = snapshot_read()
    assert set(stats.mode.values()) == {"full"}


# ---------------------------------------------------------------------------------- settings and command
def test_training_with_the_snapshot_off_writes_none(erp, settings):
    settings.ERP_SNAPSHOT = False
    out = io.StringIO()
    call_command("train", sync=True, json=True, stdout=out, stderr=io.StringIO(), candidates="baseline")
    assert not (settings.MODEL_ROOT / snapshot.DIRNAME).exists()


def test_training_uses_and_reports_the_snapshot(erp, settings):
    from training.models import TrainingJob

    for _ in range(2):
        call_command("train", sync=True, json=True, stdout=io.StringIO(), stderr=io.StringIO(), candidates="baseline")
    log = TrainingJob.objects.order_by("pk").last().log
    assert "ERP snapshot: items unchanged" in log
    assert (settings.MODEL_ROOT / snapshot.DIRNAME / snapshot.POINTER).exists()


def test_command_rebuilds_and_reports_the_snapshot(erp):
    out = io.StringIO()
    call_command("erp_snapshot", rebuild=True, stdout=out)
    assert "items full" in out.getvalue()
    out = io.StringIO()
    call_command("erp_snapshot", status=True, json=True, stdout=out)
    status = json.loads(out.getvalue())
    assert status["tables"]["items"]["rows"] == ITEMS
    assert status["tables"]["items"]["kind"] == ("counters" if connection.vendor in ("sqlite", "postgresql") else "checksums")


def _stored_work_results(rng: np.random.Generator, n: int, codes: list[str], days: int) -> pd.DataFrame:
    """Work-result rows as the snapshot holds them: categorical text, many ties of item and report time, some missing."""
    item = rng.choice(np.array([*codes, None], dtype=object), n)
    when = np.datetime64("2026-01-01T00:00", "us") + rng.integers(0, days * 4, n) * np.timedelta64(6, "h")
    when[rng.random(n) < 0.05] = np.datetime64("NaT")
    frame = pd.DataFrame(
        {
            "ITEM_CD": snapshot._object_categorical(pd.Series(item, dtype=object)),
            "JOB_CD": snapshot._object_categorical(pd.Series(rng.choice(np.array(["CUT", "MILL", "HEAT"], dtype=object), n), dtype=object)),
            "PROC_SEQ": rng.integers(1, 9, n),
            "REPORT_DT": when,
            "ORDER_QTY": rng.random(n),
            "SEQ_NO": rng.permutation(n),  # tells rows with equal item and time apart in the comparison
        }
    )
    day = np.where(np.isnat(when), np.datetime64("2025-12-31T00:00", "us"), when) - np.datetime64("2026-01-01T00:00", "us")
    frame[snapshot.PART] = (day // np.timedelta64(1, "D")).astype(np.int32)  # undated rows: partition -1
    return frame


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_re_read_rows_merged_into_the_stored_order_equal_concatenating_and_sorting(seed):
    rng = np.random.default_rng(seed)
    codes = [f"IT-{i:04d}" for i in rng.permutation(300)]
    stored = _stored_work_results(rng, 4000, codes[:250], days=40)
    stored = stored.iloc[data_frames.item_time_order(stored, "REPORT_DT")].reset_index(drop=True)
    for parts, of_those_days_only in (({3}, True), ({0, 5, 39, -1}, True), (set(range(40)) | {-1}, True), ({77}, True), ({3}, False)):
        # Re-read rows, in the database's order, some of items the snapshot never saw. Of the changed days only,
        # or (the rule must not depend on it) of any day: then they tie with kept rows on item and time.
        fresh = _stored_work_results(rng, int(rng.integers(0, 600)), codes, days=40)
        if of_those_days_only:
            fresh = fresh[fresh[snapshot.PART].isin(list(parts))].reset_index(drop=True)
        expected = snapshot._concat(stored[~stored[snapshot.PART].isin(list(parts)).to_numpy()], fresh)
        expected = expected.iloc[data_frames.item_time_order(expected, "REPORT_DT")].reset_index(drop=True)
        merged = snapshot._merge_in_order(stored, parts, fresh, "REPORT_DT")
        pd.testing.assert_frame_equal(merged, expected)
        for column in ("ITEM_CD", "JOB_CD"):
            assert list(merged[column].cat.categories) == list(expected[column].cat.categories)


def test_a_stored_table_out_of_order_is_not_merged_but_concatenated_and_sorted():
    rng = np.random.default_rng(5)
    stored = _stored_work_results(rng, 500, ["A", "B", "C"], days=10)  # in no particular order
    assert snapshot._merge_in_order(stored, {2}, stored.iloc[:0], "REPORT_DT") is None


@pytest.mark.parametrize(
    "right", [["y"], ["z", "x", "y"], ["y", "w"], ["w"], []], ids=["subset", "same set", "some new", "all new", "none"]
)
def test_concatenated_categoricals_are_those_union_categoricals_gives(right):
    from pandas.api.types import union_categoricals

    objects = lambda values: pd.Index(np.asarray(values, dtype=object), dtype=object)  # noqa: E731
    left = pd.Categorical.from_codes([0, 1, 2, -1, 1], categories=objects(["x", "y", "z"]))
    right = pd.Categorical.from_codes([*range(len(right)), -1, *range(len(right))][::-1], categories=objects(right))
    expected = union_categoricals([left, right])
    pd.testing.assert_index_equal(snapshot._union_categories(left, right)[0], expected.categories, exact=True)
    got = snapshot._concat_column(pd.Series(left), pd.Series(right))
    pd.testing.assert_index_equal(got.categories, expected.categories, exact=True)
    assert got.codes.tolist() == expected.codes.tolist()


@pytest.mark.parametrize(
    "values",
    [
        pd.array([1, None, 3], dtype="Int64"),
        pd.array([1.5, None, 2.0], dtype="Float64"),
        pd.array([True, None, False], dtype="boolean"),
        pd.array(["a", None, "c"], dtype="string"),
        np.array([1, 2, 3], dtype=np.int64),
        np.array(["2026-01-01", "NaT", "2026-01-03"], dtype="datetime64[us]"),
    ],
    ids=["Int64", "Float64", "boolean", "string", "int64", "datetime64"],
)
def test_a_re_read_column_keeps_the_dtype_a_full_read_gives_it(values):
    # A nullable integer code (a driver's Int64) must stay Int64 after a partial read, not turn into objects.
    left, right = pd.Series(values), pd.Series(values[::-1])
    got = pd.Series(snapshot._concat_column(left, right))
    pd.testing.assert_series_equal(got, pd.concat([left, right], ignore_index=True))
