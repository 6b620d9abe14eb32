"""The per-user API rate limit: the rate holds over any window and across processes, at a cost per request that does not grow with it."""

from __future__ import annotations

import random
import time
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


def test_counts_in_the_file_cache_last_the_whole_window_and_many_users_fit(tmp_path, monkeypatch):
    """The file cache's incr rewrote an entry with its default 300 s timeout, and past 300 entries it deleted files at random."""
    from django.core.cache.backends import filebased

    import routing_ml.settings as production

    config = production.CACHES["throttle"] if not production.REDIS_URL else {"OPTIONS": {"MAX_ENTRIES": 200_000}}
    file_cache = filebased.FileBasedCache(str(tmp_path), {"OPTIONS": config.get("OPTIONS", {})})
    clock = Clock()
    worker = ProcessCounts()

    def throttle(process: ProcessCounts, user: int = 1) -> UserRateThrottle:
        made = _throttle("100/hour", clock, process)
        made.cache = file_cache
        assert made.allow_request(_request(user), None)
        return made

    for _ in range(4):  # the first exchange adds the counters, the later ones increment them
        throttle(worker)
        clock.now += SYNC_SECONDS
    for user in range(2, 12):  # ten more users: 600+ counters over the hour
        for _ in range(61):
            throttle(worker, user)
            clock.now += 60
    assert len(list(tmp_path.glob("*.djcache"))) > 300  # more than the file cache's default room, none deleted
    later = time.time() + 1200  # past the file cache's default timeout, well inside the hour
    monkeypatch.setattr(filebased.time, "time", lambda: later)
    clock.now = Clock().now + 1200
    assert throttle(ProcessCounts()).count >= 3  # another worker still sees the first user's requests


def test_a_failing_shared_cache_leaves_the_api_answering_and_nothing_counted_twice(caplog):
    class Flaky:
        """The shared cache as Redis behaves when it goes down and comes back."""

        def __init__(self):
            self.down, self.values = False, {}

        def _check(self):
            if self.down:
                raise ConnectionError("Redis is down")

        def add(self, key, value, timeout=None):
            self._check()
            return self.values.setdefault(key, value) is value

        def incr(self, key, delta=1):
            self._check()
            self.values[key] += delta
            return self.values[key]

        def touch(self, key, timeout=None):
            return True

        def set(self, key, value, timeout=None):
            self.values[key] = value

        def get_many(self, keys):
            self._check()
            return {k: self.values[k] for k in keys if k in self.values}

    shared, clock, worker = Flaky(), Clock(), ProcessCounts()

    def allowed() -> bool:
        made = _throttle("1000/minute", clock, worker)
        made.cache = shared
        ok = made.allow_request(_request(), None)
        clock.now += SYNC_SECONDS
        return ok

    assert allowed()
    shared.down = True
    assert all(allowed() for _ in range(3))  # answered, counted here meanwhile
    assert "could not be exchanged" in caplog.text
    shared.down = False
    allowed()
    allowed()
    assert sum(shared.values.values()) == 5  # every request before the last one, each once


@pytest.mark.django_db(transaction=True)
def test_two_gunicorn_workers_hold_one_limit_between_them(ml_admin, tmp_path):
    """Through real HTTP, two requests in flight at once so both workers serve: the limit is the host's, not each worker's."""
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from rest_framework.test import APIClient

    from tests.cluster import cluster_env, gunicorn

    token = APIClient().post("/api/v1/auth/token/", {"username": ml_admin.username, "password": "pw-" + ml_admin.username}, format="json")
    access = token.json()["access"]
    env = {**cluster_env(), "API_THROTTLE_RATE": "20/minute", "THROTTLE_CACHE_DIR": str(tmp_path / "throttle")}
    env.pop("REDIS_URL", None)

    def status(base: str) -> int:
        request = urllib.request.Request(f"{base}/api/v1/models/", headers={"Authorization": f"Bearer {access}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    with gunicorn(tmp_path / "gunicorn.log", env, timeout=60) as base, ThreadPoolExecutor(max_workers=2) as pool:
        statuses = list(pool.map(lambda _: status(base), range(60)))
    assert set(statuses) <= {200, 429}, statuses
    assert 20 <= statuses.count(200) <= 21, statuses  # each worker counting alone let ~40 through
