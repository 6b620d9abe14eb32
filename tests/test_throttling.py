"""The per-user API rate limit: the rate holds over any window, at a cost per request that does not grow with it."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from django.core.cache import cache

from routing_ml.throttling import BUCKETS, UserRateThrottle


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _throttle(rate: str, clock: Clock) -> UserRateThrottle:
    throttle_class = type("RateUnderTest", (UserRateThrottle,), {"rate": rate, "timer": staticmethod(clock)})
    return throttle_class()


def _request(user_id: int = 1):
    return SimpleNamespace(user=SimpleNamespace(is_authenticated=True, pk=user_id), META={"REMOTE_ADDR": "127.0.0.1"})


@pytest.fixture(autouse=True)
def clean_cache():
    cache.clear()
    yield
    cache.clear()


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


def test_the_stored_count_stays_small_however_many_requests_the_window_holds():
    clock = Clock()
    for _ in range(20_000):
        assert _throttle("100000/hour", clock).allow_request(_request(), None)
        clock.now += 0.05
    throttle = _throttle("100000/hour", clock)
    throttle.allow_request(_request(), None)
    stored = cache.get(throttle.key)
    assert len(stored) <= BUCKETS + 1
    assert sum(requests for _, requests in stored) == 20_001


def test_timestamps_left_by_drfs_own_throttle_still_count():
    clock = Clock()
    throttle = _throttle("3/minute", clock)
    key = throttle.cache_format % {"scope": throttle.scope, "ident": 1}
    cache.set(key, [clock.now - 1, clock.now - 2, clock.now - 3], 60)  # DRF's format: newest first
    assert throttle.allow_request(_request(), None) is False
