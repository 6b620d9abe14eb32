from django.apps import AppConfig


class QualityConfig(AppConfig):
    name = "quality"
    verbose_name = "Quality"

    def ready(self) -> None:
        from training.signals import version_trained

        from . import metrics_collector  # noqa: F401  (registers the Prometheus collector)
        from .gate import on_version_trained

        version_trained.connect(on_version_trained, dispatch_uid="quality.gate")

        from django.db.models.signals import post_save

        from registry.models import DeploymentEvent
        from registry.signals import bundle_verification_failed
        from training.signals import job_failed

        from .models import on_bundle_verification_failed
        from .notifications import on_deployment, on_job_failed

        job_failed.connect(on_job_failed, dispatch_uid="quality.notify_job_failed")
        post_save.connect(on_deployment, sender=DeploymentEvent, dispatch_uid="quality.notify_deployment")
        bundle_verification_failed.connect(on_bundle_verification_failed, dispatch_uid="quality.model_files_alert")
