from django.apps import AppConfig
from django.db.models.signals import post_migrate


class RoutingMLConfig(AppConfig):
    name = "routing_ml"
    verbose_name = "Routing ML"

    def ready(self) -> None:
        from . import checks, schema  # noqa: F401  (registers system checks and the OpenAPI auth extension)
        from .roles import sync_role_permissions
        from .schedules import ensure_schedules

        # Keep the roles' permissions in step with the code after every migrate (new permissions appear).
        post_migrate.connect(sync_role_permissions, sender=self, dispatch_uid="routing_ml.sync_roles")
        post_migrate.connect(ensure_schedules, sender=self, dispatch_uid="routing_ml.schedules")
