"""Live metrics (app/live/metrics.py): hand-worked presses, and the stored metrics' values once a test is typed."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from app.analytics.metrics import TestBatch, analyse_batch
from app.keys import BACKSPACE_CODE, NAMED_KEY_CODES
from app.live.metrics import LiveMetrics
from app.schemas import parse_submission
from devstack.simulate import make_profiles, simulate_test


def typed(text: str, presses: list[tuple[str | int, int]]) -> LiveMetrics:
    metrics = LiveMetrics(text)
    for key, down in presses:
        metrics.press(ord(key) if isinstance(key, str) else key, down)
    return metrics


def test_a_corrected_error_counts_against_accuracy_and_the_field_follows_backspace():
    # "ab" typed a, x (wrong), Backspace, b: 3 character presses, 2 correct; the field holds "ab".
    m = typed("abc", [("a", 0), ("x", 100), (BACKSPACE_CODE, 300), ("b", 400)])
    snap = m.snapshot()
    assert snap["position"] == 2
    assert snap["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    # (len(T) − 1) / S × 60 / 5 = 1 / 0.4 s × 12 = 30 WPM.
    assert snap["wpm"] == 30.0
    # Intervals 100, 200, 100: mean 133.3, population SD 47.14 → cv 0.354.
    assert snap["iki_cv"] == pytest.approx(0.354, abs=1e-3)


def test_a_single_press_has_no_speed_or_rhythm_yet():
    snap = typed("abc", [("a", 0)]).snapshot()
    assert snap["position"] == 1 and snap["accuracy"] == 1.0
    assert snap["wpm"] is None and snap["iki_cv"] is None and snap["health"] is None


def test_named_keys_time_the_rhythm_but_type_nothing():
    m = typed("Ab", [(NAMED_KEY_CODES["Shift"], 0), ("A", 80), ("b", 200)])
    assert m.position == 2 and m.presses == 3 and m.char_presses == 2
    assert m.accuracy() == 1.0


def test_a_press_reports_its_interval_position_correctness_and_hesitation():
    m = LiveMetrics("abcdefgh")
    for i, key in enumerate("abcde"):
        m.press(ord(key), i * 100)
    slow = m.press(ord("x"), 400 + 2500)
    assert slow.iki_ms == 2500 and slow.position == 5 and not slow.correct
    assert slow.hesitation and slow.median_iki_ms == 100.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_once_the_text_is_typed_the_live_numbers_are_the_stored_metrics(seed):
    rng = np.random.default_rng(seed)
    for profile in make_profiles(4, seed=seed, first_user_id=8_100_001):
        test = parse_submission(simulate_test(profile, rng, datetime(2026, 11, 1, tzinfo=UTC), 0))
        live = LiveMetrics(test.text)
        for code, down in zip(test.key_codes.tolist(), test.down_ms.tolist()):
            live.press(code, down)
        analysis = analyse_batch(TestBatch.from_tests([test]))
        stored = {name: float(values[0]) for name, values in analysis.metrics.items()}
        assert len(live.typed) == len(test.text)  # the simulator types the whole length (errors left in it too)
        assert live.wpm() == pytest.approx(stored["wpm"], rel=1e-9)
        assert live.accuracy() == pytest.approx(stored["accuracy"], rel=1e-9)
        assert live.iki_cv() == pytest.approx(stored["iki_cv"], rel=1e-9)
        assert live.consistency() == pytest.approx(stored["consistency"], rel=1e-9, nan_ok=True)
        assert live.hesitations() == analysis.counts["hesitations"][0]
        assert live.slowdown() == pytest.approx(stored["slowdown"], rel=1e-9, nan_ok=True)
        assert live.health() == pytest.approx(stored["health_score"], rel=1e-9, nan_ok=True)
        assert not math.isnan(live.health())
