"""The two roles, as Django groups holding model permissions.

planners   may predict, review predicted routings and view dashboards (and read the records behind them);
ml_admins  may also train, cancel, activate and roll back, change quality settings,
           run quality cycles, acknowledge alerts and manage notification channels.
"""

from __future__ import annotations

PLANNERS = "planners"
ML_ADMINS = "ml_admins"

_READ = [
    "registry.view_modelversion",
    "registry.view_deploymentevent",
    "training.view_trainingjob",
    "quality.view_qualitycycle",
    "quality.view_qualityalert",
    "quality.view_qualitysettings",
    "erp.view_item",
    "erp.view_routingoperation",
    "erp.view_workresult",
    "predictions.view_routingreview",
    "predictions.view_predictionlog",
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    PLANNERS: ["registry.predict", "predictions.add_routingreview", "quality.view_dashboard", *_READ],
    ML_ADMINS: [
        "registry.predict",
        "predictions.add_routingreview",
        "quality.view_dashboard",
        *_READ,
        "training.add_trainingjob",
        "training.cancel_trainingjob",
        "registry.activate_modelversion",
        "registry.change_modelversion",
        "quality.change_qualitysettings",
        "quality.run_qualitycycle",
        "quality.acknowledge_qualityalert",
        "quality.view_notificationchannel",
        "quality.add_notificationchannel",
        "quality.change_notificationchannel",
        "quality.delete_notificationchannel",
        "quality.view_notificationdelivery",
    ],
}


def sync_role_permissions(*args, apps=None, using="default", **kwargs) -> None:
    """Create both groups if needed and give them exactly the permissions above that exist."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    apps = apps or global_apps
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    # Permissions are normally created after migrations; a data migration must create them itself.
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using, apps=global_apps)
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=role)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            wanted.extend(Permission.objects.using(using).filter(content_type__app_label=app_label, codename=codename))
        group.permissions.set(wanted)
