"""Hand-worked word-level analytics: char stats, net characters and burst speed per word."""

import math

import numpy as np
import pytest

from app.analytics.words import split_words
from tests.unit.test_metrics import analyse, series


def codes(text: str) -> np.ndarray:
    return np.array([ord(c) for c in text], dtype=np.int64)


def test_split_words_like_str_split_on_single_spaces():
    # "ab cd" → "ab", "cd"; "" → no word; " x " → "", "x", ""
    words = split_words(codes("ab cd" + " x "), np.array([5, 0, 3]))
    assert words.offsets.tolist() == [0, 2, 2, 5]
    assert words.start.tolist() == [0, 3, 5, 6, 8]
    assert words.length.tolist() == [2, 2, 0, 1, 0]
    assert words.spaces.tolist() == [1, 0, 2]


def test_hand_worked_char_stats():
    # Presented "the cat sat", typed t e h ␣ c a r t (no correction): T = "teh cart".
    #   word 0: "teh" vs "the": t ✓, e ≠ h ✗, h ≠ e ✗            → correct 1, incorrect 2
    #   T's space after word 0: P has a word 1 too                → correct 1
    #   word 1: "cart" vs "cat": c ✓ a ✓, r ≠ t ✗, t past "cat"    → correct 2, incorrect 1, extra 1
    #   P's word 2 "sat" never typed → missed 3; P has 2 spaces, T 1 → missed 1
    #   correct 1 + 1 + 2 = 4, incorrect 3, extra 1, missed 4
    #   (4 + 3 + 1 = 8 = len(T); 4 + 3 + 4 = 11 = len(P))
    strokes = [(k, i * 100) for i, k in enumerate("teh cart")]
    m, c, _ = analyse("the cat sat", strokes)
    assert [c[name] for name in ("chars_correct", "chars_incorrect", "chars_extra", "chars_missed")] == [4, 3, 1, 4]
    # no word of T equals its P word → net characters 0 → net_wpm 0
    assert m["net_wpm"] == 0.0


def test_hand_worked_extra_words_and_net_characters():
    # Presented "hi", typed "hi yo" at 0, 100, …, 400 ms (S = 0.4 s).
    #   word 0 "hi" = "hi" → correct 2; the space after it: P has no word 1 → extra 1; "yo": no P word → extra 2
    #   net: "hi" is correct, but P has no space after it → 2 characters → 2 / 0.4 s × 12 = 60
    m, c, _ = analyse("hi", [(k, i * 100) for i, k in enumerate("hi yo")])
    assert (c["chars_correct"], c["chars_incorrect"], c["chars_extra"], c["chars_missed"]) == (2, 0, 3, 0)
    assert m["net_wpm"] == pytest.approx(60.0)


def test_hand_worked_word_bursts():
    # Presented "Hi yo"; Shift 0, H 100, i 400, ␣ 600, y 900, o 1500.
    #   "Hi": its first character H was typed by press 1; the press before it is Shift at 0; last (i) at 400 →
    #     2 characters / 5 per 0.4 s = 0.4 words / (0.4 / 60) min = 60 WPM
    #   "yo": press before y is the space at 600; o at 1500 → 0.4 words / (0.9 / 60) min = 26.67 WPM
    _, _, analysis = analyse("Hi yo", [("Shift", 0), ("H", 100), ("i", 400), (" ", 600), ("y", 900), ("o", 1500)])
    assert series(analysis, "word_burst_wpm") == pytest.approx([60.0, 0.4 / (0.9 / 60)])


def test_word_burst_follows_the_surviving_characters():
    # Presented "ab"; a 0, x 100, ⌫ 300, b 700: T = "ab"; its first character is the first press → no press
    # before it → undefined. A second word typed after a correction: "ab cd" with c 1000, d 1200 after ␣ 800:
    #   "cd": press before c is ␣ at 800, d at 1200 → 2 / 5 / (0.4 / 60) = 60
    strokes = [("a", 0), ("x", 100), ("Backspace", 300), ("b", 700), (" ", 800), ("c", 1000), ("d", 1200)]
    _, _, analysis = analyse("ab cd", strokes)
    bursts = series(analysis, "word_burst_wpm")
    assert math.isnan(bursts[0]) and bursts[1] == pytest.approx(60.0)
