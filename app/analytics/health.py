"""Typing-technique health score: one 0–100 number per test and the five 0–100 components behind it.

It describes typing technique only (how fast, accurate, even, fluent and steady the typing was) and makes
no medical claim; key-hold times in particular are left out (typing-facts.md).

Components (each 0–100, higher is better, NaN when its input is undefined):
- health_speed        100 × Φ((wpm − 51.5) / 20.5): the share of typists slower than this test, on the
                      published WPM distribution (mean 51.5, SD 20.5; Dhakal et al. 2018, recomputed), so an
                      average typist scores 50 (Φ = standard normal CDF)
- health_accuracy     100 × max(0, 1 − total_error_rate / 0.20): error-free 100, 10 % of characters in error
                      (fixed or not) 50, 20 % or more 0
- health_consistency  `consistency` (Monkeytype's tanh formula on the per-second raw WPM)
- health_rhythm       100 × 0.5 ^ (h / 5), h = hesitations per 100 presses with an IKI: none 100, 5 per 100
                      presses 50, 10 per 100 presses 25
- health_fatigue      100 × 0.5 ^ (max(slowdown, 0) / 0.25): no slowing from the first to the last third 100
                      (speeding up too), 25 % slower 50, 50 % slower 25

health_score = the weighted mean of the defined components, weights speed 0.30, accuracy 0.25, consistency
0.15, rhythm 0.15, fatigue 0.15, renormalised over the components that are not NaN. It is NaN when fewer than
MIN_COMPONENTS are defined: a test too short to show speed and rhythm (one key press) says nothing about
technique, and a score from accuracy alone would read as perfect health.
"""

from __future__ import annotations

import numpy as np

from app.analytics.rhythm import ratio

WPM_MEAN, WPM_SD = 51.5, 20.5
ERROR_RATE_AT_ZERO = 0.20
HESITATIONS_HALF_LIFE = 5.0  # per 100 presses
MIN_COMPONENTS = 3
SLOWDOWN_HALF_LIFE = 0.25
WEIGHTS: dict[str, float] = {
    "health_speed": 0.30,
    "health_accuracy": 0.25,
    "health_consistency": 0.15,
    "health_rhythm": 0.15,
    "health_fatigue": 0.15,
}


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """Return the standard normal CDF Φ(z), through erf by Abramowitz & Stegun 7.1.26 (error < 1.5e-7)."""
    x = np.abs(np.asarray(z, dtype=np.float64)) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-x * x)
    return 0.5 * (1.0 + np.sign(z) * erf)


def health_components(
    wpm: np.ndarray,
    total_error_rate: np.ndarray,
    consistency: np.ndarray,
    hesitations: np.ndarray,
    presses_with_iki: np.ndarray,
    slowdown: np.ndarray,
) -> dict[str, np.ndarray]:
    """Return health_score and its five components per test (float64, 0–100, NaN where undefined)."""
    hesitation_rate = 100.0 * ratio(hesitations, presses_with_iki)
    components = {
        "health_speed": 100.0 * normal_cdf((np.asarray(wpm, dtype=np.float64) - WPM_MEAN) / WPM_SD),
        "health_accuracy": 100.0 * np.maximum(0.0, 1.0 - np.asarray(total_error_rate) / ERROR_RATE_AT_ZERO),
        "health_consistency": np.asarray(consistency, dtype=np.float64),
        "health_rhythm": 100.0 * 0.5 ** (hesitation_rate / HESITATIONS_HALF_LIFE),
        "health_fatigue": 100.0 * 0.5 ** (np.maximum(np.asarray(slowdown), 0.0) / SLOWDOWN_HALF_LIFE),
    }
    weighted = np.zeros(np.shape(wpm))
    total_weight = np.zeros(np.shape(wpm))
    defined_count = np.zeros(np.shape(wpm), dtype=np.int64)
    for name, weight in WEIGHTS.items():
        defined = ~np.isnan(components[name])
        weighted += np.where(defined, components[name] * weight, 0.0)
        total_weight += np.where(defined, weight, 0.0)
        defined_count += defined
    score = np.where(defined_count >= MIN_COMPONENTS, ratio(weighted, total_weight), np.nan)
    return {"health_score": score, **components}
