"""CSV import (`import_erp`, `erp.importer`): all rows valid or nothing imported; re-import replaces."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from erp import data
from erp.generator import generate
from erp.importer import import_erp_files
from erp.models import Item, RoutingOperation, WorkResult

# Database-facing: run again on PostgreSQL by `make test` (see the Makefile).
pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture(scope="module")
def factory():
    return generate(60, seed=21)


def write(tmp_path: Path, name: str, frame: pd.DataFrame) -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False, date_format="%Y-%m-%d %H:%M:%S")
    return path


@pytest.fixture
def files(tmp_path, factory):
    items, routings, work_results = factory
    return {
        "items": write(tmp_path, "items.csv", items),
        "routings": write(tmp_path, "routings.csv", routings),
        "work_results": write(tmp_path, "work_results.csv", work_results),
    }


def run_import(**paths) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    args = [f"--{name.replace('_', '-')}={path}" for name, path in paths.items()]
    call_command("import_erp", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def rejected(**paths) -> tuple[str, str]:
    """Run an import expected to fail; return (CommandError message, stderr)."""
    err = StringIO()
    args = [f"--{name.replace('_', '-')}={path}" for name, path in paths.items()]
    with pytest.raises(CommandError) as excinfo:
        call_command("import_erp", *args, stdout=StringIO(), stderr=err)
    return str(excinfo.value), err.getvalue()


def snapshot() -> dict:
    return {
        "counts": data.table_counts(),
        "items": list(Item.objects.order_by("item_cd").values_list("item_cd", "item_nm", "outdiameter")),
        "routings": list(RoutingOperation.objects.order_by("id").values_list("item_cd", "rout_no", "proc_seq", "run_time")),
        "work": list(WorkResult.objects.order_by("id").values_list("item_cd", "order_qty", "mach_worked_hours")),
    }


@pytest.fixture
def baseline(files):
    """A database already holding the factory, to prove rejected imports leave it untouched."""
    run_import(**files)
    return snapshot()


def test_import_of_valid_files_writes_every_row(files, factory):
    out, err = run_import(**files)
    items, routings, work_results = factory
    assert data.table_counts() == {"Item": len(items), "RoutingOperation": len(routings), "WorkResult": len(work_results)}
    assert "Import finished" in out and f"{len(routings):,} rows" in out
    pd.testing.assert_frame_equal(
        data.load_items().sort_values("ITEM_CD").reset_index(drop=True), items.sort_values("ITEM_CD").reset_index(drop=True)
    )
    assert err == ""


def test_reimport_replaces_rows_instead_of_duplicating(files, factory, tmp_path):
    run_import(**files)
    first = data.table_counts()
    routings = factory[1].copy()
    item = routings["ITEM_CD"].iloc[0]
    changed = routings[routings["ITEM_CD"] == item].assign(RUN_TIME=99.0).iloc[:2]  # this item now has two operations
    run_import(routings=write(tmp_path, "changed.csv", changed))
    ops = RoutingOperation.objects.filter(item_cd=item)
    assert ops.count() == 2 and {op.run_time for op in ops} == {99.0}
    others_before = first["RoutingOperation"] - (routings["ITEM_CD"] == item).sum()
    assert RoutingOperation.objects.exclude(item_cd=item).count() == others_before
    run_import(**files)
    assert data.table_counts() == first


def test_extra_columns_are_ignored_with_one_warning(tmp_path, factory):
    items = factory[0].assign(COMMENT="x", LEGACY_ID=1)
    out, err = run_import(items=write(tmp_path, "items.csv", items))
    assert err.count("warning") == 1 and "COMMENT" in err and "LEGACY_ID" in err
    assert Item.objects.count() == len(items)


def test_routing_may_refer_to_an_item_already_in_the_database(files, tmp_path, factory):
    run_import(items=files["items"])
    run_import(routings=files["routings"])
    assert RoutingOperation.objects.count() == len(factory[1])


def test_dates_may_be_plain_days_or_minutes(tmp_path, factory):
    items = factory[0].head(3).astype({"INSRT_DT": str})
    items["INSRT_DT"] = ["2026-01-02", "2026-01-02 13:45", "2026-01-02T13:45:10"]
    run_import(items=write(tmp_path, "items.csv", items))
    stored = data.load_items().set_index("ITEM_CD")["INSRT_DT"]
    assert sorted(stored.astype(str)) == ["2026-01-02 00:00:00", "2026-01-02 13:45:00", "2026-01-02 13:45:10"]


def _bad_routings(factory, **changes_at_row_3):
    routings = factory[1].copy().astype(object)
    for column, value in changes_at_row_3.items():
        routings.iat[3, routings.columns.get_loc(column)] = value
    return routings


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"RUN_TIME": "abc"}, "RUN_TIME 'abc' is not a number"),
        ({"VALID_FROM_DT": "2026-02-30"}, "VALID_FROM_DT '2026-02-30' is not a date"),
        ({"INSRT_DT": "01/02/2026"}, "INSRT_DT '01/02/2026' is not a date"),
        ({"SETUP_TIME": -5}, "SETUP_TIME must not be negative"),
        ({"RUN_TIME_QTY": 0}, "RUN_TIME_QTY must be greater than 0"),
        ({"INSIDE_FLAG": "MAYBE"}, "INSIDE_FLAG must be IN or OUT"),
        ({"JOB_CD": ""}, "JOB_CD is required"),
        ({"PROC_SEQ": "10.5"}, "PROC_SEQ '10.5' is not a whole number"),
        ({"ITEM_CD": "NOPE-1"}, "unknown item NOPE-1"),
    ],
)
def test_bad_routing_row_rejects_the_whole_import_with_file_and_line(baseline, files, tmp_path, factory, change, reason):
    path = write(tmp_path, "bad_routings.csv", _bad_routings(factory, **change))
    message, err = rejected(items=files["items"], routings=path)
    assert f"{path}:5: " in err and reason in err  # row 3 of the frame is CSV line 5 (header is line 1)
    assert "1 invalid row(s); nothing was imported" in message
    assert snapshot() == baseline


def test_duplicate_routing_key_is_rejected_with_both_lines(baseline, files, tmp_path, factory):
    routings = pd.concat([factory[1], factory[1].iloc[[2]]])
    path = write(tmp_path, "dup.csv", routings)
    _, err = rejected(items=files["items"], routings=path)
    last_line = len(routings) + 1
    assert f"{path}:{last_line}: duplicate key ITEM_CD, ROUT_NO, PROC_SEQ" in err and "first on line 4" in err
    assert snapshot() == baseline


def test_duplicate_item_code_in_items_file_is_rejected(baseline, tmp_path, factory):
    items = pd.concat([factory[0], factory[0].iloc[[0]].assign(ITEM_NM="other")])
    path = write(tmp_path, "items.csv", items)
    _, err = rejected(items=path)
    assert f"{path}:{len(items) + 1}: duplicate key ITEM_CD" in err
    assert snapshot() == baseline


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("ORDER_QTY", 0, "ORDER_QTY must be greater than 0"),
        ("ORDER_QTY", "", "ORDER_QTY is required"),
        ("MACH_WORKED_HOURS", -1, "MACH_WORKED_HOURS must not be negative"),
        ("SETUP_HOURS", "1,5", "SETUP_HOURS '1,5' is not a number"),
        ("REPORT_DT", "yesterday", "REPORT_DT 'yesterday' is not a date"),
        ("ITEM_CD", "GHOST", "unknown item GHOST"),
    ],
)
def test_bad_work_result_row_rejects_the_whole_import(baseline, files, tmp_path, factory, column, value, reason):
    work = factory[2].copy().astype(object)
    work.iat[0, work.columns.get_loc(column)] = value
    path = write(tmp_path, "bad_work.csv", work)
    _, err = rejected(routings=files["routings"], work_results=path)
    assert f"{path}:2: " in err and reason in err
    assert snapshot() == baseline


def test_missing_required_column_refuses_the_file(baseline, files, tmp_path, factory):
    path = write(tmp_path, "no_job.csv", factory[1].drop(columns=["JOB_CD"]))
    message, err = rejected(items=files["items"], routings=path)
    assert f"{path}:1: missing required column(s): JOB_CD" in err
    assert snapshot() == baseline


def test_many_bad_rows_print_the_first_fifty_and_the_total(baseline, tmp_path, factory):
    routings = factory[1].copy().astype(object)
    routings["SETUP_TIME"] = -1
    path = write(tmp_path, "all_bad.csv", routings)
    message, err = rejected(routings=path)
    assert err.count(f"{path}:") == 50
    assert f"{len(routings):,} invalid row(s)" in message
    assert snapshot() == baseline


def test_valid_and_invalid_files_together_import_nothing(db, files, tmp_path, factory):
    work = factory[2].copy().astype(object)
    work.iat[4, work.columns.get_loc("ORDER_QTY")] = -3
    rejected(items=files["items"], routings=files["routings"], work_results=write(tmp_path, "w.csv", work))
    assert data.table_counts() == {"Item": 0, "RoutingOperation": 0, "WorkResult": 0}


def test_import_without_files_is_a_clear_error(db):
    with pytest.raises(CommandError, match="Nothing to import"):
        call_command("import_erp", stdout=StringIO())


def test_missing_file_is_reported(db, tmp_path):
    _, err = rejected(items=tmp_path / "absent.csv")
    assert "absent.csv:0: file not found" in err


def test_a_path_that_is_not_a_readable_file_is_reported(db, tmp_path):
    _, err = rejected(items=tmp_path)  # a directory
    assert f"{tmp_path}:0: cannot be read" in err


def test_importer_returns_a_report(files, factory):
    report = import_erp_files(**files)
    assert report.ok and report.imported
    assert [t.rows for t in report.tables] == [len(f) for f in factory]
    again = import_erp_files(routings=files["routings"])
    assert again.tables[0].deleted == len(factory[1])


def test_bench_import_imports_a_hundred_thousand_rows_and_reports_the_rate(db):
    # The speed itself is measured by `make bench` (bench_import); here: the command imports every row.
    out = StringIO()
    call_command("bench_import", items=19_000, seed=2, stdout=out)
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert RoutingOperation.objects.count() > 100_000
    assert figures["rows"] == Item.objects.count() + RoutingOperation.objects.count() + WorkResult.objects.count()
    assert figures["rows_per_second"] > 0


def test_bench_import_refuses_a_database_with_erp_data(db):
    Item.objects.create(item_cd="X-1")
    with pytest.raises(CommandError, match="not empty"):
        call_command("bench_import", items=10, stdout=StringIO())


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp949", "euc-kr"])
def test_item_files_in_each_excel_encoding_are_read(db, tmp_path, factory, encoding):
    items = factory[0].head(5).copy()
    items["ITEM_NM"] = "슬리브 부품"
    path = tmp_path / "items.csv"
    items.to_csv(path, index=False, encoding=encoding, date_format="%Y-%m-%d %H:%M:%S")
    run_import(items=path)
    assert set(Item.objects.filter(item_cd__in=list(items["ITEM_CD"])).values_list("item_nm", flat=True)) == {"슬리브 부품"}


def test_a_file_in_another_encoding_is_refused_naming_the_encodings_read(db, tmp_path):
    path = tmp_path / "items.csv"
    path.write_bytes(b"ITEM_CD,ITEM_NM\nA1,\xff\xfe\xfa\xfb\x80\n")
    _, err = rejected(items=path)
    assert f"{path}:1: not text in UTF-8, UTF-16 or CP949/EUC-KR" in err
