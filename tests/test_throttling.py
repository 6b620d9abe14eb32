"""The per-user API rate limit: the rate holds over any window and across processes, at a cost per request that does not grow with it."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from django.core.cache import caches

from routing_ml.throttling import BUCKETS, SYNC_SECONDS, ProcessCounts, UserRateThrottle


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _throttle(rate: str, clock: Clock, process: ProcessCounts | None = None) -> UserRateThrottle:
    """A throttle as DRF makes one per request; `process`: the counts of another process than this one."""
    attributes = {"rate": rate, "timer": staticmethod(clock)}
    if process is not None:
        attributes["counts"] = process
    return type("RateUnderTest", (UserRateThrottle,), attributes)()


def _request(user_id: int = 1):
    return SimpleNamespace(user=SimpleNamespace(is_authenticated=True, pk=user_id), META={"REMOTE_ADDR": "127.0.0.1"})


def test_the_request_past_the_rate_is_refused_with_a_retry_time_and_the_next_window_is_open():
    clock = Clock()
    outcomes = []
    for _ in range(4):
        throttle = _throttle("3/minute", clock)
        outcomes.append(throttle.allow_request(_request(), None))
        clock.now += 1
    assert outcomes == [True, True, True, False]
    assert 0 < throttle.wait() <= 61
    clock.now += 61
    assert _throttle("3/minute", clock).allow_request(_request(), None) is True
    assert _throttle("3/minute", clock).allow_request(_request(2), None) is True  # per user


def test_no_window_of_the_duration_ever_holds_more_requests_than_the_rate():
    rng = random.Random(3)
    clock = Clock()
    allowed = []
    for _ in range(3000):
        clock.now += rng.expovariate(1 / 0.5)  # ~2 requests a second against 50 a minute
        if _throttle("50/minute", clock).allow_request(_request(), None):
            allowed.append(clock.now)
    assert len(allowed) > 500  # it lets requests through as the window moves on
    for i, start in enumerate(allowed):
        in_window = sum(1 for moment in allowed[i:] if moment < start + 60)
        assert in_window <= 50


def test_the_shared_count_stays_small_however_many_requests_the_window_holds():
    clock = Clock()
    for _ in range(20_000):
        assert _throttle("100000/hour", clock).allow_request(_request(), None)
        clock.now += 0.05
    clock.now += SYNC_SECONDS
    throttle = _throttle("100000/hour", clock)
    throttle.allow_request(_request(), None)  # exchanges: this process's requests go to the shared counters
    stored = {key: value for key, value in caches["throttle"]._cache.items() if key.startswith(f":1:{throttle.key}:")}
    assert len(stored) <= BUCKETS + 1
    assert throttle.count == 20_000 and len(throttle.buckets) <= BUCKETS + 1


def test_two_processes_share_one_limit():
    """Two gunicorn workers: before, each counted on its own and a client got twice the rate; now within one request of it."""
    clock = Clock()
    workers = [ProcessCounts(), ProcessCounts()]
    outcomes = []
    for i in range(12):
        outcomes.append(_throttle("10/minute", clock, workers[i % 2]).allow_request(_request(), None))
        clock.now += SYNC_SECONDS  # each worker has exchanged its counts before its next request
    # At any moment the other worker holds one request it has not passed on yet (it does at its next request).
    assert outcomes == [True] * 11 + [False]
    assert _throttle("10/minute", clock, ProcessCounts()).allow_request(_request(), None) is False  # a third, new worker too
    assert _throttle("10/minute", clock, workers[0]).allow_request(_request(2), None) is True  # per user


def test_a_burst_spread_over_processes_within_one_exchange_period_is_held_near_the_limit():
    """Near the limit the processes exchange at every request, however little time has passed."""
    clock = Clock()
    workers = [ProcessCounts() for _ in range(4)]
    allowed = 0
    for i in range(200):
        allowed += _throttle("40/minute", clock, workers[i % 4]).allow_request(_request(), None)
        clock.now += 0.001  # 200 requests in 0.2 s: no exchange is due by time
    assert 40 <= allowed <= 40 + 3


def test_across_processes_the_limit_is_exceeded_by_at_most_what_the_others_served_since_their_exchange():
    rng = random.Random(5)
    clock = Clock()
    workers = [ProcessCounts(), ProcessCounts()]
    allowed = []
    for _ in range(4000):
        clock.now += rng.expovariate(1 / 0.05)  # ~20 requests a second against 300 a minute, spread over two workers
        if _throttle("300/minute", clock, rng.choice(workers)).allow_request(_request(), None):
            allowed.append(clock.now)
    assert len(allowed) > 1000
    for i, start in enumerate(allowed):
        assert sum(1 for moment in allowed[i:] if moment < start + 60) <= 300 + 1


def test_a_request_is_counted_without_going_to_the_shared_cache(monkeypatch):
    clock = Clock()
    _throttle("1000/minute", clock).allow_request(_request(), None)  # far from the limit
    calls = []
    cache = caches["throttle"]
    for name in ("get", "get_many", "set", "add", "incr"):
        real = getattr(cache, name)
        monkeypatch.setattr(cache, name, lambda *a, _real=real, _name=name, **k: (calls.append(_name), _real(*a, **k))[1])
    for _ in range(50):
        clock.now += SYNC_SECONDS / 100
        assert _throttle("1000/minute", clock).allow_request(_request(), None)
    assert calls == []
    clock.now += SYNC_SECONDS
    _throttle("1000/minute", clock).allow_request(_request(), None)
    assert "get_many" in calls and ("add" in calls or "incr" in calls)


@pytest.mark.django_db(transaction=True)
def test_two_gunicorn_workers_hold_one_limit_between_them(ml_admin, tmp_path):
    """Through real HTTP, two requests in flight at once so both workers serve: the limit is the host's, not each worker's."""
    import os
    import signal
    import subprocess
    import sys
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from rest_framework.test import APIClient

    from tests.cluster import ROOT, cluster_env, wait_for
    from tests.test_faults import _free_port, _up

    token = APIClient().post("/api/v1/auth/token/", {"username": ml_admin.username, "password": "pw-" + ml_admin.username}, format="json")
    access = token.json()["access"]
    port = _free_port()
    env = {**cluster_env(), "API_THROTTLE_RATE": "20/minute", "THROTTLE_CACHE_DIR": str(tmp_path / "throttle")}
    env.pop("REDIS_URL", None)
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "routing_ml.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--timeout", "60"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def status() -> int:
        request = urllib.request.Request(f"{base}/api/v1/models/", headers={"Authorization": f"Bearer {access}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    try:
        wait_for(lambda: _up(base), timeout=60, message="gunicorn to answer")
        with ThreadPoolExecutor(max_workers=2) as pool:
            statuses = list(pool.map(lambda _: status(), range(60)))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    assert set(statuses) <= {200, 429}, statuses
    assert 20 <= statuses.count(200) <= 21, statuses  # each worker counting alone let ~40 through
