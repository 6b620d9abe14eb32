"""A URLconf with an API view that crashes, to prove a 500 still has the JSON error body."""

from django.urls import include, path
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny

from routing_ml.urls import urlpatterns as project_urls


@api_view(["GET"])
@permission_classes([AllowAny])
def crash(request):
    raise RuntimeError("boom")


urlpatterns = [path("api/v1/crash/", crash), path("", include(project_urls))]
