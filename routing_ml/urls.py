from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from quality.views import metrics

from . import api, auth, health, views

api_v1 = [
    path("", api.api_root, name="api-root"),
    path("auth/token/", auth.TokenObtainPairView.as_view(), name="token_obtain_pair"),
    path("auth/token/refresh/", auth.TokenRefreshView.as_view(), name="token_refresh"),
    path("", include("training.urls")),
    path("", include("registry.urls")),
    path("", include("predictions.api_urls")),
    path("", include("quality.api_urls")),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("health", health.health, name="health"),
    path("health/db", health.health_db, name="health-db"),
    # Our own view, not django-prometheus': it keeps the quality gauges in multiprocess mode.
    path("metrics", metrics, name="prometheus-django-metrics"),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script for the CSP to allow.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    re_path(r"^api/(?P<rest>.*)$", api.api_not_found),
    path("", include("predictions.urls")),
    path("", include("quality.urls")),
]

handler400 = api.json_error_view(400, "Bad request.")
handler404 = api.json_error_view(404, "Not found.")
handler500 = api.json_error_view(500, "Internal server error.")
