"""Hand-worked rhythm metrics: IKI mean, median, cv, key consistency, slowdown and hesitations."""

import math

import numpy as np
import pytest

from app.analytics.rhythm import consistency_score, grouped_cv, grouped_median, segment_sum
from tests.unit.test_metrics import analyse
from tests.unit.test_speed import THE_CAT


def kogasa(cv: float) -> float:
    return 100 * (1 - math.tanh(cv + cv**3 / 3 + cv**5 / 5))


def test_hand_worked_iki_metrics():
    # THE_CAT presses at 0, 200, 400, 600, 1100, 1300, 1500, 1700, 2500 → IKIs 200 200 200 500 200 200 200 800
    #   mean = 2500 / 8 = 312.5; sorted 200×6, 500, 800 → median = (200 + 200) / 2 = 200
    #   squared deviations from 312.5: 6 × 112.5² + 187.5² + 487.5² = 75937.5 + 35156.25 + 237656.25 = 348750
    #   population std = √(348750 / 8) = 208.79 → cv = 208.79 / 312.5 = 0.6681
    #   key consistency = 100 × (1 − tanh(0.6681 + 0.6681³/3 + 0.6681⁵/5)) = 100 × (1 − tanh(0.7942)) ≈ 33.93
    #   thirds of 8 IKIs: 2 each; first 200, 200 (mean 200), last 200, 800 (mean 500) → slowdown 500/200 − 1 = 1.5
    m, _, _ = analyse("the cat", THE_CAT)
    cv = math.sqrt(348750 / 8) / 312.5
    assert m["mean_iki_ms"] == pytest.approx(312.5)
    assert m["median_iki_ms"] == pytest.approx(200.0)
    assert m["iki_cv"] == pytest.approx(cv) and cv == pytest.approx(0.6681, abs=1e-4)
    assert m["key_consistency"] == pytest.approx(kogasa(cv)) and m["key_consistency"] == pytest.approx(33.93, abs=0.01)
    assert m["slowdown"] == pytest.approx(1.5)


def test_hand_worked_hesitations():
    # Presented "Hi yo"; Shift 0, H 100, i 300, ␣ 500, y 3000, x 3200 (o expected), ⌫ 4000, o 4100.
    #   IKIs 100 200 200 2500 200 800 100 → sorted 100 100 200 200 200 800 2500 → median 200, threshold 3 × 200 = 600
    #   hesitations: y (2500) and ⌫ (800) → 2
    #   word start: y — the last character press before it is the space → 1 (⌫ never counts as a word start)
    #   after an error: ⌫ follows x, an incorrect character press → 1
    strokes = [("Shift", 0), ("H", 100), ("i", 300), (" ", 500), ("y", 3000), ("x", 3200), ("Backspace", 4000)]
    _, c, _ = analyse("Hi yo", [*strokes, ("o", 4100)])
    assert (c["hesitations"], c["hesitations_word_start"], c["hesitations_after_error"]) == (2, 1, 1)


def test_a_pause_over_two_seconds_is_a_hesitation_even_below_three_medians():
    # Presented "a Bc"; a 0, ␣ 1000, Shift 3100, B 3200, c 4200 → IKIs 1000 2100 100 1000, median 1000
    #   Shift's 2100 ms < 3 × 1000 but > 2000 → 1 hesitation; the Shift comes right after the space → word start
    _, c, _ = analyse("a Bc", [("a", 0), (" ", 1000), ("Shift", 3100), ("B", 3200), ("c", 4200)])
    assert (c["hesitations"], c["hesitations_word_start"], c["hesitations_after_error"]) == (1, 1, 0)


def test_the_first_press_of_a_test_is_a_word_start_but_never_hesitates():
    # Presented "ab"; a 0, b 5000: b's IKI 5000 > 2000 → hesitation; the last character press before b is a →
    # not a word start. The first press a has no IKI and cannot hesitate.
    _, c, _ = analyse("ab", [("a", 0), ("b", 5000)])
    assert (c["hesitations"], c["hesitations_word_start"]) == (1, 0)


def test_hand_worked_slowdown_and_too_short_tests():
    # presses at 0, 100, 200, 300, 500, 700, 900 → IKIs 100 100 100 200 200 200; thirds of 2:
    #   first 100, 100; last 200, 200 → 200 / 100 − 1 = 1.0
    m, _, _ = analyse("abcdefg", [(k, t) for k, t in zip("abcdefg", (0, 100, 200, 300, 500, 700, 900))])
    assert m["slowdown"] == pytest.approx(1.0)
    # speeding up: IKIs 300 100 100 → thirds of 1: 100 / 300 − 1 = −2/3
    m, _, _ = analyse("abcd", [("a", 0), ("b", 300), ("c", 400), ("d", 500)])
    assert m["slowdown"] == pytest.approx(-2 / 3)
    # two IKIs: no third → undefined; so are the cv and key consistency of one IKI
    m, _, _ = analyse("abc", [("a", 0), ("b", 100), ("c", 300)])
    assert math.isnan(m["slowdown"])
    m, _, _ = analyse("ab", [("a", 0), ("b", 100)])
    assert m["median_iki_ms"] == 100.0 and math.isnan(m["iki_cv"]) and math.isnan(m["key_consistency"])


def test_grouped_median_and_cv():
    # group 0: 300, 100 → median (100 + 300) / 2 = 200; cv: mean 200, std 100 → 0.5
    # group 1: 5, 1, 3 → median 3; group 2: empty → NaN
    values = np.array([300, 100, 5, 1, 3])
    offsets = np.array([0, 2, 5, 5])
    median = grouped_median(values, offsets)
    assert median[:2].tolist() == [200.0, 3.0] and math.isnan(median[2])
    assert grouped_cv(values, offsets)[0] == pytest.approx(0.5)
    # consistency of cv 0.5: 100 × (1 − tanh(0.5 + 0.041667 + 0.00625)) = 100 × (1 − tanh(0.547917)) ≈ 50.11
    assert consistency_score(np.array([0.5]))[0] == pytest.approx(50.11, abs=0.01)
    assert consistency_score(np.array([0.0]))[0] == 100.0


def test_segment_sum_handles_empty_segments_anywhere():
    # segments [], [1, 2], [], [3], [] of 1 2 3 → 0, 3, 0, 3, 0
    offsets = np.array([0, 0, 2, 2, 3, 3])
    assert segment_sum(np.array([1, 2, 3]), offsets).tolist() == [0, 3, 0, 3, 0]
    assert segment_sum(np.array([True, False, True]), offsets, np.int64).tolist() == [0, 1, 0, 1, 0]
    assert segment_sum(np.array([], dtype=float), np.array([0, 0])).tolist() == [0.0]
