"""Rounding many floats at once, to exactly what Python's `round(x, n)` gives each of them.

A 1,000-item prediction answers some 60,000 numbers, each rounded for the reader: one
`round()` call per value cost a request ~25 ms of CPU. `numpy.round` is fast but not the same
function: it scales, rounds and scales back, and the scaling's own rounding error can move a
value that lies next to a half across it. Here the fast path is taken only where that cannot
happen, and the few values next to a half are left to `round()` itself, so every value is
bit for bit the one `round()` returns.
"""

from __future__ import annotations

import numpy as np


def round_like_python(values: np.ndarray, decimals: int) -> np.ndarray:
    """`[round(v, decimals) for v in values]` as float64, bit for bit (NaN and ±inf pass through).

    Why it is exact: for |v·10^d| < 2^50, `rint(fl(v·10^d))` is the correctly rounded integer n
    unless the exact product lies within an ulp of a half, and `n / 10^d` is then the double
    nearest n·10^-d, which is what round() returns. Values within two ulps of a half are rounded
    by round() itself: that takes in every value past 2^50 after scaling too, whose ulp is ≥ 1/4.
    """
    values = np.asarray(values, dtype=np.float64)
    if not 0 <= decimals <= 15:  # 10**d is an exact double up to 22; past 15 digits nothing is left to round cheaply
        return np.array([round(v, decimals) for v in values.tolist()], dtype=np.float64)
    scale = 10.0**decimals
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = values * scale
        out = np.rint(scaled) / scale
        finite = np.isfinite(scaled)
        near_half = np.abs(scaled - np.floor(scaled) - 0.5) <= 2.0 * np.abs(np.spacing(scaled))
        slow = np.flatnonzero(np.isfinite(values) & (~finite | near_half))
    out[~np.isfinite(values)] = values[~np.isfinite(values)]
    for i in slow.tolist():
        out[i] = round(float(values[i]), decimals)
    return out


def json_numbers(values: np.ndarray, decimals: int | None = None) -> list[float | None]:
    """Python floats for a JSON answer: rounded like round(v, decimals) if given; NaN (and ±inf when rounding) → None."""
    values = np.asarray(values, dtype=np.float64)
    if decimals is None:
        return [None if v != v else v for v in values.tolist()]  # v != v is the NaN test
    rounded = round_like_python(values, decimals)
    missing = ~np.isfinite(rounded)
    if not missing.any():
        return rounded.tolist()
    return [None if gone else v for v, gone in zip(rounded.tolist(), missing.tolist(), strict=True)]
