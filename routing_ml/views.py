"""The home page: where planners and ML admins start."""

from django.shortcuts import render

from registry.models import ModelVersion


def home(request):
    return render(request, "home.html", {"active_version": ModelVersion.objects.get_active()})
