"""WSGI entry point (gunicorn routing_ml.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routing_ml.settings")

from routing_ml.serving import ReleaseMemoryAfterLargeAnswers  # noqa: E402 (after the settings module is named)

# A worker frees each large answer as soon as it is sent, instead of at the garbage collector's leisure.
application = ReleaseMemoryAfterLargeAnswers(get_wsgi_application())
