from django.urls import path
from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter()
router.register("quality/cycles", api.QualityCycleViewSet, basename="quality-cycle")
router.register("quality/alerts", api.QualityAlertViewSet, basename="quality-alert")
urlpatterns = [
    path("quality/settings/", api.QualitySettingsView.as_view(), name="quality-settings"),
    path("quality/current/", api.current, name="quality-current"),
    *router.urls,
]
