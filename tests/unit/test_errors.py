"""Hand-worked error metrics: error rates from C/INF/IF, accuracy, KSPC/ECPC, error patterns and locations."""

import math

import pytest

from app.analytics.layouts import FINGERS
from tests.unit.test_metrics import analyse
from tests.unit.test_speed import THE_CAT

PATTERNS = ("transpositions", "doubled_letters", "dropped_letters", "error_bursts")


def typed(keys: list[str], gap: int = 100) -> list[tuple[str, int]]:
    return [(key, i * gap) for i, key in enumerate(keys)]


def test_hand_worked_corrected_errors():
    # THE_CAT: presented "the cat", T = "the cat"; 8 character presses, one (x) erased; one ⌫; 9 presses
    #   INF = MSD = 0, C = 7 − 0 = 7, IF = 1 → UER 0/7 = 0, CER = 1 / (7 + 0 + 1) = 0.125, TER = 0.125
    #   accuracy: 7 of 8 character presses correct = 0.875;  kspc = 9/7;  corrections = 1 → ecpc = 1/7
    m, c, _ = analyse("the cat", THE_CAT)
    assert (c["c_correct"], c["inf"], c["if_"], c["corrections"]) == (7, 0, 1, 1)
    assert m["uncorrected_error_rate"] == 0.0
    assert m["corrected_error_rate"] == pytest.approx(0.125) and m["total_error_rate"] == pytest.approx(0.125)
    assert m["accuracy"] == pytest.approx(0.875)
    assert m["kspc"] == pytest.approx(9 / 7) and m["ecpc"] == pytest.approx(1 / 7)


def test_hand_worked_fixed_and_unfixed_errors_together():
    # Presented "abc"; typed a x ⌫ y c → T = "ayc"
    #   INF = MSD("abc", "ayc") = 1, C = 3 − 1 = 2, IF = 1 (x) → C + INF + IF = 4
    #   UER = 1 / 3, CER = 1 / 4, TER = (1 + 1) / 4 = 0.5
    #   accuracy: a ✓, x ✗, y ✗ (b expected), c ✓ → 2/4;  Delete also counts as a correction → corrections 2
    #   error bursts: x and y are both wrong but the ⌫ between them ends the run → 0
    m, c, _ = analyse("abc", typed(["a", "x", "Backspace", "y", "Delete", "c"]))
    assert (c["c_correct"], c["inf"], c["if_"], c["corrections"]) == (2, 1, 1, 2)
    assert m["uncorrected_error_rate"] == pytest.approx(1 / 3)
    assert m["corrected_error_rate"] == pytest.approx(1 / 4)
    assert m["total_error_rate"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["ecpc"] == pytest.approx(2 / 3)  # 2 corrections / len("ayc")
    assert c["error_bursts"] == 0


def pattern_counts(text: str, keys: list[str]) -> tuple[int, ...]:
    _, c, _ = analyse(text, typed(keys))
    return tuple(c[name] for name in PATTERNS)


def test_hand_worked_transposition():
    # Presented "the", typed t e h: at position 1 the e is P[2] ≠ P[1] and the next character press types P[1]
    # = h at position 2 → one transposition (not a dropped letter). e and h are both wrong → one error burst.
    assert pattern_counts("the", ["t", "e", "h"]) == (1, 0, 0, 1)


def test_hand_worked_doubled_letters():
    # Presented "cat", typed c a a t: the second a (position 2) repeats the press before it, which typed P[1] =
    # a, where P[2] = t → doubled. The t at position 3 (past the end) follows an a, not a t → not doubled.
    # a (position 2) and t (position 3) are both wrong → one error burst.
    assert pattern_counts("cat", ["c", "a", "a", "t"]) == (0, 1, 0, 1)
    # "catt": the second t, past the end of "cat", repeats the t before it → doubled; no burst (one wrong press)
    assert pattern_counts("cat", ["c", "a", "t", "t"]) == (0, 1, 0, 0)


def test_hand_worked_dropped_letters():
    # Presented "cat", typed c t: t at position 1 types P[2] ≠ P[1] = a right after a correct c → dropped
    assert pattern_counts("cat", ["c", "t"]) == (0, 0, 1, 0)
    # Presented "abcd", typed a c d: c at 1 is the drop; d at 2 types P[3] too, but the press before it (c)
    # was wrong: the typist is one step out, not dropping again → still 1. c and d are both wrong → 1 burst.
    assert pattern_counts("abcd", ["a", "c", "d"]) == (0, 0, 1, 1)


def test_hand_worked_error_bursts():
    # Presented "abcd"; typed a x y ⌫ ⌫ b z Shift W q:
    #   a ✓, x ✗, y ✗ → run of 2 → burst 1; ⌫ ends it; b ✓ (position 1); z ✗, W ✗ (Shift between does not end
    #   the run), q ✗ (past the end) → run of 3 → burst 2
    keys = ["a", "x", "y", "Backspace", "Backspace", "b", "z", "Shift", "W", "q"]
    assert pattern_counts("abcd", keys) == (0, 0, 0, 2)


def test_hand_worked_errors_by_finger_hand_and_row():
    # Presented "qa 1", typed w s x 2: all four wrong, located by the presented keys.
    #   qwerty: q left pinky, top row; a left pinky, home row; space thumb, no hand, space row;
    #           1 left pinky, number row → pinky 3, thumb 1; left hand 3; rows number 1, top 1, home 1, space 1
    _, _, analysis = analyse("qa 1", typed(["w", "s", "x", "2"]))
    finger = dict(zip(FINGERS, analysis.errors_by_finger[0].tolist()))
    assert finger == {name: 0 for name in FINGERS} | {"left_pinky": 3, "thumb": 1}
    assert analysis.errors_by_hand[0].tolist() == [3, 0]
    assert analysis.errors_by_row[0].tolist() == [1, 1, 1, 0, 1]
    #   dvorak: q sits on the bottom row under the left ring finger → pinky 2, ring 1, thumb 1;
    #           rows number 1, top 0, home 1, bottom 1, space 1
    _, _, analysis = analyse("qa 1", typed(["w", "s", "x", "2"]), layout="dvorak")
    finger = dict(zip(FINGERS, analysis.errors_by_finger[0].tolist()))
    assert finger == {name: 0 for name in FINGERS} | {"left_pinky": 2, "left_ring": 1, "thumb": 1}
    assert analysis.errors_by_hand[0].tolist() == [3, 0]
    assert analysis.errors_by_row[0].tolist() == [1, 0, 1, 1, 1]


def test_errors_without_a_key_are_not_located():
    # Presented "é" (no key on qwerty), typed x, then y past the end of the text: 2 wrong presses, none located
    m, _, analysis = analyse("é", typed(["x", "y"]))
    assert m["accuracy"] == 0.0
    assert not analysis.errors_by_finger.any() and not analysis.errors_by_row.any()


def test_uncorrected_errors_only():
    # Presented "cat", typed c u t s: T = "cuts"; INF = MSD = 2, C = max(3, 4) − 2 = 2, IF = 0
    #   UER = 2/4 = 0.5, CER = 0, TER = 2/4 = 0.5
    m, c, _ = analyse("cat", typed(["c", "u", "t", "s"]))
    assert (c["c_correct"], c["inf"], c["if_"]) == (2, 2, 0)
    assert (m["uncorrected_error_rate"], m["corrected_error_rate"], m["total_error_rate"]) == (0.5, 0.0, 0.5)
    assert not math.isnan(m["ecpc"]) and m["ecpc"] == 0.0
