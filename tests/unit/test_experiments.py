"""Experiments without the stack: definitions and their errors, deterministic assignment and its proportions, the
exposure buffer, the statistics (Welch's interval against scipy's own, the sample-ratio check, the A/A error rate),
the weak-key outcome, the report's table, and the practice-text route's experiment point."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats as sps

from app.experiments.assignment import assign, bucket
from app.experiments.definition import Experiment, ExperimentError, Variant, parse_variant
from app.experiments.exposures import ExposureRecorder
from app.experiments.outcomes import UserOutcome, weak_key_change
from app.experiments.report import build_report, format_report
from app.experiments.runtime import Assignment
from app.experiments.stats import sample_ratio_check, summarize, welch_difference
from app.experiments.store import Exposure

START = datetime(2026, 12, 1, tzinfo=UTC)
USERS = range(7_900_001, 7_999_999)


def experiment(*variants: tuple[str, float, str], name: str = "exp-1", factor: str = "practice_generator", **kw):
    return Experiment(name, factor, tuple(Variant(*v) for v in variants), START, **kw)


AB = experiment(("lm", 1, "lm"), ("rules", 1, "rules"))


# --- definitions --------------------------------------------------------------------------------------------------


def test_a_variant_spec_is_name_optional_value_and_weight():
    assert parse_variant("lm=50") == Variant("lm", 50.0, "lm")
    assert parse_variant("control:lm=1.5") == Variant("control", 1.5, "lm")
    for bad in ("lm", "=3", "lm=x"):
        with pytest.raises(ExperimentError, match="variant"):
            parse_variant(bad)


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ((("lm", 1, "lm"),), "at least two variants"),
        ((("lm", 0, "lm"), ("rules", 1, "rules")), "weight must be a positive number"),
        ((("lm", -1, "lm"), ("rules", 1, "rules")), "weight must be a positive number"),
        ((("lm", math.nan, "lm"), ("rules", 1, "rules")), "weight must be a positive number"),
        ((("lm", math.inf, "lm"), ("rules", 1, "rules")), "weight must be a positive number"),
        ((("lm", 1, "lm"), ("lm", 1, "rules")), "names must differ"),
        ((("lm", 1, "lm"), ("gpt", 1, "gpt")), "practice_generator takes lm, rules"),
    ],
)
def test_bad_variants_are_refused_with_the_reason(variants, message):
    with pytest.raises(ExperimentError, match=message):
        experiment(*variants)


def test_bad_names_factors_metrics_and_times_are_refused():
    with pytest.raises(ExperimentError, match="experiment name"):
        experiment(("a", 1, "lm"), ("b", 1, "lm"), name="Has Spaces")
    with pytest.raises(ExperimentError, match="unknown factor"):
        experiment(("a", 1, "x"), ("b", 1, "y"), factor="colour")
    with pytest.raises(ExperimentError, match="unknown metric"):
        experiment(("a", 1, "lm"), ("b", 1, "lm"), metric="joy")
    with pytest.raises(ExperimentError, match="end must come after"):
        experiment(("a", 1, "lm"), ("b", 1, "lm"), ends_at=START)
    # An A/A experiment (the same value twice) and a free-valued factor are fine.
    assert experiment(("a", 1, "lm"), ("b", 1, "lm")).shares == (0.5, 0.5)
    assert experiment(("short", 1, "all"), ("long", 3, "slow_spots"), factor="hint_style").shares == (0.25, 0.75)


def test_running_and_overlapping_windows():
    week = experiment(("a", 1, "lm"), ("b", 1, "lm"), ends_at=START + timedelta(days=7))
    assert not week.running(START - timedelta(seconds=1)) and week.running(START)
    assert not week.running(START + timedelta(days=7))
    later = Experiment("later", "practice_generator", week.variants, START + timedelta(days=7))
    assert not week.overlaps(later) and not later.overlaps(week)
    open_ended = Experiment("open", "practice_generator", week.variants, START - timedelta(days=30))
    assert open_ended.overlaps(week) and open_ended.overlaps(later)


# --- assignment ---------------------------------------------------------------------------------------------------


def test_assignment_is_a_pure_function_of_experiment_and_user_stable_across_processes():
    here = [assign(AB, u).name for u in USERS[:200]]
    assert here == [assign(AB, u).name for u in USERS[:200]]
    # Another interpreter with another hash seed (Python's hash() would differ) assigns the same variants.
    code = (
        "from tests.unit.test_experiments import AB, USERS; from app.experiments.assignment import assign; "
        "print(','.join(assign(AB, u).name for u in USERS[:200]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": os.getcwd()}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert other.stdout.strip().split(",") == here
    # A fixed point: BLAKE2b of ("exp-1", 7900001) does not change with releases or platforms.
    assert bucket("exp-1", 7_900_001) == 0.7879563667493406 and bucket("exp-1", 7_900_002) == 0.592804662991396
    assert assign(AB, 7_900_001).name == "rules" and assign(AB, 7_900_002).name == "rules"


@pytest.mark.parametrize("weights", [(1, 1), (1, 3), (5, 3, 2)])
def test_assignment_honours_the_weights(weights):
    exp = experiment(*[(f"v{i}", w, "lm") for i, w in enumerate(weights)])
    counts = np.zeros(len(weights))
    for u in USERS:
        counts[int(assign(exp, u).name[1:])] += 1
    shares = counts / counts.sum()
    assert np.allclose(shares, np.array(weights) / sum(weights), atol=0.006), shares  # ±4 σ at 100k users
    assert not sample_ratio_check(counts.astype(int).tolist(), exp.shares).flagged


def test_two_experiments_split_the_same_users_independently():
    other = experiment(("lm", 1, "lm"), ("rules", 1, "rules"), name="exp-2")
    both = sum(assign(AB, u).name == "rules" and assign(other, u).name == "rules" for u in USERS[:20_000])
    assert abs(both / 20_000 - 0.25) < 0.015  # independent halves: a quarter in both


# --- the exposure buffer ------------------------------------------------------------------------------------------


def exposure(user_id: int, name: str = "exp-1") -> Exposure:
    return Exposure(user_id, name, "lm", START)


def test_the_recorder_buffers_each_user_once_per_experiment_and_flushes_in_one_write():
    writes: list[list[Exposure]] = []
    recorder = ExposureRecorder(lambda batch: writes.append(batch) or len(batch))
    assert recorder.record(exposure(1)) and not recorder.record(exposure(1))
    assert recorder.record(exposure(1, "exp-2")) and recorder.record(exposure(2))
    assert recorder.flush() == 3 and len(writes) == 1 and recorder.flush() == 0
    assert not recorder.record(exposure(2))  # still remembered after the flush


def test_a_failed_write_keeps_the_batch_for_the_next_flush_and_memory_stays_bounded():
    failing = True

    def write(batch):
        if failing:
            raise ConnectionError("ClickHouse is down")
        return len(batch)

    recorder = ExposureRecorder(write, max_pending=3)
    for u in range(1, 6):
        recorder.record(exposure(u))
    assert recorder.pending() == 3 and recorder.dropped == 2  # the oldest two went
    with pytest.raises(ConnectionError):
        recorder.flush()
    assert recorder.pending() == 3
    failing = False
    assert recorder.flush() == 3 and recorder.written == 3 and recorder.pending() == 0


def test_the_recorder_forgets_the_least_recently_seen_users_beyond_its_bound():
    recorder = ExposureRecorder(len, remember=2)
    recorder.record(exposure(1))
    recorder.record(exposure(2))
    recorder.record(exposure(3))  # forgets user 1
    assert recorder.record(exposure(1)) and not recorder.record(exposure(3))


# --- statistics ---------------------------------------------------------------------------------------------------


def test_welch_interval_matches_scipy_and_a_hand_worked_case():
    a, b = [1.0, 2.0, 3.0, 4.0], [3.0, 5.0, 7.0]
    d = welch_difference(summarize(a), summarize(b))
    # By hand: means 2.5 and 5; variances 5/3 and 4; se² = 5/12 + 4/3 = 1.75; ν = 1.75² / ((5/12)²/3 + (4/3)²/2).
    assert d.estimate == 2.5 and d.se == pytest.approx(math.sqrt(1.75))
    assert d.df == pytest.approx(1.75**2 / ((5 / 12) ** 2 / 3 + (4 / 3) ** 2 / 2))
    reference = sps.ttest_ind(b, a, equal_var=False)
    interval = reference.confidence_interval(0.95)
    assert (d.low, d.high, d.p_value) == pytest.approx((interval.low, interval.high, reference.pvalue))


def test_too_few_values_give_no_interval():
    d = welch_difference(summarize([1.0]), summarize([2.0, 3.0]))
    assert math.isnan(d.low) and not d.excludes_zero
    assert summarize([]).n == 0 and summarize([1.0, math.nan]).n == 1


def test_the_sample_ratio_check_flags_a_skewed_split_and_passes_a_fair_one():
    skewed = sample_ratio_check([5_000, 5_400], [0.5, 0.5])
    assert skewed.flagged and skewed.p_value < 0.001
    # By hand: expected 5,200 each; chi² = 2 · 200² / 5,200 = 15.38; sf(15.38, 1) = 8.8e-5.
    assert skewed.chi2 == pytest.approx(2 * 200**2 / 5_200) and skewed.p_value == pytest.approx(8.78e-5, rel=0.01)
    assert not sample_ratio_check([5_000, 5_100], [0.5, 0.5]).flagged
    weighted = sample_ratio_check([2_500, 7_500], [1, 3])
    assert weighted.chi2 == 0 and weighted.p_value == 1 and not weighted.flagged
    assert sample_ratio_check([3_000, 7_000], [1, 3]).flagged  # 30/70 is not 25/75 at these counts
    assert not sample_ratio_check([0, 0], [1, 1]).flagged


AA_RUNS, AA_USERS = 2_000, 40


def skewed_changes(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """Per-user WPM changes shaped like the simulated typists': right-skewed (beginners gain most), unit spread."""
    return rng.lognormal(0.0, 0.8, size=n) - math.exp(0.32) + shift


def test_an_aa_experiment_finds_a_difference_at_the_stated_error_rate():
    """2,000 A/A experiments of 40 users a side (skewed changes, both sides alike): the 95 % interval excludes 0 in
    about 5 % of them. The binomial sd of that share at 2,000 runs is 0.49 points; the tolerance is 3 sd."""
    rng = np.random.default_rng(18)
    false_positives = sum(
        welch_difference(summarize(skewed_changes(rng, AA_USERS)), summarize(skewed_changes(rng, AA_USERS)))
        .excludes_zero
        for _ in range(AA_RUNS)
    )
    assert abs(false_positives / AA_RUNS - 0.05) < 0.015, false_positives / AA_RUNS


def test_an_effect_of_one_spread_is_found_with_the_right_sign_nearly_always():
    rng = np.random.default_rng(19)
    found = [
        welch_difference(summarize(skewed_changes(rng, AA_USERS)), summarize(skewed_changes(rng, AA_USERS, 1.1)))
        for _ in range(500)
    ]
    assert sum(d.excludes_zero and d.estimate > 0 for d in found) / 500 > 0.9
    assert not any(d.excludes_zero and d.estimate < 0 for d in found)


# --- outcomes and the report --------------------------------------------------------------------------------------


def test_weak_keys_are_the_slowest_letters_before_exposure_and_their_change_is_averaged():
    before = {"a": (10, 300.0), "b": (10, 250.0), "c": (10, 200.0), "d": (10, 100.0), "Z": (10, 900.0),
              ".": (10, 800.0), "e": (2, 700.0), "f": (10, 400.0)}
    after = {"a": (5, 240.0), "b": (5, 250.0), "c": (5, 150.0), "d": (5, 50.0), "Z": (5, 100.0), ".": (5, 100.0),
             "e": (5, 100.0)}
    # Capitals and punctuation are not letters practice targets; 'e' has too few presses; 'f' none after.
    # The weak keys are a, b, c: ((240 - 300) + 0 + (150 - 200)) / 3.
    assert weak_key_change(before, after) == pytest.approx(-110 / 3)
    assert math.isnan(weak_key_change({"Z": (10, 900.0)}, {"Z": (5, 100.0)}))


def outcome(user_id: int, variant: str, wpm: float, weak: float, after: int = 10) -> UserOutcome:
    return UserOutcome(user_id, variant, 5, after, wpm, weak)


def test_the_report_compares_each_variant_with_the_control_and_prints_the_check():
    rng = np.random.default_rng(3)
    outcomes = [outcome(u, "lm", float(rng.normal(1, 1)), float(rng.normal(0, 10))) for u in range(1, 61)]
    outcomes += [outcome(u, "rules", float(rng.normal(4, 1)), float(rng.normal(-30, 10))) for u in range(61, 121)]
    outcomes += [outcome(999, "rules", 50.0, -500.0, after=3)]  # not measured yet: left out of the outcomes
    report = build_report(AB, {"lm": 60, "rules": 61}, outcomes, after_tests=10)
    assert [row.measured for row in report.variants] == [60, 60]
    wpm = report.differences["rules"]["wpm_change"]
    weak = report.differences["rules"]["weak_key_change_ms"]
    assert wpm.low > 2 and weak.high < -20 and not report.sample_ratio.flagged
    table = format_report(report)
    assert "rules − lm: WPM change +" in table and ": better" in table and "sample ratio" in table
    assert "1 exposed users are not measured yet" in table
    assert report.as_dict()["variants"][1]["exposed"] == 61

    skewed = build_report(AB, {"lm": 5_000, "rules": 5_400}, outcomes, after_tests=10)
    assert skewed.sample_ratio.flagged and "MISMATCH" in format_report(skewed)


# --- the practice-text route's experiment point -------------------------------------------------------------------


class Chooser:
    def __init__(self, value: str | None, fail: bool = False) -> None:
        self.value, self.fail, self.asked = value, fail, []

    def choose(self, user_id: int, factor: str) -> Assignment | None:
        self.asked.append((user_id, factor))
        if self.fail:
            raise RuntimeError("broken")
        return None if self.value is None else Assignment("exp-1", self.value, self.value)


class Cache:
    def __init__(self, texts) -> None:
        self._texts, self.wanted = texts, []

    def texts(self, signature):
        return self._texts

    def want(self, signature):
        self.wanted.append(signature)


class Served:
    def __init__(self) -> None:
        self.recorded = []

    def recent(self, user_id):
        return []

    def record(self, user_id, text_ids):
        self.recorded.append(text_ids)


def practice(value: str | None, fail: bool = False):
    from app.practice.serving import PracticeTexts
    from tests.unit.test_practice_serving import TEXTS

    chooser, cache, served = Chooser(value, fail), Cache(TEXTS), Served()
    return PracticeTexts(cache, served, chooser), chooser, cache, served


def test_the_rules_variant_gets_the_drill_even_when_written_texts_are_cached():
    texts, chooser, cache, served = practice("rules")
    answer = texts.for_user(7_900_001, None, 10)
    assert answer["generator"] == "rules" and answer["text_ids"] == [] and answer["text"]
    assert answer["experiment"] == {"name": "exp-1", "variant": "rules"}
    assert chooser.asked == [(7_900_001, "practice_generator")] and cache.wanted == [] and served.recorded == []


def test_the_lm_variant_and_no_experiment_answer_as_before():
    lm = practice("lm")[0].for_user(7_900_001, None, 10)
    plain = practice(None)[0].for_user(7_900_001, None, 10)
    assert lm["generator"] == plain["generator"] == "lm" and lm["text_ids"] == plain["text_ids"]
    assert lm["experiment"] == {"name": "exp-1", "variant": "lm"} and "experiment" not in plain


def test_a_failing_experiment_layer_does_not_fail_the_route():
    answer = practice("rules", fail=True)[0].for_user(7_900_001, None, 10)
    assert answer["generator"] == "lm" and "experiment" not in answer


def test_choosing_does_no_io_and_takes_microseconds():
    from app.experiments.runtime import ExperimentRuntime

    def no_connection():
        raise AssertionError("choose must not touch ClickHouse")

    runtime = ExperimentRuntime(no_connection)
    runtime._experiments = (experiment(("lm", 1, "lm"), ("rules", 1, "rules"), ends_at=START + timedelta(days=3650)),)
    users = range(7_900_001, 7_920_001)
    timings = []
    for _ in range(2):  # first exposures, then the same users again
        started = time.perf_counter()
        assert all(runtime.choose(u, "practice_generator") for u in users)
        timings.append((time.perf_counter() - started) / len(users))
    assert runtime.recorder.pending() == len(users) and runtime.choose(users[0], "hint_style") is None
    print(f"choose: {timings[0] * 1e6:.1f} µs a first exposure, {timings[1] * 1e6:.1f} µs a repeat")
    assert max(timings) < 1e-3
