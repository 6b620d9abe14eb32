from django.apps import AppConfig


class QualityConfig(AppConfig):
    name = "quality"
    verbose_name = "Quality"

    def ready(self) -> None:
        from training.signals import version_trained

        from . import metrics_collector  # noqa: F401  (registers the Prometheus collector)
        from .gate import on_version_trained

        version_trained.connect(on_version_trained, dispatch_uid="quality.gate")

        from registry.signals import bundle_verification_failed

        from .models import on_bundle_verification_failed

        bundle_verification_failed.connect(on_bundle_verification_failed, dispatch_uid="quality.model_files_alert")
