"""The vectorised rounding of the answers' numbers is Python's round(), bit for bit, on every kind of float."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from training.engine.numbers import json_numbers, round_like_python


def _bits(value: float) -> int:
    return struct.unpack("<q", struct.pack("<d", value))[0]


def _assert_like_round(values: np.ndarray, decimals: int) -> None:
    got = round_like_python(values, decimals)
    for value, rounded in zip(values.tolist(), got.tolist(), strict=True):
        expected = round(value, decimals)
        if math.isnan(expected):
            assert math.isnan(rounded), value
        else:
            # Bit for bit: the same double, and the same sign of zero.
            assert _bits(rounded) == _bits(expected), (value, rounded, expected)


def _halves(decimals: int, rng) -> np.ndarray:
    """Values whose decimal expansion ends in 5 at the first dropped digit, and their float neighbours."""
    n = rng.integers(-(10**7), 10**7, 4000)
    at = (n + 0.5) / 10.0**decimals
    exact = np.array([0.03125, 0.00005, 0.00015, 1.00005, 2.675, 0.125, 1e-4 / 2, 12345.67885])
    # Where scaling lands exactly on a half that the value itself is not on: numpy.round's errors.
    scaled_onto_half = np.array([83615902623.52534, 279630442892.04535, 305749346769.495, 1302843041.7502074, 13319888138.662323])
    at = np.concatenate([at, exact, -exact, scaled_onto_half, -scaled_onto_half])
    return np.concatenate([at, np.nextafter(at, np.inf), np.nextafter(at, -np.inf)])


@pytest.mark.parametrize("decimals", [0, 1, 4, 6, -1, 17])
def test_rounding_many_values_at_once_is_round_bit_for_bit(decimals):
    rng = np.random.default_rng(decimals + 100)
    magnitudes = 10.0 ** rng.uniform(-12, 14, 20000) * rng.choice([-1.0, 1.0], 20000)
    specials = np.array([0.0, -0.0, 1e-320, -1e-320, 5e-324, 2.0**50 / 10**decimals, 2.0**53, 1e16, 1e300, -1e308, 1.7976931348623157e308])
    everyday = np.round(rng.uniform(0, 500, 20000), 7)  # minutes as the engine's means produce them
    _assert_like_round(np.concatenate([magnitudes, specials, everyday, _halves(decimals, rng)]), decimals)


def test_nan_and_infinities_pass_through_and_become_none_in_an_answer():
    values = np.array([np.nan, np.inf, -np.inf, 1.23456789])
    rounded = round_like_python(values, 4)
    assert math.isnan(rounded[0]) and rounded[1] == np.inf and rounded[2] == -np.inf and rounded[3] == 1.2346
    assert json_numbers(values, 4) == [None, None, None, 1.2346]
    # Not rounding keeps the engine's own values and blanks NaN only.
    assert json_numbers(values) == [None, math.inf, -math.inf, 1.23456789]
    assert json_numbers(np.array([])) == [] and json_numbers(np.array([]), 4) == []


def test_an_answer_holds_python_floats():
    out = json_numbers(np.array([1.5, 2.25], dtype=np.float32), 1)
    assert out == [1.5, 2.2] and all(type(v) is float for v in out)
