import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.analytics.metrics import TestBatch, analyse_batch, analyse_test
from app.schemas import parse_submission
from tests.reference import reference_metrics


def make(text: str, strokes: list[tuple[str, int, int | None]]):
    return parse_submission(
        {
            "user_id": 1,
            "started_at": "2026-11-27T10:00:00Z",
            "text": text,
            "keystrokes": [{"key": k, "down": d, "up": u} for k, d, u in strokes],
        }
    )


# Presented "the"; typed t, g (wrong), Backspace, h, e.
#   presses n = 5; T = "the"; S = 0.6 s
#   wpm = (3 − 1) / 0.6 × 60 / 5 = 40
#   accuracy: character presses t g h e = 4, correct t h e = 3 → 0.75
#   uncorrected error rate: MSD("the", "the") = 0 → 0
#   kspc = 5 / 3;  mean IKI = (200 + 200 + 100 + 100) / 4 = 150
#   hold: (100 + 60 + 50 + 100) / 4 known releases = 77.5 (h has none)
#   rollover: h goes down at 500 < e's... no: each press after the first vs the previous release:
#     g 200 < t up 100? no; ⌫ 400 < 260? no; h 500 < 450? no; e 600 < h up unknown → no → 0
CORRECTED = [("t", 0, 100), ("g", 200, 260), ("Backspace", 400, 450), ("h", 500, None), ("e", 600, 700)]


def test_hand_worked_corrected_test():
    m = analyse_test(make("the", CORRECTED))
    assert m["wpm"] == pytest.approx(40.0)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["uncorrected_error_rate"] == 0.0
    assert m["kspc"] == pytest.approx(5 / 3)
    assert m["mean_iki_ms"] == pytest.approx(150.0)
    assert m["mean_hold_ms"] == pytest.approx(77.5)
    assert m["rollover_ratio"] == 0.0


def test_hand_worked_uncorrected_errors_and_rollover():
    # Presented "cat", typed c, u, t, s: T = "cuts".
    #   MSD("cat", "cuts") = 2 (substitute a→u, insert s); max length 4 → 0.5
    #   accuracy: c ✓, u ✗ (a expected), t ✓, s ✗ (beyond the text) → 2/4
    #   S = 0.3 s → wpm = (4 − 1) / 0.3 × 12 = 120;  kspc = 4/4 = 1;  mean IKI = 300/3 = 100
    #   rollover: u at 100 < c up 150 ✓; t at 200 < u up 180? no; s at 300 < t up 320 ✓ → 2/3
    #   hold = (150 + 80 + 120 + 50) / 4 = 100
    m = analyse_test(make("cat", [("c", 0, 150), ("u", 100, 180), ("t", 200, 320), ("s", 300, 350)]))
    assert m["uncorrected_error_rate"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["wpm"] == pytest.approx(120.0)
    assert m["kspc"] == pytest.approx(1.0)
    assert m["mean_iki_ms"] == pytest.approx(100.0)
    assert m["rollover_ratio"] == pytest.approx(2 / 3)
    assert m["mean_hold_ms"] == pytest.approx(100.0)


def test_named_keys_count_as_presses_but_not_character_presses():
    # Shift, H, i: 3 presses, T = "Hi" → kspc 1.5; accuracy 2/2; IKI (100 + 100)/2
    m = analyse_test(make("Hi", [("Shift", 0, 150), ("H", 100, 140), ("i", 200, 260)]))
    assert m["kspc"] == pytest.approx(1.5)
    assert m["accuracy"] == 1.0
    assert m["mean_iki_ms"] == pytest.approx(100.0)
    assert m["rollover_ratio"] == pytest.approx(1 / 2)  # H down at 100 before Shift's release at 150


def test_single_keystroke_has_zero_rates_instead_of_undefined():
    m = analyse_test(make("a", [("a", 0, None)]))
    assert m == {
        "wpm": 0.0,
        "accuracy": 1.0,
        "uncorrected_error_rate": 0.0,
        "kspc": 1.0,
        "mean_iki_ms": 0.0,
        "mean_hold_ms": 0.0,
        "rollover_ratio": 0.0,
    }


strokes_strategy = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", " ", "Backspace", "Shift"]), st.integers(0, 400), st.integers(-1, 300)),
    min_size=1,
    max_size=60,
)
text_strategy = st.text(alphabet="abc ", min_size=1, max_size=30)


def submission(text, raw):
    t, strokes = 0, []
    for key, gap, hold in raw:
        t += gap
        strokes.append({"key": key, "down": t, "up": None if hold < 0 else t + hold})
    return {"user_id": 1, "started_at": "2026-11-27T10:00:00Z", "text": text, "keystrokes": strokes}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(text_strategy, strokes_strategy), min_size=1, max_size=5))
def test_vectorized_batch_equals_the_slow_reference(cases):
    subs = [submission(text, raw) for text, raw in cases]
    analysis = analyse_batch(TestBatch.from_tests([parse_submission(s) for s in subs]))
    for i, s in enumerate(subs):
        expected = reference_metrics(s["text"], s["keystrokes"])
        assert analysis.transcription.transcribed[i] == expected.pop("transcribed")
        for name, value in expected.items():
            assert analysis.metrics[name][i] == pytest.approx(value), name


@settings(max_examples=100, deadline=None)
@given(text_strategy, strokes_strategy, st.integers(2, 5))
def test_scaling_all_times_by_k_divides_wpm_by_k(text, raw, k):
    base = submission(text, raw)
    scaled = copy.deepcopy(base)
    for stroke in scaled["keystrokes"]:
        stroke["down"] *= k
        stroke["up"] = None if stroke["up"] is None else stroke["up"] * k
    a, b = analyse_test(parse_submission(base)), analyse_test(parse_submission(scaled))
    assert b["wpm"] == pytest.approx(a["wpm"] / k)
    assert b["mean_iki_ms"] == pytest.approx(a["mean_iki_ms"] * k)
    assert b["accuracy"] == a["accuracy"]


@settings(max_examples=100, deadline=None)
@given(text_strategy, strokes_strategy)
def test_rates_stay_in_range(text, raw):
    m = analyse_test(parse_submission(submission(text, raw)))
    for name in ("accuracy", "uncorrected_error_rate", "rollover_ratio"):
        assert 0.0 <= m[name] <= 1.0
    assert m["wpm"] >= 0 and m["kspc"] >= 0


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="abcdefgh ", min_size=1, max_size=40), st.integers(30, 300))
def test_a_perfect_test_has_zero_error_rates(text, gap):
    strokes = [{"key": ch, "down": i * gap, "up": i * gap + 20} for i, ch in enumerate(text)]
    m = analyse_test(
        parse_submission({"user_id": 1, "started_at": "2026-11-27T10:00:00Z", "text": text, "keystrokes": strokes})
    )
    assert m["uncorrected_error_rate"] == 0.0
    assert m["accuracy"] == 1.0
    assert m["kspc"] == 1.0


def test_batch_of_many_equals_one_by_one():
    tests = [make("the", CORRECTED), make("ab", [("a", 0, 10), ("x", 50, 60)]), make("q", [("q", 5, None)])]
    batch = analyse_batch(TestBatch.from_tests(tests))
    for i, test in enumerate(tests):
        single = analyse_test(test)
        assert {k: v[i] for k, v in batch.metrics.items()} == pytest.approx(single)
    assert np.all(batch.iki_ms[[0, 5, 7]] == -1)  # the first press of every test has no IKI
