import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from app.analytics.weakness import (
    beta_quantile,
    errors_by_key,
    rank_units,
    rank_units_by_user,
    regularized_beta,
    top_confusions,
)
from app.schemas import CONFUSION_SCHEMA, KEY_STAT_SCHEMA, parse_submission
from app.tables import TestTables, build_tables
from devstack.simulate import make_profiles, simulate_test

DAY_MS = 86_400_000


def stat_rows(rows: list[tuple[str, int, str, int, int, int, int]]) -> pa.Table:
    """KEY_STAT_SCHEMA rows from (test_id, started day, key, presses, errors, timed_presses, time sum)."""
    return pa.table(
        {
            "user_id": [1] * len(rows),
            "test_id": [r[0] for r in rows],
            "started_at": pa.array([r[1] * DAY_MS for r in rows], pa.timestamp("ms", tz="UTC")),
            "key": [r[2] for r in rows],
            "presses": [r[3] for r in rows],
            "errors": [r[4] for r in rows],
            "timed_presses": [r[5] for r in rows],
            "time_to_type_sum_ms": [r[6] for r in rows],
        },
        schema=KEY_STAT_SCHEMA,
    )


def simulated_tables(n_tests: int, seed: int = 3, **habits) -> TestTables:
    """Tables of `n_tests` simulated tests by one qwerty typist with the given habits (slow_keys, confusions)."""
    profile = dataclasses.replace(make_profiles(1, seed)[0], layout="qwerty", **habits)
    rng = np.random.default_rng(seed)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    tests = [parse_submission(simulate_test(profile, rng, start + timedelta(hours=6 * i), i)) for i in range(n_tests)]
    return build_tables(tests, np.zeros(n_tests), np.arange(n_tests))


@pytest.fixture(scope="module")
def slow_q() -> TestTables:
    return simulated_tables(60, slow_keys={"q": 3.0})


def by_unit(ranking: dict) -> dict[str, dict]:
    return {entry["key"]: entry for entry in ranking["all"]}


# --- the Beta distribution --------------------------------------------------------------------------------


def test_beta_quantile_matches_closed_forms():
    # Beta(1, 1) is uniform: the quantile is q itself.
    assert beta_quantile(0.3, 1, 1) == pytest.approx(0.3, abs=1e-12)
    # Beta(2, 1) has CDF x², so the quantile is √q.
    assert beta_quantile(0.25, 2, 1) == pytest.approx(0.5, abs=1e-12)
    # Beta(½, ½) is the arcsine law, CDF (2/π)·asin(√x): the 5 % quantile is sin(0.025π)² = 0.0061558.
    assert beta_quantile(0.05, 0.5, 0.5) == pytest.approx(math.sin(0.025 * math.pi) ** 2, rel=1e-9)
    assert regularized_beta(0.5, 3, 3) == pytest.approx(0.5, abs=1e-14)  # symmetric


def test_beta_interval_against_brute_force_integration():
    # Posterior of 'q' in the shrinkage example below: Beta(4.5, 28.5).
    a, b = 4.5, 28.5
    lo, hi = beta_quantile(0.05, a, b), beta_quantile(0.95, a, b)
    x = np.linspace(0.0, 1.0, 2_000_001)
    density = np.exp((a - 1) * np.log(np.maximum(x, 1e-300)) + (b - 1) * np.log1p(-np.minimum(x, 1 - 1e-16)))
    density[0] = density[-1] = 0.0
    cdf = np.concatenate(([0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(x))))
    cdf /= cdf[-1]
    assert np.interp(lo, x, cdf) == pytest.approx(0.05, abs=1e-6)
    assert np.interp(hi, x, cdf) == pytest.approx(0.95, abs=1e-6)
    assert lo < (a / (a + b)) < hi


def test_beta_quantile_handles_huge_counts():
    # 20 000 errors in 10⁶ presses: mean 0.02, sd √(0.02·0.98/10⁶) = 1.4e-4, so ±1.645 sd ≈ ±2.3e-4.
    lo, hi = beta_quantile(0.05, 20_000.6, 980_029.4), beta_quantile(0.95, 20_000.6, 980_029.4)
    assert lo == pytest.approx(0.02 - 2.303e-4, abs=3e-6)
    assert hi == pytest.approx(0.02 + 2.303e-4, abs=3e-6)


# --- hand-worked ranking -----------------------------------------------------------------------------------


def test_exponential_smoothing_follows_test_order_not_row_order():
    # 'a' has per-test means 100, 200 and 400 ms in chronological order (rows given out of order):
    #   s1 = 100;  s2 = 0.1·200 + 0.9·100 = 110;  s3 = 0.1·400 + 0.9·110 = 139.
    # The untimed test in between (timed_presses 0) has no mean and is skipped.
    history = stat_rows(
        [
            ("t3", 3, "a", 2, 0, 2, 800),
            ("t1", 1, "a", 1, 0, 1, 100),
            ("t1b", 2, "a", 1, 0, 0, 0),
            ("t2", 2, "a", 4, 0, 4, 800),
        ]
    )
    entry = by_unit(rank_units(history, kind="key"))["a"]
    assert entry["smoothed_time_ms"] == pytest.approx(139.0)
    assert entry["mean_time_ms"] == pytest.approx(1700 / 7)  # all timed presses pooled
    assert entry["tests"] == 4 and entry["timed_presses"] == 7 and entry["presses"] == 8
    # keybr confidence: target 60000 / 175 cpm = 342.857 ms; 342.857 / 139 = 2.4666.
    assert entry["confidence"] == pytest.approx(60_000 / 175 / 139)


def test_tests_starting_at_the_same_moment_are_ordered_by_test_id():
    # Both tests start on day 1; 'x1' comes before 'x2', so s = 0.1·300 + 0.9·100 = 120.
    history = stat_rows([("x2", 1, "a", 1, 0, 1, 300), ("x1", 1, "a", 1, 0, 1, 100)])
    assert by_unit(rank_units(history, kind="key"))["a"]["smoothed_time_ms"] == pytest.approx(120.0)


def test_beta_shrinkage_keeps_three_presses_from_making_a_key_weak():
    # The user: 'a' 97 presses with 2 errors, 'q' 3 presses all wrong: overall p0 = 5 / 100 = 0.05.
    # Prior with k = 30 pseudo-presses: Beta(1.5, 28.5).
    #   'q': (3 + 1.5) / (3 + 30) = 4.5 / 33 = 0.13636 (raw rate 1.0);   posterior Beta(4.5, 28.5)
    #   'a': (2 + 1.5) / (97 + 30) = 3.5 / 127 = 0.027559;             posterior Beta(3.5, 123.5)
    history = stat_rows(
        [
            ("t1", 1, "a", 50, 1, 50, 50 * 150),
            ("t2", 2, "a", 47, 1, 47, 47 * 150),
            ("t2", 2, "q", 3, 3, 3, 3 * 900),
        ]
    )
    ranking = rank_units(history, kind="key")
    units = by_unit(ranking)
    assert ranking["baseline"]["error_rate"] == pytest.approx(0.05)
    assert units["q"]["error_rate"] == 1.0
    assert units["q"]["shrunk_error_rate"] == pytest.approx(4.5 / 33)
    assert units["a"]["shrunk_error_rate"] == pytest.approx(3.5 / 127)
    q_interval = [beta_quantile(0.05, 4.5, 28.5), beta_quantile(0.95, 4.5, 28.5)]
    assert units["q"]["error_interval"] == pytest.approx(q_interval)
    lo, hi = units["a"]["error_interval"]
    assert lo < 3.5 / 127 < hi
    # 'q' is by far the worst unit, yet with 3 < min_presses presses it is neither weak nor strong.
    assert ranking["all"][0]["key"] == "q"
    assert not units["q"]["eligible"]
    assert ranking["weak"] == [] and [e["key"] for e in ranking["strong"]] == ["a"]
    assert "only 3 presses" in units["q"]["reason"]


def test_weakness_score_worked_by_hand():
    # Three keys, 90 presses each in one test, 1, 1 and 7 errors: p0 = 9 / 270 = 1/30; prior Beta(1, 29).
    #   shrunk error rates: 'a', 'b' (1 + 1) / 120 = 1/60;  'c' (7 + 1) / 120 = 1/15
    #   times 150, 200, 400 ms → median 200 ms, ratios 0.75, 1, 2
    #   one test of 90 presses: effective presses 1 / (1² / 90) = 90, so ratios shrink by the power 90/100
    #   typical press costs 1 + 5 · (1/30) = 7/6 median presses
    #   'a': ln((0.75^0.9 + 5/60) / (7/6)) = ln((0.771890 + 0.083333) / 1.166667) = ln(0.733048) = −0.310544
    #   'b': ln((1 + 5/60) / (7/6)) = ln(0.928571) = −0.074108
    #   'c': ln((2^0.9 + 5/15) / (7/6)) = ln((1.866066 + 0.333333) / 1.166667) = ln(1.885199) = 0.634034
    history = stat_rows(
        [
            ("t1", 1, "a", 90, 1, 90, 90 * 150),
            ("t1", 1, "b", 90, 1, 90, 90 * 200),
            ("t1", 1, "c", 90, 7, 90, 90 * 400),
        ]
    )
    ranking = rank_units(history, kind="key", top=2)
    units = by_unit(ranking)
    assert ranking["baseline"]["median_time_ms"] == pytest.approx(200.0)
    assert ranking["baseline"]["error_rate"] == pytest.approx(1 / 30)
    assert units["a"]["score"] == pytest.approx(-0.310544, abs=1e-6)
    assert units["b"]["score"] == pytest.approx(-0.074108, abs=1e-6)
    assert units["c"]["score"] == pytest.approx(0.634034, abs=1e-6)
    assert [e["key"] for e in ranking["weak"]] == ["c"]
    assert [e["key"] for e in ranking["strong"]] == ["a", "b"]
    assert units["c"]["time_ratio"] == pytest.approx(2.0)  # reported unshrunk
    assert units["c"]["reason"] == (
        "'c' takes 400 ms on average (your median key 200 ms) and 7.8 % of its 90 presses are wrong (you: 3.3 %)"
    )


def test_time_evidence_counts_the_smoothing_weights():
    # 'z' is slow (ratio 2 against the median 'a'..'e' at 200 ms) in two tests of 4 and 2 presses:
    #   weights 0.9 and 0.1, so Σ w²/m = 0.81/4 + 0.01/2 = 0.2075 → 4.819 effective presses;
    #   shrunk ratio 2^(4.819 / 14.819) = 2^0.32520 = 1.25284. No errors anywhere: p0 sits at the edge
    #   0.5 / 1007, so r = 30·p0 / 36 and the score is ln((1.25284 + 5r) / (1 + 5·p0)) = 0.22458.
    rows = [("t1", 1, k, 200, 0, 200, 200 * 200) for k in "abcde"]
    rows += [("t1", 1, "z", 4, 0, 4, 4 * 400), ("t2", 2, "z", 2, 0, 2, 2 * 400)]
    z = by_unit(rank_units(stat_rows(rows), kind="key"))["z"]
    assert z["smoothed_time_ms"] == pytest.approx(400.0)
    p0 = 0.5 / 1007
    n = 1 / (0.81 / 4 + 0.01 / 2)
    assert z["score"] == pytest.approx(math.log((2 ** (n / (n + 10)) + 5 * 30 * p0 / 36) / (1 + 5 * p0)), rel=1e-12)
    assert z["score"] == pytest.approx(0.22458, abs=1e-5)


def test_score_is_monotone_in_time_and_errors():
    base = [("t1", 1, k, 100, 3, 100, 20_000) for k in "abcdef"]
    slower = stat_rows(base + [("t1", 1, "z", 100, 3, 100, 30_000)])
    slowest = stat_rows(base + [("t1", 1, "z", 100, 3, 100, 40_000)])
    sloppier = stat_rows(base + [("t1", 1, "z", 100, 9, 100, 30_000)])
    score = {
        name: by_unit(rank_units(t, kind="key"))["z"]["score"]
        for name, t in {"slower": slower, "slowest": slowest, "sloppier": sloppier}.items()
    }
    assert score["slowest"] > score["slower"] and score["sloppier"] > score["slower"]


def test_empty_history_and_untimed_units():
    empty = rank_units(KEY_STAT_SCHEMA.empty_table(), kind="pair")
    assert empty["weak"] == [] and empty["all"] == []
    untimed = by_unit(rank_units(stat_rows([("t1", 1, "a", 10, 0, 0, 0)]), kind="key"))["a"]
    assert untimed["smoothed_time_ms"] is None and untimed["confidence"] is None and untimed["mean_time_ms"] is None
    assert "no timed presses" in untimed["reason"]


def test_top_confusions_sums_over_tests_with_shares():
    confusions = pa.table(
        {
            "user_id": [1, 1, 1, 1],
            "test_id": ["t1", "t2", "t2", "t3"],
            "started_at": pa.array([0, DAY_MS, DAY_MS, 2 * DAY_MS], pa.timestamp("ms", tz="UTC")),
            "key": ["e", "e", "a", "a"],
            "typed": ["r", "r", "s", "q"],
            "count": [2, 3, 4, 1],
        },
        schema=CONFUSION_SCHEMA,
    )
    result = top_confusions(confusions, key_errors={"e": 10, "a": 5})
    assert [(c["key"], c["typed"], c["count"]) for c in result] == [("e", "r", 5), ("a", "s", 4), ("a", "q", 1)]
    assert [c["share_of_key_errors"] for c in result] == [0.5, 0.8, 0.2]
    assert top_confusions(confusions, top=1)[0]["share_of_key_errors"] is None
    assert top_confusions(CONFUSION_SCHEMA.empty_table()) == []


# --- simulated typists ------------------------------------------------------------------------------------


def test_typist_slow_on_q_gets_q_as_top_weak_key(slow_q):
    ranking = rank_units(slow_q.key_stats, kind="key")
    q = by_unit(ranking)["q"]
    assert q["presses"] >= 20
    assert ranking["weak"][0]["key"] == "q"
    assert q["time_ratio"] > 2.0 and q["confidence"] < 1.0
    assert "'q' takes" in q["reason"]
    json.dumps(ranking, allow_nan=False)  # JSON-friendly: no NaN, no numpy scalars


def test_typist_slow_on_q_gets_a_weak_pair_with_q(slow_q):
    weak_pairs = rank_units(slow_q.pair_stats, kind="pair")["weak"]
    assert any("q" in entry["key"] for entry in weak_pairs[:3])


def test_few_presses_of_a_key_never_make_it_weak(slow_q):
    # Keep the slow 'q' in one test only: it is still the slowest key but has too few presses to judge.
    stats = slow_q.key_stats
    is_q = pc.equal(stats["key"], "q")
    first_q_test = stats.filter(is_q)["test_id"][0]
    keep = pc.or_(pc.invert(is_q), pc.equal(stats["test_id"], first_q_test))
    ranking = rank_units(stats.filter(keep), kind="key")
    q = by_unit(ranking)["q"]
    assert q["presses"] < 5 and not q["eligible"]
    assert "q" not in [e["key"] for e in ranking["weak"] + ranking["strong"]]


def test_typist_who_types_r_for_e_gets_that_confusion_first():
    tables = simulated_tables(12, seed=5, confusions={"e": "r"})
    result = top_confusions(tables.confusions, top=3, key_errors=errors_by_key(tables.key_stats))
    assert (result[0]["key"], result[0]["typed"]) == ("e", "r")
    assert result[0]["share_of_key_errors"] > 0.5


def test_ranking_many_typists_at_once_equals_ranking_each_alone():
    """The insights refresh ranks a batch of typists in one pass: each must get exactly their own ranking, even when
    two typists' tests share a test id and one typist has no timed presses at all."""
    fast = simulated_tables(12, seed=5).pair_stats
    slow = simulated_tables(9, seed=6, slow_keys={"q": 3.0}).pair_stats
    untimed = stat_rows([("t1", 1, "ab", 7, 1, 0, 0), ("t2", 2, "ab", 3, 0, 0, 0)])
    shared_id = stat_rows([("t1", 5, "ab", 9, 0, 9, 900), ("t1", 5, "cd", 6, 2, 6, 1800)])
    typists = {11: fast, 12: slow, 13: untimed, 14: shared_id}
    together = pa.concat_tables(
        pa.table(
            {name: t.column(name).cast(KEY_STAT_SCHEMA.field(name).type) for name in KEY_STAT_SCHEMA.names}
        ).set_column(0, "user_id", pa.array([u] * t.num_rows, pa.uint64()))
        for u, t in typists.items()
    )
    ranked = rank_units_by_user(together, kind="pair")
    assert sorted(ranked) == sorted(typists)
    for user_id, table in typists.items():
        assert ranked[user_id] == rank_units(table, kind="pair")
    assert ranked[13]["baseline"]["median_time_ms"] is None
