"""gunicorn configuration for Routing ML (used by deploy/systemd/routing-ml-web.service).

    gunicorn -c deploy/gunicorn.conf.py routing_ml.wsgi

Everything can be overridden from the environment (the unit's EnvironmentFile).
"""

import os
import shutil
from pathlib import Path

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Sync workers: a prediction is a few milliseconds of numpy. The master imports the app and loads the active
# model before it forks (preload_app + routing_ml.serving.when_ready), so the workers share the code, the
# model's objects and its memory-mapped arrays instead of each holding a copy. Code changes need a restart
# (systemctl restart), not a HUP: a preloaded app is not re-imported on reload.
workers = int(os.environ.get("WEB_WORKERS", "4"))
worker_class = "sync"
preload_app = True
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 30
# Recycle workers now and then (memory of pandas/numpy temporaries), staggered so they do not restart together.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = 500
# GUNICORN_ACCESSLOG="" turns the access log off (e.g. for benchmarks).
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Prometheus multiprocess mode: every worker writes its counters under this directory and /metrics sums them.
# It must start empty (files of an earlier run would be added to this run's counts).
_multiproc = os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def when_ready(server):
    from routing_ml.serving import when_ready as preload

    preload(server)


def on_starting(server):
    if _multiproc:
        shutil.rmtree(_multiproc, ignore_errors=True)
        Path(_multiproc).mkdir(parents=True, exist_ok=True)


def child_exit(server, worker):
    if _multiproc:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
