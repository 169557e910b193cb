import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from app.analytics.progress import exponential_smoothing, linear_trend, polynomial_forecast, progress, t_quantile


def history_table(rows: list[tuple], with_health: bool = True) -> pa.Table:
    """A test-history table from (test_id, started_at datetime, wpm, accuracy[, health_score]) rows."""
    columns = {
        "test_id": [r[0] for r in rows],
        "started_at": pa.array([r[1] for r in rows], pa.timestamp("ms", tz="UTC")),
        "wpm": pa.array([r[2] for r in rows], pa.float64()),
        "accuracy": pa.array([r[3] for r in rows], pa.float64()),
    }
    if with_health:
        columns["health_score"] = pa.array([r[4] if len(r) > 4 else None for r in rows], pa.float64())
    return pa.table(columns)


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


# --- statistics --------------------------------------------------------------------------------------------


def test_t_quantiles_match_the_table():
    # Two-sided 95 % critical values from any t table.
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-4)
    assert t_quantile(0.975, 2) == pytest.approx(4.3027, abs=1e-4)
    assert t_quantile(0.975, 10) == pytest.approx(2.2281, abs=1e-4)
    assert t_quantile(0.975, 30) == pytest.approx(2.0423, abs=1e-4)
    assert t_quantile(0.025, 5) == pytest.approx(-2.5706, abs=1e-4)
    assert t_quantile(0.5, 7) == 0.0


def test_exponential_smoothing_by_hand():
    # s0 = 100; s1 = 0.1·200 + 0.9·100 = 110; s2 = 0.1·400 + 0.9·110 = 139.
    assert exponential_smoothing(np.array([100.0, 200.0, 400.0])).tolist() == pytest.approx([100, 110, 139])
    assert exponential_smoothing(np.array([])).size == 0


def test_trend_slope_and_interval_by_hand():
    # y = 50, 52, 51, 55 at x = 0..3: x̄ = 1.5, ȳ = 52, Sxx = 5, Sxy = 3 + 0 − 0.5 + 4.5 = 7 → b = 1.4.
    # Fitted 49.9, 51.3, 52.7, 54.1; residuals 0.1, 0.7, −1.7, 0.9; SSR = 4.2; s² = 4.2 / 2 = 2.1;
    # se = √(2.1 / 5) = 0.648074; t(0.975, 2) = 4.302653 → half width 2.788433.
    trend = linear_trend(np.arange(4), np.array([50.0, 52.0, 51.0, 55.0]))
    assert trend["slope"] == pytest.approx(1.4)
    assert trend["ci95"] == pytest.approx([1.4 - 2.788433, 1.4 + 2.788433], abs=1e-5)
    assert trend["n"] == 4
    assert linear_trend(np.arange(2), np.array([50.0, 53.0])) == {"slope": 3.0, "ci95": None, "n": 2}
    assert linear_trend(np.arange(1), np.array([50.0]))["slope"] is None


def test_exact_line_has_a_zero_width_interval():
    trend = linear_trend(np.arange(10), 40.0 + 0.5 * np.arange(10))
    assert trend["slope"] == pytest.approx(0.5)
    assert trend["ci95"] == pytest.approx([0.5, 0.5])


# --- forecast ------------------------------------------------------------------------------------------------


def test_forecast_on_an_exact_line():
    # 40 + 0.5k for k = 0..29 ends at 54.5; 60 WPM is reached at k = 40, i.e. 11 tests after the last.
    forecast = polynomial_forecast(40.0 + 0.5 * np.arange(30), 60.0)
    assert forecast["degree"] == 1 and forecast["r2"] == pytest.approx(1.0)
    assert forecast["sessions_to_target"] == 11
    assert forecast["current_smoothed_wpm"] == pytest.approx(54.5)
    assert forecast["method"] == "keybr-polynomial" and forecast["reason"] is None


def test_forecast_on_an_exact_quadratic():
    # 40 + 0.01k² for k = 0..29 ends at 48.41; 40 + 0.01k² ≥ 60 first at k = 45 (k² = 2025 ≥ 2000): 16 tests on.
    # The cubic fits as well; ties go to the lower degree.
    forecast = polynomial_forecast(40.0 + 0.01 * np.arange(30.0) ** 2, 60.0)
    assert forecast["degree"] == 2 and forecast["r2"] == pytest.approx(1.0)
    assert forecast["sessions_to_target"] == 16


def test_forecast_uses_only_the_last_30_points():
    # A flat start that a line would miss: only the last 30 values (a line) are fitted.
    series = np.concatenate((np.full(20, 10.0), 40.0 + 0.5 * np.arange(30)))
    forecast = polynomial_forecast(series, 60.0)
    assert forecast["fitted_tests"] == 30 and forecast["degree"] == 1 and forecast["sessions_to_target"] == 11


def test_forecast_on_noise_is_null():
    noise = np.random.default_rng(7).normal(50.0, 5.0, size=30)
    forecast = polynomial_forecast(noise, 60.0)
    assert forecast["r2"] < 0.5
    assert forecast["sessions_to_target"] is None
    assert "R²" in forecast["reason"]


def test_forecast_edge_cases():
    assert polynomial_forecast(np.array([61.0]), 60.0)["sessions_to_target"] == 0  # already there
    short = polynomial_forecast(np.array([40.0, 41.0]), 60.0)
    assert short["sessions_to_target"] is None and "at least 3 tests" in short["reason"]
    flat = polynomial_forecast(np.full(10, 50.0), 60.0)
    assert flat["r2"] is None and flat["sessions_to_target"] is None and flat["reason"]
    falling = polynomial_forecast(60.0 - 0.5 * np.arange(30), 70.0)
    assert falling["r2"] == pytest.approx(1.0) and falling["sessions_to_target"] is None
    assert "1000 tests" in falling["reason"]
    assert polynomial_forecast(np.array([]), 60.0)["reason"]


# --- progress --------------------------------------------------------------------------------------------------


def test_daily_means_ignore_nulls_and_row_order():
    table = history_table(
        [
            ("t3", at("2026-03-02", 9), 60.0, 0.98, 70.0),
            ("t1", at("2026-03-01", 8), 40.0, None, 50.0),
            ("t2", at("2026-03-01", 23), 50.0, 0.96, None),
        ]
    )
    result = progress(table, today=date(2026, 3, 2))
    assert result["daily"] == [
        {"day": "2026-03-01", "tests": 2, "wpm": 45.0, "accuracy": 0.96, "health_score": 50.0},
        {"day": "2026-03-02", "tests": 1, "wpm": 60.0, "accuracy": 0.98, "health_score": 70.0},
    ]
    missing = progress(history_table([("t1", at("2026-03-01"), 40.0, 0.9)], with_health=False), today=date(2026, 3, 1))
    assert missing["daily"][0]["health_score"] is None


def test_personal_bests():
    # Median wpm is 55: only t2 (70, 0.93) and t3 (60, 0.97) count for accuracy, so t4's slow 100 % does not.
    table = history_table(
        [
            ("t1", at("2026-03-01"), 50.0, 0.99),
            ("t2", at("2026-03-02"), 70.0, 0.93),
            ("t3", at("2026-03-03", 8), 60.0, 0.97),
            ("t4", at("2026-03-03", 9), 40.0, 1.0),
        ]
    )
    bests = progress(table, today=date(2026, 3, 3))["personal_bests"]
    assert bests["best_wpm"] == {"test_id": "t2", "started_at": "2026-03-02T12:00:00.000Z", "wpm": 70.0}
    assert bests["best_accuracy"]["test_id"] == "t3" and bests["best_accuracy"]["accuracy"] == 0.97
    assert bests["best_day"] == {"day": "2026-03-02", "wpm": 70.0, "tests": 1}


def test_streaks_across_month_and_year_boundaries():
    days = ["2026-01-30", "2026-01-31", "2026-02-01", "2026-02-01", "2026-02-02", "2026-02-05", "2026-02-06"]
    table = history_table([(f"t{i}", at(day), 50.0, 0.95) for i, day in enumerate(days)])
    streak = {
        today: progress(table, today=date.fromisoformat(today))["streaks"]
        for today in ("2026-02-06", "2026-02-07", "2026-02-08", "2026-02-02", "2026-02-03")
    }
    assert streak["2026-02-06"] == {"current_days": 2, "longest_days": 4}
    assert streak["2026-02-07"]["current_days"] == 2  # no test yet today: yesterday keeps the streak alive
    assert streak["2026-02-08"]["current_days"] == 0
    assert streak["2026-02-02"]["current_days"] == 4  # Jan 30 → Feb 2 counted back from today
    assert streak["2026-02-03"]["current_days"] == 4
    new_year = history_table(
        [(f"n{i}", at(day), 50.0, 0.95) for i, day in enumerate(["2025-12-30", "2025-12-31", "2026-01-01"])]
    )
    assert progress(new_year, today=date(2026, 1, 2))["streaks"] == {"current_days": 3, "longest_days": 3}


def test_a_test_just_before_midnight_utc_counts_for_that_day():
    table = history_table([("a", at("2026-01-31", 23), 50.0, 0.9), ("b", at("2026-02-01", 0), 52.0, 0.9)])
    result = progress(table, today=date(2026, 2, 1))
    assert [d["day"] for d in result["daily"]] == ["2026-01-31", "2026-02-01"]
    assert result["streaks"]["current_days"] == 2


def test_trend_per_test_and_per_day():
    # Daily means 40, 42, 47 on days 0, 1, 3 (one day skipped): x̄ = 4/3, Sxx = 42/9, Sxy = 11 → 33/14 WPM/day;
    # residuals 1/7, −3/14, 1/14 → SSR = 1/14, se = √((1/14) / (42/9)) = 0.123718, t(0.975, 1) = 12.7062.
    table = history_table(
        [
            ("a", at("2026-03-01", 8), 39.0, 0.95),
            ("b", at("2026-03-01", 9), 41.0, 0.95),
            ("c", at("2026-03-02"), 42.0, 0.95),
            ("d", at("2026-03-04"), 47.0, 0.95),
        ]
    )
    trend = progress(table, today=date(2026, 3, 4))["trend"]
    assert trend["wpm_per_day"] == pytest.approx(33 / 14)
    assert trend["wpm_per_day_ci95"] == pytest.approx(
        [33 / 14 - 12.7062 * 0.123718, 33 / 14 + 12.7062 * 0.123718], abs=1e-3
    )
    assert trend["days"] == 3 and trend["n"] == 4
    # Per test: y = 39, 41, 42, 47 at x = 0..3: Sxy = (−1.5)(−3.25) + (−0.5)(−1.25) + 0.5·(−0.25) + 1.5·4.75 = 12.5
    assert trend["wpm_per_test"] == pytest.approx(12.5 / 5)


def test_progress_forecast_on_a_steady_learner():
    # wpm = 30 + 0.2k, one test a day for 100 days. After the first few dozen tests the smoothed speed runs
    # 0.2 · (1 − α)/α = 1.8 WPM behind: s_k ≈ 28.2 + 0.2k, so 60 WPM is reached at k = 159, 60 tests on.
    start = datetime(2026, 1, 1, 9, tzinfo=UTC)
    table = history_table([(f"t{k:03d}", start + timedelta(days=k), 30.0 + 0.2 * k, 0.97) for k in range(100)])
    result = progress(table, target_wpm=60.0, today=date(2026, 4, 10))
    forecast = result["forecast"]
    assert forecast["r2"] > 0.999
    assert forecast["current_smoothed_wpm"] == pytest.approx(28.2 + 0.2 * 99, abs=0.01)
    assert forecast["sessions_to_target"] == pytest.approx(60, abs=1)
    assert result["trend"]["wpm_per_test"] == pytest.approx(0.2)
    assert result["trend"]["wpm_per_day"] == pytest.approx(0.2)
    assert result["streaks"] == {"current_days": 100, "longest_days": 100}
    json.dumps(result, allow_nan=False)


def test_zero_one_and_two_tests():
    empty = progress(history_table([]), today=date(2026, 3, 1))
    assert empty["daily"] == [] and empty["streaks"] == {"current_days": 0, "longest_days": 0}
    assert empty["personal_bests"] == {"best_wpm": None, "best_accuracy": None, "best_day": None}
    assert empty["trend"]["wpm_per_test"] is None and empty["forecast"]["sessions_to_target"] is None
    json.dumps(empty, allow_nan=False)

    one = progress(history_table([("a", at("2026-03-01"), 45.0, 0.9)]), today=date(2026, 3, 1))
    assert one["trend"]["wpm_per_test"] is None and one["trend"]["n"] == 1
    assert one["forecast"]["current_smoothed_wpm"] == 45.0 and one["forecast"]["sessions_to_target"] is None
    assert one["personal_bests"]["best_accuracy"]["test_id"] == "a"

    two = progress(
        history_table([("a", at("2026-03-01"), 45.0, 0.9), ("b", at("2026-03-02"), 48.0, 0.92)]), today=date(2026, 3, 2)
    )
    assert two["trend"]["wpm_per_test"] == pytest.approx(3.0) and two["trend"]["wpm_per_test_ci95"] is None
    assert two["streaks"]["current_days"] == 2
    json.dumps(two, allow_nan=False)


def test_tests_without_a_speed_are_left_out_of_speed_statistics():
    table = history_table(
        [("a", at("2026-03-01"), None, 0.9), ("b", at("2026-03-02"), 48.0, 0.92), ("c", at("2026-03-03"), 61.0, 0.9)]
    )
    result = progress(table, target_wpm=50.0, today=date(2026, 3, 3))
    assert result["daily"][0]["wpm"] is None and result["daily"][0]["tests"] == 1
    assert result["trend"]["n"] == 2 and result["trend"]["wpm_per_test"] == pytest.approx(13.0)
    assert result["personal_bests"]["best_wpm"]["test_id"] == "c"
    # Smoothed 48 → 0.1·61 + 0.9·48 = 49.3: below 50, and two points are too few for a fit.
    assert result["forecast"]["current_smoothed_wpm"] == pytest.approx(49.3)
    json.dumps(result, allow_nan=False)
