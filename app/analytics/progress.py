"""A user's progress over time: daily means, personal bests, streaks, trend and keybr's speed forecast.

Input is one row per test with test_id, started_at (timestamp, UTC) and the per-test metrics wpm, accuracy
and health_score (null where undefined; a missing column reads as all null). Days are UTC calendar days.

- trend: least-squares slopes of wpm per test (tests in order, x = 0, 1, …) and per day (daily means against
  the day number), each with a 95 % confidence interval b ± t(0.975, n − 2)·se(b), se(b)² = SSR / (n − 2) / Sxx;
  the t quantile comes from the regularized incomplete beta function (`t_quantile`), not a table.
- forecast (keybr): wpm is exponentially smoothed (α = 0.1, seeded with the first test) over all tests; the
  last ≤ 30 smoothed values are fitted by polynomials of degree 1, 2 and 3 (a degree is tried only with at
  least degree + 2 points, so a residual degree of freedom remains). The degree with the best adjusted R²
  wins, ties (within 1e-9) going to the lower degree, so an exact line stays a line. If its R² ≥ 0.5 the
  polynomial is extended test by test (up to 1,000 tests) until it reaches the target; the number of tests
  that takes is `sessions_to_target`. A smoothed speed already at the target gives 0. (keybr itself fixes the
  degree by the number of points, ≤ 10: 1, ≤ 20: 2, else 3, and looks 50 lessons ahead; choosing by adjusted
  R² keeps a straight-line learner on a line instead of a cubic that bends away.)
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.analytics.weakness import beta_quantile
from app.schemas import format_started_at

SMOOTHING_ALPHA = 0.1
FORECAST_WINDOW = 30  # keybr fits the last ≤ 30 lessons
FORECAST_MIN_R2 = 0.5
FORECAST_MAX_TESTS = 1_000
_DAY_MS = 86_400_000
_EPOCH = date(1970, 1, 1)
_TIE = 1e-9


def t_quantile(p: float, df: float) -> float:
    """Return the Student t quantile t_p(df), from I_x(df/2, 1/2) = 2(1 − p) with x = df / (df + t²)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError("need 0 < p < 1 and df > 0")
    if p == 0.5:
        return 0.0
    tail = 2.0 * min(p, 1.0 - p)
    x = beta_quantile(tail, df / 2.0, 0.5)
    t = math.sqrt(df * (1.0 - x) / x)
    return t if p > 0.5 else -t


def linear_trend(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """Return {slope, ci95, n}: the least-squares slope of y on x and its `level` t interval.

    slope is None with fewer than 2 points (or no spread in x); ci95 is None with fewer than 3 points.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = int(x.shape[0])
    if n < 2:
        return {"slope": None, "ci95": None, "n": n}
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if sxx == 0.0:
        return {"slope": None, "ci95": None, "n": n}
    slope = float(dx @ (y - y.mean())) / sxx
    if n < 3:
        return {"slope": slope, "ci95": None, "n": n}
    residuals = y - y.mean() - slope * dx
    standard_error = math.sqrt(float(residuals @ residuals) / (n - 2) / sxx)
    half_width = t_quantile(0.5 + level / 2.0, n - 2) * standard_error
    return {"slope": slope, "ci95": [slope - half_width, slope + half_width], "n": n}


def exponential_smoothing(values: np.ndarray, alpha: float = SMOOTHING_ALPHA) -> np.ndarray:
    """Return s with s_0 = x_0 and s_i = α·x_i + (1 − α)·s_(i−1)."""
    values = np.asarray(values, dtype=np.float64)
    smoothed = np.empty_like(values)
    # A recursion over one user's tests (thousands at most): a loop is exact where a closed form over
    # (1 − α)^−i would overflow after a few thousand tests.
    level = values[0] if values.size else 0.0
    for i, value in enumerate(values.tolist()):
        level = alpha * value + (1.0 - alpha) * level
        smoothed[i] = level
    return smoothed


def _r2(y: np.ndarray, fitted: np.ndarray) -> float | None:
    total = float(((y - y.mean()) ** 2).sum())
    if total <= 0.0:
        return None
    return 1.0 - float(((y - fitted) ** 2).sum()) / total


def best_polynomial(series: np.ndarray) -> tuple[float, int, np.ndarray, float] | None:
    """keybr's fit of a smoothed speed series: the degree 1–3 polynomial (over x = 0…m−1) with the best adjusted R²,
    as (adjusted R², degree, coefficients, R²); None when the series is too short or flat to fit."""
    m = series.size
    x = np.arange(m, dtype=np.float64)
    best: tuple[float, int, np.ndarray, float] | None = None
    for degree in (1, 2, 3):
        if m < degree + 2:
            break
        coefficients = np.polyfit(x, series, degree)
        r2 = _r2(series, np.polyval(coefficients, x))
        if r2 is None:
            break  # a flat series: every degree fits it exactly and none says anything about the future
        adjusted = 1.0 - (1.0 - r2) * (m - 1) / (m - degree - 1)
        if best is None or adjusted > best[0] + _TIE:
            best = (adjusted, degree, coefficients, r2)
    return best


def polynomial_projection(wpm: np.ndarray, ahead: int) -> float:
    """keybr's forecast as a number: the smoothed speed `ahead` tests after the last of `wpm` (oldest first) on the
    best polynomial fit of the last FORECAST_WINDOW smoothed values; the last smoothed value where none fits."""
    smoothed = exponential_smoothing(np.asarray(wpm, dtype=np.float64))[-FORECAST_WINDOW:]
    if smoothed.size == 0:
        return float("nan")
    best = best_polynomial(smoothed)
    if best is None:
        return float(smoothed[-1])
    return float(np.polyval(best[2], smoothed.size - 1 + ahead))


def polynomial_forecast(
    smoothed: np.ndarray,
    target_wpm: float,
    *,
    min_r2: float = FORECAST_MIN_R2,
    max_tests: int = FORECAST_MAX_TESTS,
) -> dict[str, Any]:
    """Return keybr's forecast for a smoothed speed series (oldest first; only the last 30 are fitted).

    Keys: method, degree, r2, current_smoothed_wpm, target_wpm, sessions_to_target (tests from the last one,
    None when no usable fit reaches the target within `max_tests`), fitted_tests, reason (None when
    sessions_to_target is a number).
    """
    series = np.asarray(smoothed, dtype=np.float64)[-FORECAST_WINDOW:]
    out: dict[str, Any] = {
        "method": "keybr-polynomial",
        "degree": None,
        "r2": None,
        "current_smoothed_wpm": float(series[-1]) if series.size else None,
        "target_wpm": float(target_wpm),
        "sessions_to_target": None,
        "fitted_tests": int(series.size),
        "reason": None,
    }
    if series.size == 0:
        out["reason"] = "no tests with a speed yet"
        return out
    at_target = series[-1] >= target_wpm
    m = series.size
    best = best_polynomial(series)
    if best is not None:
        out["degree"], out["r2"] = best[1], best[3]
    if at_target:
        out["sessions_to_target"] = 0
        return out
    if best is None:
        out["reason"] = (
            "your smoothed speed has not changed yet" if m >= 3 else f"need at least 3 tests to fit a trend (have {m})"
        )
        return out
    if best[3] < min_r2:
        out["reason"] = f"your speed varies too much to extrapolate (R² {best[3]:.2f} < {min_r2})"
        return out
    ahead = np.polyval(best[2], np.arange(m, m + max_tests, dtype=np.float64))
    reached = np.flatnonzero(ahead >= target_wpm - _TIE * max(1.0, abs(target_wpm)))  # a fit's rounding can't delay it
    if reached.size == 0:
        out["reason"] = f"at the current trend you do not reach {target_wpm:g} WPM within {max_tests} tests"
        return out
    out["sessions_to_target"] = int(reached[0]) + 1
    return out


def _floats(table: pa.Table, name: str) -> np.ndarray:
    """Return a column as float64 with NaN for nulls (all NaN when the column is missing)."""
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    return pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _mean_or_none(values: np.ndarray) -> float | None:
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if valid.size else None


def _day_text(day_number: int) -> str:
    return (_EPOCH + timedelta(days=day_number)).isoformat()


def _daily(day: np.ndarray, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Return (distinct days, tests per day, per-column daily means with NaN where a day has no values)."""
    days, inverse = np.unique(day, return_inverse=True)
    counts = np.bincount(inverse, minlength=days.size)
    means = {}
    for name, values in columns.items():
        valid = ~np.isnan(values)
        total = np.bincount(inverse[valid], weights=values[valid], minlength=days.size)
        n = np.bincount(inverse[valid], minlength=days.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[name] = np.where(n > 0, total / np.maximum(n, 1), np.nan)
    return days, counts, means


def _streaks(days: np.ndarray, today: date) -> dict[str, int]:
    """Return {current_days, longest_days} over sorted distinct day numbers."""
    if days.size == 0:
        return {"current_days": 0, "longest_days": 0}
    run_id = np.concatenate(([0], np.cumsum(np.diff(days) != 1)))
    run_start = days[np.concatenate(([0], np.flatnonzero(np.diff(run_id)) + 1))]
    longest = int(np.bincount(run_id).max())
    today_number = (today - _EPOCH).days
    current = 0
    for anchor in (today_number, today_number - 1):  # a streak stays alive until a whole day is missed
        hit = np.flatnonzero(days == anchor)
        if hit.size:
            current = int(anchor - run_start[run_id[hit[0]]] + 1)
            break
    return {"current_days": current, "longest_days": longest}


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def progress(tests: pa.Table, *, target_wpm: float = 60.0, today: date | None = None) -> dict[str, Any]:
    """Return {daily, personal_bests, streaks, trend, forecast} for one user's tests (any order).

    - daily: [{day "YYYY-MM-DD", tests, wpm, accuracy, health_score}] means per UTC day, oldest first;
    - personal_bests: {best_wpm {test_id, started_at, wpm}, best_accuracy {test_id, started_at, accuracy, wpm}
      among tests at or above the user's median wpm, best_day {day, wpm, tests}}; earliest wins ties; None
      where there is no data;
    - streaks: {current_days, longest_days} of consecutive UTC days with a test; the current one counts back
      from `today` (default: today in UTC), or from yesterday when there is no test today yet;
    - trend: {wpm_per_test, wpm_per_test_ci95, wpm_per_day, wpm_per_day_ci95, n (tests with a wpm), days};
    - forecast: see `polynomial_forecast`.
    """
    today = today if today is not None else datetime.now(UTC).date()
    if tests.num_rows:
        tests = tests.take(pc.sort_indices(tests, [("started_at", "ascending"), ("test_id", "ascending")]))
    started = pc.cast(tests.column("started_at"), pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)
    test_ids = tests.column("test_id").to_pylist()
    wpm, accuracy, health = _floats(tests, "wpm"), _floats(tests, "accuracy"), _floats(tests, "health_score")

    day = started // _DAY_MS
    days, counts, means = _daily(day, {"wpm": wpm, "accuracy": accuracy, "health_score": health})
    daily = [
        {
            "day": _day_text(int(d)),
            "tests": int(counts[i]),
            **{name: _none_if_nan(values[i]) for name, values in means.items()},
        }
        for i, d in enumerate(days.tolist())
    ]

    has_wpm = ~np.isnan(wpm)
    best_wpm = best_accuracy = best_day = None
    if has_wpm.any():
        i = int(np.nanargmax(wpm))  # the first maximum: the earliest test that reached it
        best_wpm = {"test_id": test_ids[i], "started_at": format_started_at(int(started[i])), "wpm": float(wpm[i])}
        # Accuracy at a crawl is easy; count it only among tests at least as fast as the user's median.
        candidates = np.where(has_wpm & (wpm >= np.median(wpm[has_wpm])) & ~np.isnan(accuracy), accuracy, -np.inf)
        if np.isfinite(candidates).any():
            j = int(np.argmax(candidates))
            best_accuracy = {
                "test_id": test_ids[j],
                "started_at": format_started_at(int(started[j])),
                "accuracy": float(accuracy[j]),
                "wpm": float(wpm[j]),
            }
        k = int(np.nanargmax(means["wpm"]))
        best_day = {"day": _day_text(int(days[k])), "wpm": float(means["wpm"][k]), "tests": int(counts[k])}

    per_test = linear_trend(np.arange(int(has_wpm.sum())), wpm[has_wpm])
    day_has_wpm = ~np.isnan(means["wpm"])
    per_day = linear_trend(days[day_has_wpm].astype(np.float64), means["wpm"][day_has_wpm])
    trend = {
        "wpm_per_test": per_test["slope"],
        "wpm_per_test_ci95": per_test["ci95"],
        "wpm_per_day": per_day["slope"],
        "wpm_per_day_ci95": per_day["ci95"],
        "n": per_test["n"],
        "days": per_day["n"],
    }
    smoothed = exponential_smoothing(wpm[has_wpm]) if has_wpm.any() else np.empty(0)
    return {
        "daily": daily,
        "personal_bests": {"best_wpm": best_wpm, "best_accuracy": best_accuracy, "best_day": best_day},
        "streaks": _streaks(days, today),
        "trend": trend,
        "forecast": polynomial_forecast(smoothed, target_wpm),
    }
