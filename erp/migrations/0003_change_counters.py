"""Change counters on the ERP tables (erp.changes): triggers that let a snapshot see every insert, update and delete.

Only where the ERP tables are ours (not a real ERP attached through ERP_DATABASE_URL) and only on
SQLite and PostgreSQL; elsewhere erp.snapshot falls back to checksums.
"""

from django.db import migrations

from erp.changes import install_sql, uninstall_sql


def _applies(schema_editor) -> bool:
    from erp.models import ERP_MANAGED

    return ERP_MANAGED and schema_editor.connection.vendor in ("sqlite", "postgresql")


def install(apps, schema_editor):
    if not _applies(schema_editor):
        return
    for statement in install_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


def uninstall(apps, schema_editor):
    if not _applies(schema_editor):
        return
    for statement in uninstall_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("erp", "0002_column_labels")]

    operations = [migrations.RunPython(install, uninstall, hints={"model_name": "item"})]
