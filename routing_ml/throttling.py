"""The API's per-user rate limit, with a cost per request that does not grow with the rate.

DRF's `UserRateThrottle` keeps one timestamp per request of the window in the cache and
unpickles, scans, inserts at the front of and pickles that whole list on every request. At the
default `API_THROTTLE_RATE` of 100,000/hour an integration that uses its allowance carries up to
100,000 timestamps: measured 0.9 ms a request at 10,000 of them and ~7 ms at 100,000, more than a
one-item prediction.
"""

from __future__ import annotations

import math

from rest_framework import throttling

# The window is counted in this many buckets (one minute of an hourly rate, one second of a per-minute one).
BUCKETS = 60


class UserRateThrottle(throttling.UserRateThrottle):
    """DRF's per-user throttle (same scope, rate, cache key and Retry-After), counting the window in buckets.

    The cache holds `[[bucket start, requests], …]`, at most BUCKETS + 1 pairs, oldest first. A
    bucket is counted until it has wholly left the window, so the count may include requests up to
    one bucket older than the window and never misses one: no client gets more than the rate in any
    window (as before); one at its limit may wait up to 1/BUCKETS of the window longer.
    """

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        width = self.duration / BUCKETS
        horizon = self.now - self.duration
        self.buckets = [b for b in self._buckets(self.cache.get(self.key, []), width) if b[0] + width > horizon]
        self.count = sum(requests for _, requests in self.buckets)
        if self.count >= self.num_requests:
            return self.throttle_failure()
        start = math.floor(self.now / width) * width
        if self.buckets and self.buckets[-1][0] == start:
            self.buckets[-1][1] += 1
        else:
            self.buckets.append([start, 1])
        self.cache.set(self.key, self.buckets, self.duration)
        return True

    @staticmethod
    def _buckets(stored, width: float) -> list[list]:
        """The stored pairs; a list of timestamps left by DRF's own throttle (before an upgrade) is bucketed."""
        if not stored or isinstance(stored[0], list):
            return stored
        counts: dict[float, int] = {}
        for moment in sorted(stored):
            start = math.floor(moment / width) * width
            counts[start] = counts.get(start, 0) + 1
        return [[start, requests] for start, requests in counts.items()]

    def wait(self) -> float | None:
        """Seconds until a request may succeed, spread as DRF spreads them: until the oldest bucket leaves the window."""
        if self.buckets:
            remaining = self.buckets[0][0] + self.duration / BUCKETS + self.duration - self.now
        else:
            remaining = self.duration
        available = self.num_requests - self.count + 1
        if available <= 0:
            return None
        return remaining / float(available)
