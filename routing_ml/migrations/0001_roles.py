from django.db import migrations


def create_roles(apps, schema_editor):
    from routing_ml.roles import sync_role_permissions

    sync_role_permissions(using=schema_editor.connection.alias)


def drop_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.filter(name__in=["planners", "ml_admins"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("registry", "0001_initial"),
        ("training", "0001_initial"),
        ("quality", "0001_initial"),
        ("erp", "0001_initial"),
    ]
    operations = [migrations.RunPython(create_roles, drop_roles)]
