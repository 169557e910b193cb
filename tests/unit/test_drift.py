"""The ingest job's drift check, without the stack: the sample, the live MAE's window, the tests rebuilt from a
batch's keystroke rows, the comparison against a reference computed from the submissions themselves (features
folded from each typist's earlier tests, outcomes from the submitted keystrokes), and the gauges it exports."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pytest
import torch

from app.config import Settings
from app.features import test_deltas
from app.features.summary import fold
from app.models.nets import build
from app.models.predictor import LoadedModel, TypingPredictor
from app.schemas import parse_submission
from app.tables import TestTables, build_tables
from app.tables import test_keys as keys_of
from devstack.simulate import simulate_tests
from pipelines.ingest.drift import DriftSnapshot, WindowMae, _typed_tests, compare, sampled, training_mae
from pipelines.ingest.metrics import LIVE_MAE, TRAINING_MAE, drift_gauges
from training.samples import char_outcomes

USERS, TESTS, FIRST = 3, 6, 880_001


@pytest.fixture(scope="module")
def tests():
    """Simulated typists' tests, each typist's in time order."""
    return [parse_submission(s) for s in simulate_tests(USERS, TESTS, seed=88, first_user_id=FIRST, traits=True)]


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(7)  # an untrained network is fine: the check compares whatever it predicts
    return TypingPredictor({"pattern": LoadedModel("pattern", "v-test", build("pattern").eval())})


def tables_of(tests) -> TestTables:
    return build_tables(tests, np.zeros(len(tests), np.int64), np.arange(len(tests), dtype=np.int64))


def results_of(names: list[tuple[int, str]]) -> pa.Table:
    return pa.table({"user_id": pa.array([u for u, _ in names], pa.uint64()), "test_id": [t for _, t in names]})


# --- the sample ---


def test_the_sample_takes_about_the_share_and_the_same_tests_in_any_batch():
    names = [(user, f"t-{i}") for user in range(1, 101) for i in range(100)]
    chosen = sampled(results_of(names), 0.1)
    assert 0.09 < chosen.mean() < 0.11
    # A test is taken or left whatever batch it comes in (a retried or replayed batch checks the same tests).
    part = names[5000:5100][::-1]
    again = sampled(results_of(part), 0.1)
    assert again.tolist() == chosen[5000:5100][::-1].tolist()
    assert not sampled(results_of(names), 0.0).any()
    assert sampled(results_of(names[:10]), 1.0).all()
    assert sampled(results_of([]), 0.5).shape == (0,)


def test_the_sample_share_is_a_setting_from_0_to_1():
    assert Settings().drift_sample_share == 0.1
    assert Settings.from_env({"KEYSCOPE_DRIFT_SAMPLE_SHARE": "0.25"}).drift_sample_share == 0.25
    assert Settings.from_env({"KEYSCOPE_DRIFT_SAMPLE_SHARE": "0"}).drift_sample_share == 0.0
    settings = Settings(drift_sample_share=0.5)
    assert Settings.from_env(settings.as_env()).drift_sample_share == 0.5
    for raw in ("1.5", "-0.1", "nan", "some"):
        with pytest.raises(ValueError, match="KEYSCOPE_DRIFT_SAMPLE_SHARE"):
            Settings.from_env({"KEYSCOPE_DRIFT_SAMPLE_SHARE": raw})


# --- the live MAE ---


def test_the_window_is_the_mean_of_the_last_characters_added():
    window = WindowMae(size=5)
    assert window.value is None
    window.add(np.array([1.0, 2.0]))
    assert window.value == 1.5
    window.add(np.array([3.0, 4.0, 5.0, 6.0]))  # wraps: 2 3 4 5 6
    assert window.value == pytest.approx(4.0) and window.chars == 6
    window.add(np.arange(100, 112, dtype=float))  # more than the window at once: the last 5
    assert window.value == pytest.approx(np.mean(np.arange(107, 112)))
    window.add(np.zeros(0))
    assert window.value == pytest.approx(109.0) and window.chars == 18
    with pytest.raises(ValueError, match="at least one character"):
        WindowMae(size=0)


def test_the_training_mae_is_the_candidates_held_out_mae():
    assert training_mae({"candidate": {"mae_ms": 41.5}, "baseline": {"mae_ms": 50}}) == 41.5
    assert training_mae({"candidate": {"mae_ms": 40}}) == 40.0
    assert training_mae({"candidate": {}}) is None
    assert training_mae({}) is None
    assert training_mae({"candidate": {"mae_ms": True}}) is None


# --- the tests, from the batch's rows ---


def assert_same_tests(rebuilt, originals):
    assert len(rebuilt) == len(originals)
    for got, want in zip(rebuilt, originals, strict=True):
        assert (got.user_id, got.test_id, got.started_at_ms) == (want.user_id, want.test_id, want.started_at_ms)
        assert (got.text, got.layout, got.language) == (want.text, want.layout, want.language)
        assert np.array_equal(got.key_codes, want.key_codes)
        assert np.array_equal(got.down_ms, want.down_ms)
        assert np.array_equal(got.up_ms, want.up_ms)


def test_tests_rebuilt_from_the_keystroke_rows_are_the_submitted_ones(tests):
    tables = tables_of(tests)
    rows = [0, 4, 7, len(tests) - 1]
    assert_same_tests(_typed_tests(tables, rows), [tests[i] for i in rows])
    # As the writer holds them: a batch's first copies, then the tests still pending (rows filtered, order kept).
    keep = np.ones(len(tests), dtype=bool)
    keep[[1, 2, 9]] = False
    pending = tables.only(keep)
    kept = [t for t, k in zip(tests, keep, strict=True) if k]
    assert_same_tests(_typed_tests(pending, [0, 3, len(kept) - 1]), [kept[0], kept[3], kept[-1]])


def test_keystroke_rows_in_another_order_are_matched_by_test(tests):
    tables = tables_of(tests)
    strokes = tables.keystrokes
    names = keys_of(strokes).to_pylist()
    order = sorted(range(len(names)), key=names.__getitem__, reverse=True)  # tests reordered, presses kept in order
    assert order != sorted(order)
    shuffled = TestTables(strokes.take(pa.array(order)), tables.keys, tables.pairs, tables.confusions, tables.results)
    assert_same_tests(_typed_tests(shuffled, [1, 8]), [tests[1], tests[8]])


# --- the comparison ---


def reference_errors(predictor, tests, chosen: set[int]) -> np.ndarray:
    """|predicted − real| per timed character of the chosen tests (indices into `tests`), each from its typist's
    features folded from all their tests before it, outcomes from the submitted keystrokes."""
    deltas = test_deltas(*(getattr(tables_of(tests), name) for name in ("keys", "pairs", "results")))
    by_user = defaultdict(list)
    for i, test in enumerate(tests):
        by_user[test.user_id].append(i)
    errors = []
    for user_id, indices in by_user.items():
        indices.sort(key=lambda i: (tests[i].started_at_ms, tests[i].test_id))
        for k, i in enumerate(indices):
            if i in chosen:
                features = fold(user_id, [deltas[j] for j in indices[:k]])
                predicted = predictor.pattern_times(features, tests[i].text, tests[i].layout)
                times = char_outcomes([tests[i]])[0][0]
                errors.append(np.abs(predicted - times)[np.isfinite(times)])
    return np.concatenate(errors)


def test_each_sampled_test_is_predicted_from_its_typists_earlier_tests(tests, predictor):
    # The first two tests of each typist were stored by an earlier pass (their features are in the store); this batch
    # holds the other four, in reverse order, and the check takes three of them, two of one typist.
    earlier = [t for t in tests if int(t.test_id.rsplit("-", 1)[1]) < 2]
    batch = [t for t in tests if t not in earlier][::-1]
    stored = {}
    for user_id in {t.user_id for t in tests}:
        mine = tables_of([t for t in earlier if t.user_id == user_id])
        stored[user_id] = fold(user_id, test_deltas(mine.keys, mine.pairs, mine.results))
    chosen_tests = [batch[0], batch[2], batch[5]]
    assert batch[0].user_id == batch[2].user_id
    names = frozenset(f"{t.user_id}/{t.test_id}" for t in chosen_tests)
    errors, checked, skipped = compare(predictor, names, stored, tables_of(batch))
    want = reference_errors(predictor, tests, {tests.index(t) for t in chosen_tests})
    assert (checked, skipped) == (3, 0)
    assert errors.shape == want.shape and errors.shape[0] > 100
    assert np.allclose(np.sort(errors), np.sort(want), rtol=1e-5)
    assert errors.mean() > 0
    # Without the stored features the predictions differ: the earlier tests matter.
    alone, _, _ = compare(predictor, names, {}, tables_of(batch))
    assert not np.allclose(np.sort(alone), np.sort(want), rtol=1e-3)


def test_a_test_the_stored_features_already_hold_is_skipped(tests, predictor):
    user_tests = [t for t in tests if t.user_id == FIRST]
    tables = tables_of(user_tests)
    everything = fold(FIRST, test_deltas(tables.keys, tables.pairs, tables.results))
    names = frozenset(f"{t.user_id}/{t.test_id}" for t in user_tests[2:4])
    errors, checked, skipped = compare(predictor, names, {FIRST: everything}, tables)
    assert (checked, skipped, errors.shape[0]) == (0, 2, 0)
    none, checked, skipped = compare(predictor, frozenset({"1/none"}), {}, tables)
    assert (checked, skipped, none.shape[0]) == (0, 0, 0)


# --- what is exported ---


def snapshot(version: str | None, live: float | None, training: float | None) -> DriftSnapshot:
    return DriftSnapshot("pattern", version, live, training, 10, 2, 10, 0, 0, 0.01)


def test_the_gauges_carry_the_model_and_version_and_retire_a_replaced_version():
    points = drift_gauges(snapshot("v2", 120.5, 110.0), [])
    assert points == [
        (LIVE_MAE, {"model": "pattern", "version": "v2"}, 120.5),
        (TRAINING_MAE, {"model": "pattern", "version": "v2"}, 110.0),
    ]
    retired = drift_gauges(snapshot("v3", None, 99.0), ["v2"])
    assert [(name, tags["version"]) for name, tags, _ in retired] == [
        (LIVE_MAE, "v2"), (TRAINING_MAE, "v2"), (TRAINING_MAE, "v3")
    ]  # fmt: skip
    assert all(math.isnan(value) for _, _, value in retired[:2]) and retired[2][2] == 99.0
    assert drift_gauges(snapshot(None, None, None), []) == []
    assert LIVE_MAE == "keyscope_model_live_mae_ms" and TRAINING_MAE == "keyscope_model_training_mae_ms"
