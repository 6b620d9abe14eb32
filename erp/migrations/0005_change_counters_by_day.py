"""Change counters by day instead of by month (erp.changes.partition_expr): the triggers are installed again,
and on SQLite the partition expression is indexed (reading a few changed days searches it).

The triggers compute each row's partition themselves, so they are dropped and created again with
the new expression; the counter table starts afresh under a new epoch, which makes the next
snapshot read a full one (and snapshots of format 1, by month, are rebuilt anyway).
"""

from django.db import migrations

from erp.changes import PARTITION_COLUMN, install_sql, partition_index_sql, uninstall_sql


def _applies(schema_editor) -> bool:
    from erp.models import ERP_MANAGED

    return ERP_MANAGED and schema_editor.connection.vendor in ("sqlite", "postgresql")


def _indexes(schema_editor) -> list[tuple[str, str]]:
    vendor = schema_editor.connection.vendor
    return [sql for table in PARTITION_COLUMN if (sql := partition_index_sql(vendor, table))]


def reinstall(apps, schema_editor):
    if not _applies(schema_editor):
        return
    for statement in [*uninstall_sql(schema_editor.connection.vendor), *install_sql(schema_editor.connection.vendor)]:
        schema_editor.execute(statement, params=None)
    for create, _drop in _indexes(schema_editor):  # SQLite: the partition expression indexed, for reading a few days
        schema_editor.execute(create, params=None)


def remove(apps, schema_editor):
    """Going back: no triggers at all. Code from before this migration partitions by month; finding no triggers,
    it falls back to checksums computed with its own expression, instead of misreading day counters as months."""
    if not _applies(schema_editor):
        return
    for statement in uninstall_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)
    for _create, drop in _indexes(schema_editor):
        schema_editor.execute(drop, params=None)


class Migration(migrations.Migration):
    dependencies = [("erp", "0004_work_results_by_date_and_item")]

    operations = [migrations.RunPython(reinstall, remove, hints={"model_name": "item"})]
