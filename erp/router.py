"""Send the ERP models to the `erp` alias when a real ERP is attached (ERP_DATABASE_URL)."""

from __future__ import annotations

from django.conf import settings

ERP_APP = "erp"


class ErpRouter:
    def _alias(self, model) -> str | None:
        if model._meta.app_label == ERP_APP and "erp" in settings.DATABASES:
            return "erp"
        return None

    def db_for_read(self, model, **hints):
        return self._alias(model)

    def db_for_write(self, model, **hints):
        return self._alias(model)

    def allow_relation(self, obj1, obj2, **hints):
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if "erp" not in settings.DATABASES:
            return None
        # The real ERP's views are never migrated; nothing but the ERP lives on that alias.
        if db == "erp":
            return False
        return None
