"""Scale-out, run for real: PostgreSQL + the Redis broker, a default cluster and a training cluster (each its own
`qcluster` process), gunicorn serving predictions all along.

Needs a PostgreSQL database (DATABASE_URL, as in the `postgres` pass) and TEST_REDIS_URL; `make test` runs it
(`pytest -m scaleout`) when TEST_POSTGRES_URL and TEST_REDIS_URL are set, as .ci/run sets them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django_q.models import Success

from quality.models import QualityCycle, QualitySettings
from routing_ml.schedules import ensure_schedules
from tests.cluster import ROOT, cluster_env, free_port, wait_for
from tests.fixtures_model import *  # noqa: F401,F403
from training.models import TrainingJob

REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
TRAINING = "training"
DEFAULT = settings.Q_CLUSTER["name"]

pytestmark = [
    pytest.mark.scaleout,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not REDIS_URL, reason="TEST_REDIS_URL is not set (the scale-out suite needs a Redis server)"),
]


@pytest.fixture(autouse=True)
def _needs_postgresql(db):
    if connection.vendor != "postgresql":
        pytest.skip("the scale-out suite runs on PostgreSQL (DATABASE_URL=$TEST_POSTGRES_URL pytest -m scaleout)")


def _env(**extra) -> dict:
    env = cluster_env()
    env.pop("Q_CLUSTER_NAME", None)
    env.update(REDIS_URL=REDIS_URL, TRAINING_CLUSTER=TRAINING, Q_WORKERS="2", MODEL_RELOAD_INTERVAL="0.5", LOG_LEVEL="INFO", **extra)
    return env


def _redis():
    import redis

    return redis.from_url(REDIS_URL)


def _queued(cluster: str) -> int:
    return _redis().llen(f"django_q:{cluster}:q")


class Process:
    """A long-running subprocess in its own session: killed with SIGKILL (a crash) or stopped with SIGTERM."""

    def __init__(self, args: list[str], env: dict, log: Path):
        self.args, self.env, self.log_path = args, env, log
        self.process = None
        self.start()

    def start(self) -> None:
        self.log = open(self.log_path, "a")  # noqa: SIM115
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """As if the machine died: no graceful shutdown. Returns once no process of the group is left.

        The parent is reaped at once, but its children (django-q2's pusher blocked in BLPOP, the workers) exit on
        their own time, up to a few hundred ms on a busy machine. Until the pusher's socket is closed Redis still
        hands it the next task, which dies with it (the Redis broker has no ack): the cluster is down only when
        all of them are gone.
        """
        group = self.process.pid
        os.killpg(group, signal.SIGKILL)
        self.process.wait()
        wait_for(lambda: not _living_members(group), 60, interval=0.05, message=f"every process of group {group} to exit")
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if not self.log.closed:
            self.log.close()


def _living_members(group: int) -> list[int]:
    """The processes of a process group that still hold their files (sockets): those with a thread that has not exited.

    Not the process's own state only: a multi-threaded process whose main thread has exited shows as a zombie while
    its other threads, and its open files, are still there.
    """
    members = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != group:
                continue
            states = [_proc_state(f"/proc/{pid}/task/{tid}/stat") for tid in os.listdir(f"/proc/{pid}/task")]
        except OSError:  # exited meanwhile
            continue
        if any(state not in ("Z", "X") for state in states):
            members.append(int(pid))
    return members


def _proc_state(stat_path: str) -> str:
    with open(stat_path) as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]  # the field after "(command)", which may itself hold spaces


@contextmanager
def running(process: Process):
    try:
        yield process
    finally:
        process.stop()


class Api:
    def __init__(self, base: str):
        self.base, self.token, self.credentials = base, None, None

    def login(self, username: str, password: str) -> int:
        self.credentials = {"username": username, "password": password}
        status, tokens = self.call("POST", "/api/v1/auth/token/", self.credentials)
        self.token = tokens.get("access")
        return status

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        status, answer = self._call(method, path, body)
        if status == 401 and self.token and self.credentials:  # the access token expired (5 minutes): log in again
            self.token = None
            self.login(**self.credentials)
            status, answer = self._call(method, path, body)
        return status, answer

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


class PredictionLoad(threading.Thread):
    """Predicts a few items through gunicorn every 100 ms and records every answer."""

    def __init__(self, api: Api, codes: list[str]):
        super().__init__(daemon=True)
        self.api, self.codes = api, codes
        self.answers: list[tuple[int, str | None]] = []
        self.times: list[float] = []  # when each answer came (monotonic seconds)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                status, body = self.api.call("POST", "/api/v1/predictions/", {"item_codes": self.codes})
                self.answers.append((status, body.get("model_version") if status == 200 else str(body.get("error"))))
            except OSError as exc:  # a refused connection is an outage too: recorded as status 0
                self.answers.append((0, str(exc)))
            self.times.append(time.monotonic())
            time.sleep(0.1)


def _ran_on(func: str) -> set[str]:
    return set(Success.objects.filter(func=func).values_list("cluster", flat=True))


def test_closed_loop_on_postgresql_and_redis_with_a_training_cluster_and_no_task_lost(demo_erp, ml_admin, tmp_path, settings):
    from erp.models import Item

    _redis().delete(f"django_q:{DEFAULT}:q", f"django_q:{TRAINING}:q")
    settings.TRAINING_CLUSTER = TRAINING
    cfg = QualitySettings.current()
    cfg.auto_retrain = False  # this test counts its own training jobs
    cfg.save()
    ensure_schedules()  # the training cluster's heartbeat schedule
    codes = list(Item.objects.order_by("item_cd").values_list("item_cd", flat=True)[:5])
    port = free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    qcluster = [sys.executable, "manage.py", "qcluster"]

    with ExitStack() as stack:
        web = stack.enter_context(running(Process(
            [gunicorn, "-c", "deploy/gunicorn.conf.py", "routing_ml.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--timeout", "120"],
            _env(), tmp_path / "web.log")))
        default = stack.enter_context(running(Process(qcluster, _env(), tmp_path / "default.log")))
        training = stack.enter_context(running(Process(qcluster, _env(Q_CLUSTER_NAME=TRAINING), tmp_path / "training.log")))
        api = Api(f"http://127.0.0.1:{port}")

        def ready():
            try:
                return api.login(ml_admin.username, "pw-alex_admin")
            except OSError:
                return None

        assert wait_for(ready, 60, message="gunicorn to answer") == 200
        load = PredictionLoad(api, codes)
        load.start()

        # 1. Training runs on the training cluster only.
        status, job = api.call("POST", "/api/v1/training/jobs/", {"label": "s1", "candidates": ["baseline"], "activate": True})
        assert status == 202, job
        wait_for(lambda: TrainingJob.objects.get(pk=job["id"]).status == "succeeded", 240, message="job s1 on the training cluster")
        # The cluster records the task's result just after the job's own row says succeeded.
        assert wait_for(lambda: _ran_on("training.tasks.run_training_job"), 30, message="the task's result") == {TRAINING}
        wait_for(lambda: any(s == 200 and v == "s1" for s, v in load.answers[-5:]), 30, message="gunicorn to serve s1")

        # 2. Quality cycles run on the default cluster.
        status, body = api.call("POST", "/api/v1/quality/cycles/", {"sample_size": 20})
        assert status == 202, body
        wait_for(lambda: QualityCycle.objects.filter(status="succeeded").exists(), 120, message="a quality cycle on the default cluster")
        assert wait_for(lambda: _ran_on("quality.tasks.run_cycle_task"), 30, message="the task's result") == {DEFAULT}
        wait_for(lambda: _ran_on("training.tasks.cluster_beat") == {TRAINING} and "training.tasks.housekeeping" in set(
            Success.objects.filter(cluster=DEFAULT).values_list("func", flat=True)), 90, message="both clusters' schedules")

        # 3. The training cluster dies; a job queued meanwhile waits in Redis and runs once it is back.
        training.kill()
        status, job2 = api.call("POST", "/api/v1/training/jobs/", {"label": "s2", "candidates": ["baseline"], "activate": True})
        assert status == 202, job2
        wait_for(lambda: _queued(TRAINING) == 1, 10, message="the job's task in the training queue")
        time.sleep(3)
        assert TrainingJob.objects.get(pk=job2["id"]).status == "queued"  # the default cluster never takes training work
        assert _queued(TRAINING) == 1
        training.start()
        wait_for(lambda: TrainingJob.objects.get(pk=job2["id"]).status == "succeeded", 240, message="job s2 after the restart")
        wait_for(lambda: any(s == 200 and v == "s2" for s, v in load.answers[-5:]), 30, message="gunicorn to serve s2")

        # 4. The default cluster dies; a cycle queued meanwhile runs once it is back.
        default.kill()
        before = QualityCycle.objects.count()
        status, body = api.call("POST", "/api/v1/quality/cycles/", {"sample_size": 20})
        assert status == 202, body
        wait_for(lambda: _queued(DEFAULT) >= 1, 10, message="the cycle's task in the default queue")
        default.start()
        wait_for(lambda: QualityCycle.objects.filter(status="succeeded").count() == before + 1, 120, message="the cycle after the restart")

        load.done.set()
        load.join(timeout=30)
        assert web.process.poll() is None
    assert set(TrainingJob.objects.values_list("label", "status")) == {("s1", "succeeded"), ("s2", "succeeded")}
    statuses = [s for s, _ in load.answers]
    # Predictions were served all along: 503 only before the first model was active, never a server error or a refused
    # connection. Each gunicorn worker notices the first activation on its own reload check (MODEL_RELOAD_INTERVAL, 0.5 s
    # here), so the other worker may still answer 503 "no model is active" for that long after the first 200.
    first_ok = statuses.index(200)
    settled = load.times[first_ok] + 0.5 + 1.5  # the reload interval plus a margin for a busy machine
    late = [(s, detail) for (s, detail), t in zip(load.answers, load.times, strict=True) if t > settled and s != 200]
    assert len(statuses) > 50 and not late, late
    assert set(statuses[first_ok:]) <= {200, 503}, load.answers
    assert set(statuses[:first_ok]) <= {503}
    assert {v for s, v in load.answers if s == 200} == {"s1", "s2"}
