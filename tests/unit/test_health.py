"""Hand-worked health score: each component, the weighted mean and its renormalisation over NaN."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from app.analytics.health import health_components, normal_cdf
from tests.unit.test_metrics import analyse
from tests.unit.test_speed import THE_CAT

NAN = math.nan


def health(wpm, ter, consistency, hesitations, presses, slowdown) -> dict[str, float]:
    out = health_components(
        np.array([wpm]),
        np.array([ter]),
        np.array([consistency]),
        np.array([hesitations]),
        np.array([presses]),
        np.array([slowdown]),
    )
    return {name: float(values[0]) for name, values in out.items()}


def test_an_average_typist_scores_about_fifty_on_speed():
    # wpm 51.5 = the published mean → Φ(0) = 0.5 → 50; one SD faster (72) → Φ(1) = 0.8413 → 84.13
    assert health(51.5, 0, NAN, 0, 10, NAN)["health_speed"] == pytest.approx(50.0, abs=1e-5)
    assert health(72.0, 0, NAN, 0, 10, NAN)["health_speed"] == pytest.approx(84.134, abs=1e-3)
    z = np.linspace(-4, 4, 81)
    assert normal_cdf(z) == pytest.approx([NormalDist().cdf(v) for v in z], abs=2e-7)


def test_hand_worked_health_score():
    # speed: wpm 51.5 → 50
    # accuracy: TER 0.05 → 100 × (1 − 0.05 / 0.2) = 75
    # consistency: 80 as given
    # rhythm: 5 hesitations in 100 presses with an IKI → 5 per 100 → 100 × 0.5^(5/5) = 50
    # fatigue: slowdown 0.25 → 100 × 0.5^(0.25/0.25) = 50
    # score = 0.30 × 50 + 0.25 × 75 + 0.15 × 80 + 0.15 × 50 + 0.15 × 50 = 15 + 18.75 + 12 + 7.5 + 7.5 = 60.75
    h = health(51.5, 0.05, 80.0, 5, 100, 0.25)
    assert h["health_accuracy"] == pytest.approx(75.0)
    assert h["health_consistency"] == 80.0
    assert h["health_rhythm"] == pytest.approx(50.0)
    assert h["health_fatigue"] == pytest.approx(50.0)
    assert h["health_score"] == pytest.approx(60.75, abs=1e-5)


def test_undefined_components_drop_out_of_the_weighted_mean():
    # consistency undefined: (15 + 18.75 + 7.5 + 7.5) / (1 − 0.15) = 48.75 / 0.85 = 57.353
    h = health(51.5, 0.05, NAN, 5, 100, 0.25)
    assert math.isnan(h["health_consistency"])
    assert h["health_score"] == pytest.approx(48.75 / 0.85, abs=1e-5)
    # speeding up is not penalised (fatigue 100); ≥ 20 % errors scores 0 on accuracy
    h = health(51.5, 0.3, NAN, 0, 0, -0.4)
    assert (h["health_fatigue"], h["health_accuracy"]) == (100.0, 0.0) and math.isnan(h["health_rhythm"])
    # everything undefined → undefined
    assert math.isnan(health(NAN, NAN, NAN, 0, 0, NAN)["health_score"])


def test_health_of_a_whole_test():
    # THE_CAT: wpm 28.8 → 100 × Φ((28.8 − 51.5) / 20.5) = 100 × Φ(−1.1073) = 13.41
    #   TER 0.125 → 100 × (1 − 0.625) = 37.5;  consistency 85.714 (test_speed)
    #   1 hesitation in 8 presses with an IKI = 12.5 per 100 → 100 × 0.5^2.5 = 17.68
    #   slowdown 1.5 → 100 × 0.5^6 = 1.5625
    m, _, _ = analyse("the cat", THE_CAT)
    speed = 100 * NormalDist().cdf((28.8 - 51.5) / 20.5)
    assert m["health_speed"] == pytest.approx(speed, abs=1e-5) and speed == pytest.approx(13.41, abs=0.01)
    assert m["health_accuracy"] == pytest.approx(37.5)
    assert m["health_rhythm"] == pytest.approx(100 * 0.5**2.5)
    assert m["health_fatigue"] == pytest.approx(1.5625)
    expected = 0.3 * speed + 0.25 * 37.5 + 0.15 * m["consistency"] + 0.15 * 100 * 0.5**2.5 + 0.15 * 1.5625
    assert m["health_score"] == pytest.approx(expected, abs=1e-5)
