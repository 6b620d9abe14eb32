"""Change markers on the ERP tables: which day-partitions of a table changed since a snapshot.

The ERP views carry no update timestamp (`INSRT_DT` is set once, `REPORT_DT` is the report's
own date) and no row id, so "modified since" cannot be asked of them, and a deleted row leaves
nothing to ask about. Two kinds of marker, per table and per *partition* (the day of
`INSRT_DT` for items and routings, of `REPORT_DT` for work results, as an integer YYYYMMDD; 0 for
an empty date):

* **counters** — when the ERP tables are ours (the demo/CSV tables in the default database,
  SQLite or PostgreSQL), migrations 0003 and 0005 (days; months before) install triggers that bump
  `ERP_CHANGE_COUNTER(TABLE_NAME, PART, CHANGES)` on every INSERT, UPDATE (the old *and* the new
  row's partition) and DELETE, in the writer's own transaction; a PostgreSQL TRUNCATE bumps
  partition -1, which means "everything". Reading them costs one tiny query. Any write that
  reaches the table — ORM, raw SQL, the CSV import, a DBA's console — moves a counter, so a
  deleted row is caught like any other change.
* **checksums** — anywhere the triggers are absent (a real ERP through `ERP_DATABASE_URL`, views
  we may not alter; a later migration that rebuilt a SQLite table and dropped them): one
  `GROUP BY partition` query computing, server-side, the row count and the sum of a per-row hash
  over every column the snapshot keeps. A deleted row lowers the count and the sum; an updated
  one changes the sum. Costs a scan of the table in the database (no rows travel).

The partition expression is the same SQL text in the triggers, in the checksum query and in the
read of a partition's rows, so a row is always counted, checked and read in one partition.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

from django.db import connections

COUNTER_TABLE = "ERP_CHANGE_COUNTER"
EVERYTHING = -1  # the partition a PostgreSQL TRUNCATE bumps: re-read the whole table
# A random number drawn whenever the triggers are (re)installed: counters that were dropped and
# started again from zero can never pass for the ones a snapshot saw. Negative partitions are
# whole-table markers: when one moves, the table is read in full.
EPOCH = -2

# table -> the datetime column whose day partitions it
PARTITION_COLUMN = {
    "BI_ITEM_INFO_VIEW": "INSRT_DT",
    "BI_ROUTING_VIEW": "INSRT_DT",
    "BI_WORK_ORDER_RESULTS": "REPORT_DT",
}
TRIGGER_PREFIX = "erp_chg_"


def partition_expr(vendor: str, column_sql: str) -> str:
    """SQL for the integer YYYYMMDD (UTC) of a datetime column, 0 when it is empty. One definition for every vendor.

    Days, not months: new work results arrive every day, and a retrain re-reads whole partitions,
    so with months it re-read ~8 % of 3 M work results (the current month) to pick up a day's.
    """
    if vendor == "sqlite":
        # Django stores datetimes on SQLite as 'YYYY-MM-DD HH:MM:SS[.ffffff]' text in UTC
        return (
            f"COALESCE(CAST(substr({column_sql}, 1, 4) || substr({column_sql}, 6, 2) || substr({column_sql}, 9, 2) AS INTEGER), 0)"
        )
    if vendor == "postgresql":
        return f"COALESCE(CAST(to_char({column_sql} AT TIME ZONE 'UTC', 'YYYYMMDD') AS integer), 0)"
    # SQL Server (mssql-django) and anything else speaking ANSI-ish SQL with YEAR()/MONTH()/DAY()
    return f"COALESCE(YEAR({column_sql}) * 10000 + MONTH({column_sql}) * 100 + DAY({column_sql}), 0)"


def partition_index_sql(vendor: str, table: str) -> tuple[str, str] | None:
    """(CREATE, DROP) of an index on the partition expression itself, where the database has such indexes (SQLite).

    The read of a few changed days then searches that index instead of computing the partition of
    every row (3 M work results: 1.3 s -> 0.07 s for two days), and finds exactly the rows the
    expression puts there, whatever the form of their date text.
    """
    if vendor != "sqlite":
        return None
    name = f'"{TRIGGER_PREFIX}part_{table.lower()}"'
    return f'CREATE INDEX IF NOT EXISTS {name} ON "{table}" ({partition_expr(vendor, chr(34) + PARTITION_COLUMN[table] + chr(34))})', f"DROP INDEX IF EXISTS {name}"


def partition_ranges(vendor: str, parts: Sequence[int]) -> list[tuple[object, object]] | None:
    """[start, end) bounds of the partition column covering `parts`, consecutive days merged; None when unsure.

    They let the read of a few changed days use an index on the column instead of computing the
    partition of every row. Only where the bounds cover the partition expression exactly: on
    PostgreSQL, whose typed column the expression reads in UTC. Not on SQLite, where a date is
    text the expression reads by position ('2025/03/04' is day 20250304 but outside any ISO range):
    there the expression is indexed itself (`partition_index_sql`).
    """
    if vendor != "postgresql" or not parts or min(parts) <= 0:
        return None
    try:
        days = sorted({date(p // 10000, p // 100 % 100, p % 100) for p in parts})
    except ValueError:
        return None
    runs: list[list[date]] = []
    for day in days:
        if runs and day == runs[-1][1]:
            runs[-1][1] = day + timedelta(days=1)
        else:
            runs.append([day, day + timedelta(days=1)])
    return [(datetime.combine(start, time.min, tzinfo=UTC), datetime.combine(end, time.min, tzinfo=UTC)) for start, end in runs]


def _trigger_names(table: str) -> list[str]:
    return [f"{TRIGGER_PREFIX}{table.lower()}_{op}" for op in ("ins", "upd", "del")]


# ------------------------------------------------------------------------- installation (migration 0003)
def install_sql(vendor: str, tables: Sequence[str] = tuple(PARTITION_COLUMN)) -> list[str]:
    """DDL creating the counter table and the triggers (SQLite, PostgreSQL); [] for other vendors."""
    q = '"{}"'.format
    counter = q(COUNTER_TABLE)
    if vendor not in ("sqlite", "postgresql"):
        return []
    statements = [
        f'CREATE TABLE IF NOT EXISTS {counter} ("TABLE_NAME" varchar(64) NOT NULL, "PART" integer NOT NULL, '
        f'"CHANGES" bigint NOT NULL, PRIMARY KEY ("TABLE_NAME", "PART"))'
    ]
    for table in tables:
        epoch = secrets.randbelow(2**62)
        statements.append(
            f'INSERT INTO {counter} ("TABLE_NAME", "PART", "CHANGES") VALUES (\'{table}\', {EPOCH}, {epoch}) '
            f'ON CONFLICT ("TABLE_NAME", "PART") DO UPDATE SET "CHANGES" = {epoch}'
        )
        column = PARTITION_COLUMN[table]
        ins, upd, dele = _trigger_names(table)
        if vendor == "sqlite":
            # FOR EACH ROW is all SQLite has; an UPSERT per row costs about a microsecond.
            def bump(row: str, table=table, column=column) -> str:
                part = partition_expr("sqlite", f"{row}.{q(column)}")
                return (
                    f'INSERT INTO {counter} ("TABLE_NAME", "PART", "CHANGES") VALUES (\'{table}\', {part}, 1) '
                    f'ON CONFLICT ("TABLE_NAME", "PART") DO UPDATE SET "CHANGES" = "CHANGES" + 1;'
                )

            statements += [
                f"CREATE TRIGGER IF NOT EXISTS {q(ins)} AFTER INSERT ON {q(table)} BEGIN {bump('NEW')} END",
                f"CREATE TRIGGER IF NOT EXISTS {q(upd)} AFTER UPDATE ON {q(table)} BEGIN {bump('OLD')} {bump('NEW')} END",
                f"CREATE TRIGGER IF NOT EXISTS {q(dele)} AFTER DELETE ON {q(table)} BEGIN {bump('OLD')} END",
            ]
        else:
            # Statement-level triggers with transition tables: one UPSERT per statement and partition,
            # so a bulk load of millions of rows costs one GROUP BY, not millions of counter updates.
            part = partition_expr("postgresql", f"r.{q(column)}")

            def function(name: str, source: str, table=table, part=part) -> str:
                return (
                    f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f'INSERT INTO {counter} ("TABLE_NAME", "PART", "CHANGES") '
                    f"SELECT '{table}', {part}, count(*) FROM ({source}) r GROUP BY 2 "
                    f'ON CONFLICT ("TABLE_NAME", "PART") DO UPDATE SET "CHANGES" = {counter}."CHANGES" + EXCLUDED."CHANGES"; '
                    f"RETURN NULL; END $$"
                )

            trunc = f"{TRIGGER_PREFIX}{table.lower()}_trunc"
            statements += [
                function(ins, "SELECT * FROM new_rows"),
                function(upd, "SELECT * FROM old_rows UNION ALL SELECT * FROM new_rows"),
                function(dele, "SELECT * FROM old_rows"),
                f"CREATE OR REPLACE FUNCTION {trunc}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f'INSERT INTO {counter} ("TABLE_NAME", "PART", "CHANGES") VALUES (\'{table}\', {EVERYTHING}, 1) '
                f'ON CONFLICT ("TABLE_NAME", "PART") DO UPDATE SET "CHANGES" = {counter}."CHANGES" + 1; RETURN NULL; END $$',
                f"DROP TRIGGER IF EXISTS {ins} ON {q(table)}",
                f"CREATE TRIGGER {ins} AFTER INSERT ON {q(table)} REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {ins}()",
                f"DROP TRIGGER IF EXISTS {upd} ON {q(table)}",
                f"CREATE TRIGGER {upd} AFTER UPDATE ON {q(table)} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {upd}()",
                f"DROP TRIGGER IF EXISTS {dele} ON {q(table)}",
                f"CREATE TRIGGER {dele} AFTER DELETE ON {q(table)} REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {dele}()",
                f"DROP TRIGGER IF EXISTS {trunc} ON {q(table)}",
                f"CREATE TRIGGER {trunc} AFTER TRUNCATE ON {q(table)} FOR EACH STATEMENT EXECUTE FUNCTION {trunc}()",
            ]
    return statements


def uninstall_sql(vendor: str, tables: Sequence[str] = tuple(PARTITION_COLUMN)) -> list[str]:
    q = '"{}"'.format
    statements = []
    for table in tables:
        for name in _trigger_names(table):
            if vendor == "sqlite":
                statements.append(f"DROP TRIGGER IF EXISTS {q(name)}")
            elif vendor == "postgresql":
                statements += [f"DROP TRIGGER IF EXISTS {name} ON {q(table)}", f"DROP FUNCTION IF EXISTS {name}()"]
        if vendor == "postgresql":
            trunc = f"{TRIGGER_PREFIX}{table.lower()}_trunc"
            statements += [f"DROP TRIGGER IF EXISTS {trunc} ON {q(table)}", f"DROP FUNCTION IF EXISTS {trunc}()"]
    if vendor in ("sqlite", "postgresql"):
        statements.append(f'DROP TABLE IF EXISTS "{COUNTER_TABLE}"')
    return statements


# ------------------------------------------------------------------------------------ reading markers
def triggers_installed(alias: str, table: str) -> bool:
    """Whether every change trigger of `table` is in place (a SQLite table rebuild by a later migration drops them)."""
    connection = connections[alias]
    names = _trigger_names(table)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            marks = ", ".join(["%s"] * len(names))
            cursor.execute(
                f"SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s AND name IN ({marks})", [table, *names]
            )
            triggers = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = %s", [COUNTER_TABLE])
            return triggers == len(names) and cursor.fetchone()[0] == 1
        if connection.vendor == "postgresql":
            names = [*names, f"{TRIGGER_PREFIX}{table.lower()}_trunc"]
            cursor.execute(
                "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE c.relname = %s AND t.tgname = ANY(%s) AND t.tgenabled <> 'D' AND c.relnamespace = to_regnamespace(current_schema())",
                [table, names],
            )
            return cursor.fetchone()[0] == len(names) and _pg_table_exists(cursor, COUNTER_TABLE)
    return False


def _pg_table_exists(cursor, table: str) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f'"{table}"'])
    return bool(cursor.fetchone()[0])


def read_counters(alias: str, table: str) -> dict[int, int]:
    """{partition: changes so far} of `table` from the trigger-maintained counters."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT "PART", "CHANGES" FROM "{COUNTER_TABLE}" WHERE "TABLE_NAME" = %s', [table])
        return {int(part): int(changes) for part, changes in cursor.fetchall()}


def _sqlite_row_hash(*values) -> int:
    """32-bit hash of one row's values (registered on SQLite, which has no hash function of its own)."""
    text = "\x1f".join("\x00" if v is None else repr(v) for v in values)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")


def row_hash_sql(vendor: str, columns_sql: Sequence[str]) -> str:
    """SQL of a per-row integer hash over `columns_sql`, summed exactly by the caller."""
    if vendor == "postgresql":
        # 60 bits of md5 of the row's text form; sum() of bigint is numeric in PostgreSQL: no overflow
        return f"('x' || substr(md5(ROW({', '.join(columns_sql)})::text), 1, 15))::bit(60)::bigint"
    if vendor == "sqlite":
        return f"rml_row_hash({', '.join(columns_sql)})"  # 32 bits: 3e9 rows before a sum overflows int64
    # SQL Server: BINARY_CHECKSUM is made for change detection (documented to miss some changes
    # that swap bytes inside one value; the row count and the per-partition sum narrow that)
    return f"CAST(BINARY_CHECKSUM({', '.join(columns_sql)}) AS BIGINT)"


def read_checksums(alias: str, table: str, columns: Sequence[str], where: str = "", params: Sequence = ()) -> dict[int, str]:
    """{partition: 'rows:sum'} over `columns` of the rows of `table` matching `where`, computed in the database."""
    connection = connections[alias]
    qn = connection.ops.quote_name
    vendor = connection.vendor
    part = partition_expr(vendor, qn(PARTITION_COLUMN[table]))
    if vendor == "sqlite":
        connection.ensure_connection()
        connection.connection.create_function("rml_row_hash", -1, _sqlite_row_hash, deterministic=True)
    digest = row_hash_sql(vendor, [qn(c) for c in columns])
    count = "COUNT_BIG(*)" if vendor == "microsoft" else "COUNT(*)"
    sql = f"SELECT {part}, {count}, SUM({digest}) FROM {qn(table)}" + (f" WHERE {where}" if where else "") + f" GROUP BY {part}"
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return {int(p): f"{int(n)}:{int(s or 0)}" for p, n, s in cursor.fetchall()}
