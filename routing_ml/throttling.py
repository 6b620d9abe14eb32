"""The API's per-user rate limit: one limit for all the processes of a host, at a cost per request that does not grow with the rate.

DRF's `UserRateThrottle` keeps one timestamp per request of the window in the cache and
unpickles, scans, inserts at the front of and pickles that whole list on every request. At the
default `API_THROTTLE_RATE` of 100,000/hour an integration that uses its allowance carries up to
100,000 timestamps: measured 0.9 ms a request at 10,000 of them and ~7 ms at 100,000, more than a
one-item prediction. And in DRF's default (per-process) cache every gunicorn worker counted on
its own, so the effective limit was the rate times the number of workers.

Here the window is counted in BUCKETS buckets, each a counter in the shared "throttle" cache
(Redis when there is one, else files every process of the host reads). A request does not go to
the cache: each process counts its own requests locally and adds them to the shared counters
(`incr`, atomic on Redis), reading everyone's back, at the user's first request after SYNC_SECONDS,
or sooner as the user nears the limit (once its own uncounted requests reach an eighth of what is
left, so at every request at the very end). Far from the limit a request costs a few dictionary
operations; at the limit, other processes can each have let through about one request they had
not passed on yet.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.core.cache import caches
from rest_framework import throttling

logger = logging.getLogger(__name__)

# The window is counted in this many buckets (one minute of an hourly rate, one second of a per-minute one).
BUCKETS = 60
# How often a process exchanges its counts with the others, per user (seconds).
SYNC_SECONDS = 1.0


@contextmanager
def _host_lock(cache):
    """Around an exchange with a file-based cache, whose `incr` is a read and a write: without it two workers adding
    at once both read n and both write n + 1, and a request goes uncounted. Redis increments atomically: no lock."""
    directory = getattr(cache, "_dir", None)
    if directory is None:
        yield
        return
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "exchange.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class _UserCounts:
    """One user's requests as this process knows them: everyone's as of the last exchange, and its own since."""

    synced_at: float
    shared: dict[int, int] = field(default_factory=dict)  # bucket -> requests of every process, at the last exchange
    pending: dict[int, int] = field(default_factory=dict)  # bucket -> this process's requests since then


class ProcessCounts:
    """The per-process side of the limit: `{cache key: _UserCounts}` under one lock (gunicorn may run threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users: dict[str, _UserCounts] = {}

    def clear(self) -> None:
        with self.lock:
            self.users.clear()


class UserRateThrottle(throttling.UserRateThrottle):
    """DRF's per-user throttle (same scope, rate and Retry-After), counted in shared buckets.

    A bucket is counted until it has wholly left the window, so the count may include requests
    up to one bucket older than the window and never misses one of this process's: no client gets
    more than the rate in any window from one process, and across processes about one request per
    other process more (up to a handful of workers; with many, each may hold an eighth of what is
    left uncounted at once). A client at its limit may wait up to 1/BUCKETS of the window longer.
    """

    cache = caches["throttle"]
    counts = ProcessCounts()

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        self.width = self.duration / BUCKETS
        current = math.floor(self.now / self.width)
        oldest = math.floor((self.now - self.duration) / self.width)  # still (partly) inside the window
        with self.counts.lock:
            user = self.counts.users.get(self.key)
            fresh = user is None or not 0 <= self.now - user.synced_at < SYNC_SECONDS
            if fresh:
                user = self._exchange(user, oldest, current)
            self._view(user, oldest)
            # Near the limit the processes exchange more often: once this one's own uncounted requests reach
            # an eighth of what is left, and at every request when little is left.
            if not fresh and sum(user.pending.values()) >= max(1, (self.num_requests - self.count) // 8):
                user = self._exchange(user, oldest, current)
                self._view(user, oldest)
            if self.count >= self.num_requests:
                return self.throttle_failure()
            user.pending[current] = user.pending.get(current, 0) + 1
        return True

    def _view(self, user: _UserCounts, oldest: int) -> None:
        """`buckets` [(bucket, requests)] and `count`: the window's requests as this process knows them."""
        seen = dict(user.shared)
        for bucket, requests in user.pending.items():
            seen[bucket] = seen.get(bucket, 0) + requests
        self.buckets = sorted((bucket, requests) for bucket, requests in seen.items() if bucket >= oldest)
        self.count = sum(requests for _, requests in self.buckets)

    def _exchange(self, user: _UserCounts | None, oldest: int, current: int) -> _UserCounts:
        """Add this process's pending requests to the shared counters, then read every process's.

        Should the shared cache fail (Redis down), the process goes on counting on its own and
        tries again SYNC_SECONDS later: the API keeps answering, with a per-process limit meanwhile.
        """
        timeout = math.ceil(self.duration + 2 * self.width)
        keys = {self._bucket_key(bucket): bucket for bucket in range(oldest, current + 1)}
        pending = user.pending if user else {}
        try:
            with _host_lock(self.cache):
                for bucket in sorted(pending):
                    key = self._bucket_key(bucket)
                    if not self.cache.add(key, pending[bucket], timeout):
                        try:
                            self.cache.incr(key, pending[bucket])
                            self.cache.touch(key, timeout)  # the file cache's incr rewrites the entry with its default timeout
                        except ValueError:  # expired between add and incr
                            self.cache.set(key, pending[bucket], timeout)
                    # Passed on: never added twice, even if a later one fails, and still seen here until the read.
                    if user is not None:
                        user.shared[bucket] = user.shared.get(bucket, 0) + pending.pop(bucket)
                shared = {keys[key]: int(requests) for key, requests in self.cache.get_many(list(keys)).items()}
        except Exception as exc:
            logger.warning("API rate limit: the shared counts could not be exchanged (%s); counting in this process meanwhile", exc)
            if user is None:
                user = _UserCounts(synced_at=self.now)
                self.counts.users[self.key] = user
            user.synced_at = self.now  # what was not passed on stays pending, counted here
            return user
        fresh = _UserCounts(synced_at=self.now, shared=shared)
        self.counts.users[self.key] = fresh
        if len(self.counts.users) > 1000:  # forget users idle for a whole window
            for key in [k for k, u in self.counts.users.items() if self.now - u.synced_at > self.duration]:
                del self.counts.users[key]
        return fresh

    def _bucket_key(self, bucket: int) -> str:
        return f"{self.key}:{bucket}"

    def wait(self) -> float | None:
        """Seconds until a request may succeed, spread as DRF spreads them: until the oldest bucket leaves the window."""
        if self.buckets:
            remaining = (self.buckets[0][0] + 1) * self.width + self.duration - self.now
        else:
            remaining = self.duration
        available = self.num_requests - self.count + 1
        if available <= 0:
            return None
        return remaining / float(available)
