"""Settings of the test run: the application's own, in development mode (DEBUG=true unless the environment says otherwise).

Production is the default of routing_ml.settings; the test client and the live server speak plain
HTTP, which production mode would redirect to HTTPS. Subprocesses started by tests inherit DEBUG
from here; tests of production mode (test_settings) set it themselves.
"""

import os

os.environ.setdefault("DEBUG", "true")

from routing_ml.settings import *  # noqa: E402, F403

# Throttle counts per test process (the autouse fixture in conftest.py clears them between tests).
CACHES = {**CACHES, "throttle": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle"}}  # noqa: F405
