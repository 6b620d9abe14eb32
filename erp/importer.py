"""CSV import into the ERP tables: validate everything first, then replace per item in one transaction.

Files carry the ERP column names as their header (`erp.models` db_column names). Every row is
validated with vectorised pandas checks — types, required values, ranges, allowed flags,
duplicate keys, item codes that exist neither in the database nor in the same import's items
file. If any row is invalid nothing is written and the report lists `file:line: reason`
(line = the CSV line, the header being line 1). Otherwise, for every table given, the rows
of each ITEM_CD present in that file are deleted and the file's rows inserted, all in one
transaction: re-importing a file replaces, never duplicates.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from django.db import connections, models, transaction

from . import data
from .models import Item, RoutingOperation, WorkResult


@dataclass(frozen=True)
class TableSpec:
    """What a valid CSV for one ERP table looks like."""

    model: type[models.Model]
    label: str
    required: tuple[str, ...]
    key: tuple[str, ...] | None  # duplicate key within a file; None = the whole row


SPECS = {
    "items": TableSpec(Item, "items", ("ITEM_CD",), ("ITEM_CD",)),
    "routings": TableSpec(RoutingOperation, "routings", ("ITEM_CD", "ROUT_NO", "PROC_SEQ", "JOB_CD"), ("ITEM_CD", "ROUT_NO", "PROC_SEQ")),
    # Work results have no natural key in the ERP view (two orders may run the same operation the
    # same day), so only a row repeated exactly is a duplicate.
    "work_results": TableSpec(WorkResult, "work results", ("ITEM_CD", "JOB_CD", "REPORT_DT", "ORDER_QTY"), None),
}
NON_NEGATIVE = {
    "SETUP_TIME", "RUN_TIME", "MFG_LT", "QUEUE_TIME", "WAIT_TIME", "MOVE_TIME", "SETUP_HOURS", "MACH_WORKED_HOURS",
    "BAD_QTY", "OUTDIAMETER", "INDIAMETER", "OUTTHICKNESS", "IN_SEALSIZE", "MID_SEALSIZE", "OUT_SEALSIZE",
}  # fmt: skip
POSITIVE = {"ORDER_QTY", "RUN_TIME_QTY"}
INSIDE_FLAGS = {"IN", "OUT"}
ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?$")
MAX_REPORTED = 50


@dataclass(frozen=True)
class RowError:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class TableResult:
    label: str
    file: str
    rows: int
    items: int
    deleted: int = 0


@dataclass
class ImportReport:
    """What an import did (or why it did nothing)."""

    errors: list[RowError] = field(default_factory=list)
    invalid_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    tables: list[TableResult] = field(default_factory=list)
    imported: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> list[str]:
        if not self.imported:
            return [f"{self.invalid_rows:,} invalid row(s); nothing was imported."]
        return [
            f"{t.label}: {t.rows:,} rows for {t.items:,} items imported from {t.file} (replaced {t.deleted:,} existing rows)"
            for t in self.tables
        ]


@dataclass
class _Parsed:
    spec: TableSpec
    file: str
    frame: pd.DataFrame  # typed, ERP column names, only model columns
    lines: np.ndarray  # CSV line of each row


class _Collector:
    """Row errors of one file, merged per line so each bad row is reported once."""

    def __init__(self, file: str, lines: np.ndarray):
        self.file = file
        self.lines = lines
        self.by_row: dict[int, list[str]] = {}

    def add(self, bad: np.ndarray, reason) -> None:
        """`reason` is a string or a callable row-position → string (only called for bad rows)."""
        for pos in np.flatnonzero(bad):
            self.by_row.setdefault(int(pos), []).append(reason(pos) if callable(reason) else reason)

    def errors(self) -> list[RowError]:
        return [RowError(self.file, int(self.lines[pos]), "; ".join(reasons)) for pos, reasons in sorted(self.by_row.items())]


def _read_csv(path: Path) -> pd.DataFrame:
    """UTF-16 when the file starts with its byte-order mark; else UTF-8 (with or without BOM), then CP949 (EUC-KR's superset)."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    encodings = ("utf-16",) if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else ("utf-8-sig", "cp949")
    for encoding in encodings:
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding=encoding, skipinitialspace=False)
        except UnicodeDecodeError:
            if encoding == encodings[-1]:
                raise
    raise AssertionError("unreachable")


def _parse(spec: TableSpec, path: Path, report: ImportReport) -> tuple[_Parsed | None, list[RowError]]:
    name = str(path)
    try:
        raw = _read_csv(path)
    except FileNotFoundError:
        return None, [RowError(name, 0, "file not found")]
    except UnicodeDecodeError:
        return None, [RowError(name, 1, "not text in UTF-8, UTF-16 or CP949/EUC-KR: save it as CSV UTF-8")]
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        return None, [RowError(name, 1, f"not a readable CSV file: {exc}")]
    except OSError as exc:  # a directory, no permission, …
        return None, [RowError(name, 0, f"cannot be read: {exc.strerror or exc}")]
    raw.columns = [str(c).strip() for c in raw.columns]
    fields = {f.column: f for f in data.data_fields(spec.model)}
    extra = [c for c in raw.columns if c not in fields]
    if extra:
        report.warnings.append(f"{name}: ignoring column(s) not in the {spec.label} table: {', '.join(extra)}")
    missing = [c for c in spec.required if c not in raw.columns]
    if missing:
        return None, [RowError(name, 1, f"missing required column(s): {', '.join(missing)}")]

    text = raw[[c for c in raw.columns if c in fields]].apply(lambda s: s.str.strip())
    lines = np.arange(len(text)) + 2
    blank = (text == "").all(axis=1).to_numpy() if len(text.columns) else np.ones(len(text), dtype=bool)
    text, lines = text.loc[~blank].reset_index(drop=True), lines[~blank]
    errors = _Collector(name, lines)
    typed: dict[str, object] = {}
    for column in text.columns:
        typed[column] = _typed_column(text[column], fields[column], errors)
    frame = pd.DataFrame(typed, index=text.index)

    for column in spec.required:
        errors.add((text[column] == "").to_numpy(), f"{column} is required")
    for column in NON_NEGATIVE & set(frame.columns):
        errors.add((frame[column] < 0).to_numpy(), lambda p, c=column: f"{c} must not be negative (got {text[c].iat[p]})")
    for column in POSITIVE & set(frame.columns):
        errors.add((frame[column] <= 0).to_numpy(), lambda p, c=column: f"{c} must be greater than 0 (got {text[c].iat[p]})")
    if {"BAD_QTY", "ORDER_QTY"} <= set(frame.columns):
        errors.add((frame["BAD_QTY"] > frame["ORDER_QTY"]).to_numpy(), "BAD_QTY exceeds ORDER_QTY")
    if "INSIDE_FLAG" in frame.columns:
        flag = frame["INSIDE_FLAG"].str.upper()
        frame["INSIDE_FLAG"] = flag
        errors.add(
            (flag.notna() & ~flag.isin(INSIDE_FLAGS)).to_numpy(),
            lambda p: f"INSIDE_FLAG must be IN or OUT (got {text['INSIDE_FLAG'].iat[p]!r})",
        )
    _check_duplicates(spec, text, lines, errors)
    report_errors = errors.errors()
    return _Parsed(spec, name, frame, lines), report_errors


def _typed_column(values: pd.Series, field_: models.Field, errors: _Collector):
    """Convert one text column to its field's type, recording rows that do not convert."""
    column = field_.column
    given = (values != "").to_numpy()
    if isinstance(field_, models.DateTimeField | models.DateField):
        shaped = values.str.match(ISO_DATETIME).to_numpy(dtype=bool)
        parsed = pd.to_datetime(values.where(given & shaped, None), format="ISO8601", errors="coerce")
        bad = given & (~shaped | parsed.isna().to_numpy())
        errors.add(bad, lambda p: f"{column} {values.iat[p]!r} is not a date (use YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS])")
        return parsed.to_numpy(dtype="datetime64[us]")
    if isinstance(field_, models.IntegerField | models.FloatField | models.DecimalField):
        numbers = pd.to_numeric(values.where(given, None), errors="coerce").to_numpy(dtype=float, copy=True)
        bad = given & ~np.isfinite(numbers)
        errors.add(bad, lambda p: f"{column} {values.iat[p]!r} is not a number")
        if isinstance(field_, models.IntegerField):
            fractional = given & np.isfinite(numbers) & (np.mod(numbers, 1) != 0)
            errors.add(fractional, lambda p: f"{column} {values.iat[p]!r} is not a whole number")
        numbers[bad] = np.nan
        return numbers
    too_long = (values.str.len() > field_.max_length).to_numpy() if getattr(field_, "max_length", None) else np.zeros(len(values), bool)
    errors.add(too_long, lambda p: f"{column} is longer than {field_.max_length} characters")
    return values.where(given, None).astype(object).to_numpy()


def _check_duplicates(spec: TableSpec, text: pd.DataFrame, lines: np.ndarray, errors: _Collector) -> None:
    key = list(spec.key) if spec.key else list(text.columns)
    if text.empty or not key:
        return
    parts = text[key]
    if spec.key:  # a partly empty key is already reported as missing
        complete = (parts != "").all(axis=1).to_numpy()
    else:
        complete = np.ones(len(parts), dtype=bool)
    group = parts.groupby(key, sort=False).ngroup().to_numpy()
    first_line = pd.Series(lines).groupby(group).transform("min").to_numpy()
    dup = complete & (first_line != lines)
    label = "duplicate key " + ", ".join(key) if spec.key else "duplicate row"
    if spec.key:
        errors.add(dup, lambda p: f"{label} ({', '.join(f'{k}={parts[k].iat[p]}' for k in key)}) first on line {first_line[p]}")
    else:
        errors.add(dup, lambda p: f"{label}, same as line {first_line[p]}")


def _unknown_items(parsed: _Parsed, file_items: set[str], alias: str) -> np.ndarray:
    codes = parsed.frame["ITEM_CD"]
    distinct = [c for c in pd.unique(codes.dropna()) if c not in file_items]
    known = set(file_items)
    if distinct:
        connection = connections[alias]
        qn = connection.ops.quote_name
        with connection.cursor() as cursor:
            for chunk in data._chunks(distinct, data.IN_CHUNK):
                marks = ", ".join(["%s"] * len(chunk))
                cursor.execute(f"SELECT {qn('ITEM_CD')} FROM {qn(Item._meta.db_table)} WHERE {qn('ITEM_CD')} IN ({marks})", list(chunk))
                known.update(row[0] for row in cursor.fetchall())
    return (codes.notna() & ~codes.isin(known)).to_numpy()


def import_erp_files(
    items: str | Path | None = None,
    routings: str | Path | None = None,
    work_results: str | Path | None = None,
) -> ImportReport:
    """Validate the given CSV files and, only if every row is valid, import them in one transaction."""
    report = ImportReport()
    given = {name: Path(p) for name, p in (("items", items), ("routings", routings), ("work_results", work_results)) if p}
    if not given:
        raise ValueError("Give at least one file: items, routings or work_results.")
    parsed: dict[str, _Parsed] = {}
    errors: list[RowError] = []
    for name, path in given.items():
        result, file_errors = _parse(SPECS[name], path, report)
        errors.extend(file_errors)
        if result is not None:
            parsed[name] = result

    alias = data.erp_write_alias(Item)
    file_items = set(parsed["items"].frame["ITEM_CD"].dropna()) if "items" in parsed else set()
    for name in ("routings", "work_results"):
        if name in parsed:
            p = parsed[name]
            unknown = _unknown_items(p, file_items, alias)
            collector = _Collector(p.file, p.lines)
            collector.add(unknown, lambda i, p=p: f"unknown item {p.frame['ITEM_CD'].iat[i]} (not in the database nor in the items file)")
            errors.extend(collector.errors())

    if errors:
        merged: dict[tuple[str, int], list[str]] = {}
        for error in errors:
            merged.setdefault((error.file, error.line), []).append(error.reason)
        file_order = {str(path): i for i, path in enumerate(given.values())}
        report.errors = [
            RowError(f, line, "; ".join(reasons))
            for (f, line), reasons in sorted(merged.items(), key=lambda kv: (file_order.get(kv[0][0], -1), kv[0][1]))
        ]
        report.invalid_rows = len(report.errors)
        return report

    with transaction.atomic(using=alias):
        for name in ("work_results", "routings", "items"):  # children first
            if name in parsed:
                p = parsed[name]
                codes = p.frame["ITEM_CD"].dropna().unique()
                result = TableResult(p.spec.label, p.file, rows=len(p.frame), items=len(codes))
                result.deleted = data.delete_rows(p.spec.model, codes, using=alias)
                report.tables.insert(0, result)
        for name in ("items", "routings", "work_results"):
            if name in parsed:
                data.insert_frame(parsed[name].spec.model, parsed[name].frame, using=alias)
    report.imported = True
    return report
