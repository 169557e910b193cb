"""analyse_batch as a whole: its contract, hand-worked tests, edge cases, properties and the slow reference.

Hand-worked examples per family of metrics live beside their modules' tests (test_speed, test_rhythm,
test_errors, test_words, test_health); the helpers `make` and `analyse` here are shared with them.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.analytics.layouts import FINGERS
from app.analytics.metrics import (
    COUNT_NAMES,
    METRIC_NAMES,
    SERIES_NAMES,
    BatchAnalysis,
    TestBatch,
    analyse_batch,
    analyse_test,
)
from app.schemas import LAYOUTS, TypingTest, parse_submission
from tests.reference import reference_analysis, reference_metrics

NAN = math.nan


def make(text: str, strokes: list[tuple], layout: str = "qwerty") -> TypingTest:
    """A validated test from (key, down) or (key, down, up) tuples."""
    keystrokes = [{"key": s[0], "down": s[1], "up": s[2] if len(s) > 2 else None} for s in strokes]
    return parse_submission(
        {
            "user_id": 1,
            "started_at": "2026-11-27T10:00:00Z",
            "text": text,
            "layout": layout,
            "keystrokes": keystrokes,
        }
    )


def analyse(text: str, strokes: list[tuple], layout: str = "qwerty") -> tuple[dict, dict, BatchAnalysis]:
    """(metrics, counts, analysis) of one test."""
    analysis = analyse_batch(TestBatch.from_tests([make(text, strokes, layout)]))
    metrics = {name: float(values[0]) for name, values in analysis.metrics.items()}
    counts = {name: int(values[0]) for name, values in analysis.counts.items()}
    return metrics, counts, analysis


def series(analysis: BatchAnalysis, name: str, test: int = 0) -> list[float]:
    values, offsets = analysis.series[name]
    return values[offsets[test] : offsets[test + 1]].tolist()


def same(a: float, b: float, abs_tol: float = 1e-9) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=abs_tol)


# --- the contract ---------------------------------------------------------------------------------------


def test_the_batch_carries_every_named_metric_count_series_and_error_location():
    tests = [make("the", CORRECTED), make("ab", [("a", 0, 10), ("x", 50, 60)], layout="dvorak")]
    analysis = analyse_batch(TestBatch.from_tests(tests))
    assert tuple(analysis.metrics) == METRIC_NAMES and len(METRIC_NAMES) == 23
    assert tuple(analysis.counts) == COUNT_NAMES and len(COUNT_NAMES) == 15
    assert tuple(analysis.series) == SERIES_NAMES
    for values in analysis.metrics.values():
        assert values.dtype == np.float64 and values.shape == (2,)
    for values in analysis.counts.values():
        assert values.dtype == np.int64 and values.shape == (2,)
    for name, width in (("errors_by_finger", len(FINGERS)), ("errors_by_hand", 2), ("errors_by_row", 5)):
        cells = getattr(analysis, name)
        assert cells.dtype == np.int64 and cells.shape == (2, width)
    for values, offsets in analysis.series.values():
        assert values.dtype == np.float64 and offsets.dtype == np.int64 and offsets.shape == (3,)
    assert TestBatch.from_tests(tests).layouts == ["qwerty", "dvorak"]


def test_a_batch_without_layouts_is_typed_on_qwerty():
    test = make("ab", [("a", 0), ("b", 100)])
    batch = TestBatch(np.array([0, 2]), test.key_codes, test.down_ms, test.up_ms, [test.text])
    assert batch.layouts == ["qwerty"]
    assert analyse_batch(batch).metrics["wpm"][0] == pytest.approx(120.0)  # (2 − 1) / 0.1 s × 12


# --- hand-worked: the skeleton metrics, now NaN where undefined ------------------------------------------

# Presented "the"; typed t, g (wrong), Backspace, h, e.
#   presses n = 5; T = "the"; S = 0.6 s
#   wpm = (3 − 1) / 0.6 × 60 / 5 = 40
#   accuracy: character presses t g h e = 4, correct t h e = 3 → 0.75
#   uncorrected error rate: MSD("the", "the") = 0 → 0
#   kspc = 5 / 3;  mean IKI = (200 + 200 + 100 + 100) / 4 = 150
#   hold: (100 + 60 + 50 + 100) / 4 known releases = 77.5 (h has none)
#   rollover: each press after the first vs the previous release:
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


# --- edge cases: defined values, NaN where undefined, never an exception ---------------------------------


def test_one_keystroke():
    # Presented "a", typed a (no release): S = 0, no IKI.
    #   speed over S (wpm, raw, net) undefined; accuracy 1/1; C = 1, INF = 0, IF = 0 → all error rates 0
    #   kspc = 1/1, ecpc = 0/1; no IKI → IKI metrics, rollover, slowdown, rhythm undefined; no release → hold
    #   undefined; 0 whole seconds → consistency undefined
    #   health: only accuracy (TER 0 → 100) is defined, fewer than 3 components → health_score undefined
    m, c, analysis = analyse("a", [("a", 0)])
    defined = {
        "accuracy": 1.0,
        "uncorrected_error_rate": 0.0,
        "corrected_error_rate": 0.0,
        "total_error_rate": 0.0,
        "kspc": 1.0,
        "ecpc": 0.0,
        "health_accuracy": 100.0,
    }
    for name in METRIC_NAMES:
        assert same(m[name], defined.get(name, NAN)), name
    assert c == {name: 0 for name in COUNT_NAMES} | {"chars_correct": 1, "c_correct": 1}
    assert series(analysis, "per_second_wpm") == []
    assert len(series(analysis, "word_burst_wpm")) == 1 and math.isnan(series(analysis, "word_burst_wpm")[0])


def test_only_backspaces():
    # Presented "abc", typed ⌫ ⌫ ⌫ at 0, 100, 200: T = "" and no character press.
    #   wpm: T empty → 0 words over S = 0.2 s → 0; raw 0/0.2 s = 0; net 0
    #   accuracy: no character press → NaN; kspc, ecpc: len(T) = 0 → NaN
    #   INF = MSD("abc", "") = 3, C = 3 − 3 = 0, IF = 0 → UER 3/3 = 1, CER 0/3 = 0, TER 3/3 = 1
    #   IKIs 100, 100: mean = median = 100, cv = 0 → key consistency 100; thirds of 2 IKIs: 0 → slowdown NaN
    #   char stats: nothing typed → missed 3
    m, c, _ = analyse("abc", [("Backspace", 0), ("Backspace", 100), ("Backspace", 200)])
    assert (m["wpm"], m["raw_wpm"], m["net_wpm"]) == (0.0, 0.0, 0.0)
    assert all(math.isnan(m[name]) for name in ("accuracy", "kspc", "ecpc", "slowdown", "consistency"))
    assert (m["uncorrected_error_rate"], m["corrected_error_rate"], m["total_error_rate"]) == (1.0, 0.0, 1.0)
    assert (m["mean_iki_ms"], m["median_iki_ms"], m["iki_cv"], m["key_consistency"]) == (100.0, 100.0, 0.0, 100.0)
    assert (c["c_correct"], c["inf"], c["if_"], c["corrections"], c["chars_missed"]) == (0, 3, 0, 3, 3)
    assert not math.isnan(m["health_score"])


def test_all_keys_wrong():
    # Presented "abc", typed x y z at 0, 100, 200 (qwerty).
    #   accuracy 0/3; INF = 3 (three substitutions), C = 0, IF = 0 → UER = TER = 1, CER = 0
    #   char stats: 3 incorrect; one error burst (x y z in a row)
    #   located by the presented keys a, b, c: fingers left pinky (a), left index (b), left middle (c);
    #   all left hand; rows: home (a), bottom (b, c)
    m, c, analysis = analyse("abc", [("x", 0), ("y", 100), ("z", 200)])
    assert m["accuracy"] == 0.0
    assert (m["uncorrected_error_rate"], m["corrected_error_rate"], m["total_error_rate"]) == (1.0, 0.0, 1.0)
    assert (c["chars_incorrect"], c["error_bursts"], c["inf"], c["c_correct"]) == (3, 1, 3, 0)
    assert m["net_wpm"] == 0.0
    finger = dict(zip(FINGERS, analysis.errors_by_finger[0].tolist()))
    assert (finger["left_pinky"], finger["left_index"], finger["left_middle"]) == (1, 1, 1)
    assert analysis.errors_by_hand[0].tolist() == [3, 0]
    assert analysis.errors_by_row[0].tolist() == [0, 0, 1, 2, 0]


def test_only_named_keys():
    # Presented "hi", typed Shift, Enter, Tab at 0, 100, 200: T = "", no character press.
    #   wpm 0, raw 0, net 0; accuracy, kspc, ecpc NaN; INF = 2, C = 0 → UER = TER = 1
    m, c, analysis = analyse("hi", [("Shift", 0), ("Enter", 100), ("Tab", 200)])
    assert (m["wpm"], m["raw_wpm"], m["net_wpm"]) == (0.0, 0.0, 0.0)
    assert math.isnan(m["accuracy"]) and math.isnan(m["kspc"])
    assert m["total_error_rate"] == 1.0 and c["chars_missed"] == 2
    assert series(analysis, "word_burst_wpm") == []


def test_empty_batch_and_a_test_without_keystrokes():
    empty = analyse_batch(TestBatch.from_tests([]))
    assert all(values.shape == (0,) for values in empty.metrics.values())
    assert empty.errors_by_finger.shape == (0, 9)
    # A test with no keystrokes (not accepted by the API, but a batch can hold one): everything undefined
    # that needs a press, the text all missed.
    test = make("ab", [("a", 0)])
    batch = TestBatch(np.array([0, 0, 1]), test.key_codes, test.down_ms, test.up_ms, ["ab", "ab"])
    analysis = analyse_batch(batch)
    assert math.isnan(analysis.metrics["wpm"][0]) and analysis.counts["chars_missed"][0] == 2
    assert analysis.metrics["total_error_rate"][0] == 1.0


# --- properties -------------------------------------------------------------------------------------------

KEYS = ["a", "b", "c", " ", "é", "Backspace", "Backspace", "Shift", "Delete"]
gaps = st.one_of(st.integers(0, 400), st.integers(400, 2600))
strokes_strategy = st.lists(
    st.tuples(st.sampled_from(KEYS), gaps, st.integers(-1, 300)),
    min_size=1,
    max_size=60,
)
text_strategy = st.text(alphabet="abc ", min_size=1, max_size=30)


def submission(text: str, raw: list[tuple[str, int, int]], layout: str = "qwerty") -> dict[str, Any]:
    t, strokes = 0, []
    for key, gap, hold in raw:
        t += gap
        strokes.append({"key": key, "down": t, "up": None if hold < 0 else t + hold})
    return {
        "user_id": 1,
        "started_at": "2026-11-27T10:00:00Z",
        "text": text,
        "layout": layout,
        "keystrokes": strokes,
    }


def assert_matches_reference(analysis: BatchAnalysis, i: int, expected: dict[str, Any]) -> None:
    assert analysis.transcription.transcribed[i] == expected["transcribed"]
    for name in METRIC_NAMES:
        # The engine's normal CDF is a 1.5e-7 approximation of erf: health is compared to 1e-4 points.
        tolerance = 1e-4 if name.startswith("health") else 1e-9
        assert same(float(analysis.metrics[name][i]), expected["metrics"][name], tolerance), name
    assert {name: int(values[i]) for name, values in analysis.counts.items()} == expected["counts"]
    for name in SERIES_NAMES:
        got = series(analysis, name, i)
        assert len(got) == len(expected["series"][name]), name
        assert all(same(a, b) for a, b in zip(got, expected["series"][name])), name
    for name in ("errors_by_finger", "errors_by_hand", "errors_by_row"):
        assert getattr(analysis, name)[i].tolist() == expected[name], name


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(text_strategy, strokes_strategy, st.sampled_from(LAYOUTS)), min_size=1, max_size=5))
def test_vectorized_batch_equals_the_slow_reference(cases):
    subs = [submission(text, raw, layout) for text, raw, layout in cases]
    analysis = analyse_batch(TestBatch.from_tests([parse_submission(s) for s in subs]))
    for i, s in enumerate(subs):
        assert_matches_reference(analysis, i, reference_analysis(s["text"], s["keystrokes"], s["layout"]))


@settings(max_examples=100, deadline=None)
@given(
    st.text(alphabet="the cat", min_size=1, max_size=20),
    st.lists(st.sampled_from("the cat") | st.just("Backspace"), max_size=40),
)
def test_error_patterns_equal_the_reference_on_near_miss_typing(text, noise):
    # Typing the text with random insertions of its own letters makes transpositions, doubled and dropped
    # letters far more often than uniform random keys.
    keys = [ch for pair in zip(text, noise) for ch in pair] + list(text[len(noise) :])
    raw = [(key, 120, 80) for key in keys]
    s = submission(text, raw)
    analysis = analyse_batch(TestBatch.from_tests([parse_submission(s)]))
    assert_matches_reference(analysis, 0, reference_analysis(text, s["keystrokes"]))


def scaled(sub: dict[str, Any], k: int) -> dict[str, Any]:
    out = copy.deepcopy(sub)
    for stroke in out["keystrokes"]:
        stroke["down"] *= k
        stroke["up"] = None if stroke["up"] is None else stroke["up"] * k
    return out


def approx_nan(value: float, abs_tol: float = 1e-12):
    return pytest.approx(value, nan_ok=True, abs=abs_tol)


@settings(max_examples=100, deadline=None)
@given(text_strategy, strokes_strategy, st.integers(2, 5))
def test_scaling_all_times_by_k_divides_speeds_by_k(text, raw, k):
    base = submission(text, raw)
    _, a_counts, a = analyse(text, [(s["key"], s["down"], s["up"]) for s in base["keystrokes"]])
    _, b_counts, b = analyse(text, [(s["key"], s["down"], s["up"]) for s in scaled(base, k)["keystrokes"]])
    for name in ("wpm", "raw_wpm", "net_wpm"):
        assert b.metrics[name][0] == approx_nan(a.metrics[name][0] / k), name
    for name in ("mean_iki_ms", "median_iki_ms", "mean_hold_ms"):
        assert b.metrics[name][0] == approx_nan(a.metrics[name][0] * k), name
    for name in ("accuracy", "uncorrected_error_rate", "total_error_rate", "kspc", "ecpc", "iki_cv", "slowdown"):
        assert b.metrics[name][0] == approx_nan(a.metrics[name][0]), name
    assert series(b, "word_burst_wpm") == approx_nan([v / k for v in series(a, "word_burst_wpm")])
    for name in ("chars_correct", "chars_missed", "inf", "if_", "transpositions", "dropped_letters", "error_bursts"):
        assert b_counts[name] == a_counts[name], name


@settings(max_examples=150, deadline=None)
@given(text_strategy, strokes_strategy)
def test_rates_stay_in_range_and_health_in_0_100(text, raw):
    m = analyse_test(parse_submission(submission(text, raw)))
    for name in ("accuracy", "uncorrected_error_rate", "corrected_error_rate", "total_error_rate", "rollover_ratio"):
        assert math.isnan(m[name]) or 0.0 <= m[name] <= 1.0, name
    for name in METRIC_NAMES:
        if name.startswith("health") or name.endswith("consistency"):
            assert math.isnan(m[name]) or 0.0 <= m[name] <= 100.0, name
    for name in ("wpm", "raw_wpm", "net_wpm", "kspc", "ecpc", "mean_iki_ms", "median_iki_ms", "iki_cv"):
        assert math.isnan(m[name]) or m[name] >= 0, name
    assert m["net_wpm"] <= m["raw_wpm"] or math.isnan(m["raw_wpm"])


@settings(max_examples=100, deadline=None)
@given(text_strategy, strokes_strategy)
def test_char_stats_add_up_to_both_texts(text, raw):
    _, c, analysis = analyse(text, [(k, i * 100, None) for i, (k, _, _) in enumerate(raw)])
    transcribed = analysis.transcription.transcribed[0]
    assert c["chars_correct"] + c["chars_incorrect"] + c["chars_extra"] == len(transcribed)
    assert c["chars_correct"] + c["chars_incorrect"] + c["chars_missed"] == len(text)
    assert c["c_correct"] + c["inf"] == max(len(text), len(transcribed))
    hesitations = c["hesitations"]
    assert 0 <= c["hesitations_word_start"] <= hesitations and 0 <= c["hesitations_after_error"] <= hesitations


ERROR_COUNTS = ("chars_incorrect", "chars_extra", "chars_missed", "inf", "if_", "corrections", "transpositions")
ERROR_COUNTS += ("doubled_letters", "dropped_letters", "error_bursts", "hesitations_after_error")


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="abcdefgh ", min_size=1, max_size=40), st.integers(30, 300), st.sampled_from(LAYOUTS))
def test_a_perfect_test_has_zero_error_rates_and_error_counts(text, gap, layout):
    m, c, analysis = analyse(text, [(ch, i * gap, i * gap + 20) for i, ch in enumerate(text)], layout)
    assert m["uncorrected_error_rate"] == m["corrected_error_rate"] == m["total_error_rate"] == 0.0
    assert m["accuracy"] == 1.0 and m["kspc"] == 1.0 and m["ecpc"] == 0.0
    assert m["net_wpm"] == approx_nan(m["raw_wpm"])  # every typed character is in a correct word
    assert all(c[name] == 0 for name in ERROR_COUNTS)
    assert c["chars_correct"] == c["c_correct"] == len(text)
    for name in ("errors_by_finger", "errors_by_hand", "errors_by_row"):
        assert not getattr(analysis, name).any()
    assert m["health_accuracy"] == 100.0


def test_batch_of_many_equals_one_by_one():
    tests = [make("the", CORRECTED), make("ab", [("a", 0, 10), ("x", 50, 60)]), make("q", [("q", 5, None)])]
    batch = analyse_batch(TestBatch.from_tests(tests))
    for i, test in enumerate(tests):
        single = analyse_test(test)
        assert {k: v[i] for k, v in batch.metrics.items()} == pytest.approx(single, nan_ok=True)
    assert np.all(batch.iki_ms[[0, 5, 7]] == -1)  # the first press of every test has no IKI


def test_reference_metrics_keeps_its_keys():
    expected = reference_metrics("the", [{"key": k, "down": d, "up": u} for k, d, u in CORRECTED])
    assert {"transcribed", *METRIC_NAMES} == set(expected)
    assert expected["wpm"] == pytest.approx(40.0)
