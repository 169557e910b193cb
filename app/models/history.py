"""Trajectory inputs: a typist's recent WPM series at the prediction point, one definition for training and
serving. The network predicts quantiles of ln(WPM after `horizon` more tests / current speed), where current speed
is the mean of the last RECENT tests."""

from __future__ import annotations

import numpy as np

WINDOW = 20  # the latest tests the model sees (the online features keep 32)
RECENT = 5
HORIZONS = (1, 5, 20)
QUANTILES = (0.1, 0.5, 0.9)  # an 80 % interval around the median
FEATURES = 2 * WINDOW + 5


def current_speed(wpm: np.ndarray) -> float:
    """The mean WPM of the last RECENT tests (NaN without any)."""
    wpm = np.asarray(wpm, dtype=np.float64)
    wpm = wpm[np.isfinite(wpm) & (wpm > 0)]
    return float(wpm[-RECENT:].mean()) if wpm.size else float("nan")


def encode_history(wpm: np.ndarray, tests: int, horizon: int) -> tuple[np.ndarray, float]:
    """(inputs float32 [FEATURES], current speed) for a typist whose WPM series so far is `wpm` (oldest first;
    only the last WINDOW matter) after `tests` tests in all."""
    wpm = np.asarray(wpm, dtype=np.float64)
    wpm = wpm[np.isfinite(wpm) & (wpm > 0)]
    ref = current_speed(wpm)
    x = np.zeros(FEATURES, dtype=np.float32)
    if not np.isfinite(ref):
        return x, ref
    recent = np.log(wpm[-WINDOW:] / ref)
    x[WINDOW - recent.size : WINDOW] = recent
    x[2 * WINDOW - recent.size : 2 * WINDOW] = 1.0  # which slots hold a test
    tail = np.log(wpm[-10:])
    slope = float(np.polyfit(np.arange(tail.size), tail, 1)[0]) if tail.size >= 3 else 0.0
    x[2 * WINDOW :] = (
        np.log1p(tests) / 5.0,
        np.log1p(horizon) / 3.0,
        np.log(ref) - 4.0,
        slope * 10.0,
        float(recent.std()) if recent.size > 1 else 0.0,
    )
    return x, ref
