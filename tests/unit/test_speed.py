"""Hand-worked speed metrics: wpm, raw_wpm, net_wpm, per-second WPM and consistency."""

import math

import numpy as np
import pytest

from app.analytics.speed import characters_wpm, hci_wpm, per_second_wpm, series_consistency
from tests.unit.test_metrics import analyse, series

# Presented "the cat"; typed t h e ␣ c x(wrong) ⌫ a t, at
#   0, 200, 400, 600, 1100, 1300, 1500, 1700, 2500 ms → n = 9 presses, S = 2.5 s, T = "the cat" (7 characters)
THE_CAT = [
    ("t", 0),
    ("h", 200),
    ("e", 400),
    (" ", 600),
    ("c", 1100),
    ("x", 1300),
    ("Backspace", 1500),
    ("a", 1700),
    ("t", 2500),
]


def test_hand_worked_speeds():
    m, _, analysis = analyse("the cat", THE_CAT)
    # wpm = (len(T) − 1) / S × 60 / 5 = 6 / 2.5 × 12 = 28.8
    assert m["wpm"] == pytest.approx(28.8)
    # raw: character presses t h e ␣ c x a t = 8 (the erased x counts, ⌫ does not) → 8 / 2.5 × 12 = 38.4
    assert m["raw_wpm"] == pytest.approx(38.4)
    # net: "the" = "the" with its space (P has one too) = 4, "cat" = "cat" = 3 → 7 / 2.5 × 12 = 33.6
    assert m["net_wpm"] == pytest.approx(33.6)


def test_hand_worked_per_second_wpm_and_consistency():
    m, _, analysis = analyse("the cat", THE_CAT)
    # S = 2500 ms → 2 whole seconds; the partial third second (the t at 2500) is dropped.
    #   second 0 [0, 1000): t h e ␣ = 4 characters → 4 × 12 = 48
    #   second 1 [1000, 2000): c x a = 3 (⌫ is no character) → 36
    assert series(analysis, "per_second_wpm") == [48.0, 36.0]
    # mean 42, population std 6 → cv = 1/7; consistency = 100 × (1 − tanh(cv + cv³/3 + cv⁵/5))
    cv = 1 / 7
    assert m["consistency"] == pytest.approx(100 * (1 - math.tanh(cv + cv**3 / 3 + cv**5 / 5)))
    assert m["consistency"] == pytest.approx(85.71, abs=0.01)  # tanh(0.14384) = 0.14286


def test_speed_functions_on_arrays():
    # T of 11 characters over 2000 ms: (11 − 1) / 2 s × 12 = 60; empty T → 0; S = 0 → undefined
    assert hci_wpm(np.array([11, 0, 5]), np.array([2000, 2000, 0])).tolist()[:2] == [60.0, 0.0]
    assert math.isnan(hci_wpm(np.array([5]), np.array([0]))[0])
    # 25 characters in 30 s: 25 / 5 words / 0.5 min = 10 WPM
    assert characters_wpm(np.array([25]), np.array([30_000]))[0] == pytest.approx(10.0)


def test_per_second_wpm_drops_the_partial_last_second_and_skips_named_keys():
    # Test 0: presses at 0 (a), 999 (b), 1000 (Shift), 1001 (c), 2000 (d): S = 2 s → seconds 0 and 1;
    #   second 0: a b = 2 → 24; second 1: c = 1 → 12 (Shift is no character); d at 2000 lies in second 2, dropped
    # Test 1: one press → S = 0 → no whole second
    downs = np.array([0, 999, 1000, 1001, 2000, 5000])
    is_char = np.array([True, True, False, True, True, True])
    offsets = np.array([0, 5, 6])
    values, series_offsets = per_second_wpm(downs, is_char, offsets, np.array([2000, 0]))
    assert values.tolist() == [24.0, 12.0] and series_offsets.tolist() == [0, 2, 2]
    # consistency of [24, 12]: mean 18, std 6 → cv 1/3
    #   → 100 × (1 − tanh(1/3 + 1/81 + 1/1215)) = 100 × (1 − tanh(0.3465)) ≈ 66.67
    cv = 1 / 3
    expected = 100 * (1 - math.tanh(cv + cv**3 / 3 + cv**5 / 5))
    consistency = series_consistency(values, series_offsets)
    assert consistency[0] == pytest.approx(expected) and math.isnan(consistency[1])
    assert expected == pytest.approx(66.67, abs=0.01)


def test_consistency_needs_two_seconds_with_characters():
    # [0, 0]: mean 0 → cv undefined; [30]: one second; [12, 12, 12]: cv 0 → 100
    values = np.array([0.0, 0.0, 30.0, 12.0, 12.0, 12.0])
    result = series_consistency(values, np.array([0, 2, 3, 6]))
    assert math.isnan(result[0]) and math.isnan(result[1]) and result[2] == 100.0
