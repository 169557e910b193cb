"""Training's pure parts: splits, per-character outcomes, point-in-time samples, metrics, and the encoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.analytics.progress import polynomial_projection
from app.features import UserFeatures, test_deltas
from app.models.encode import NUMERIC, TypistView, encode_text
from app.models.history import FEATURES, encode_history
from app.models.nets import build, load_artifact, save_artifact
from app.models.predictor import LoadedModel, TypingPredictor
from app.schemas.submission import parse_submission
from devstack.simulate import simulate_tests
from training.evaluate import log_loss, roc_auc
from training.samples import StoredTests, char_outcomes, char_samples, stored_from_submissions, trajectory_samples
from training.splits import HISTORY, LATER, TRAIN, UNSEEN, is_unseen, later_start, split_of


def _stored(users: int = 12, tests: int = 10, seed: int = 5) -> tuple[StoredTests, list]:
    return stored_from_submissions(simulate_tests(users, tests, seed=seed, traits=True))


def test_splits_are_stable_and_hold_out_later_tests():
    assert later_start(4) == 4  # too few tests: nothing held out
    assert later_start(10) == 8 and later_start(50) == 40
    unseen = [u for u in range(1, 2001) if is_unseen(u)]
    assert 300 < len(unseen) < 500  # ≈ 20 %
    assert [is_unseen(u) for u in range(1, 50)] == [is_unseen(u) for u in range(1, 50)]
    seen_user = next(u for u in range(1, 100) if not is_unseen(u))
    unseen_user = unseen[0]
    assert [split_of(seen_user, i, 10) for i in range(10)] == [TRAIN] * 8 + [LATER] * 2
    assert [split_of(unseen_user, i, 10) for i in range(10)] == [HISTORY] * 8 + [UNSEEN] * 2


def test_char_outcomes_mark_first_press_errors_and_clean_times():
    test = parse_submission(
        {
            "user_id": 1, "test_id": "t", "started_at": "2026-11-01T10:00:00.000Z", "text": "abc",
            "keystrokes": [
                {"key": "a", "down": 0, "up": 50},
                {"key": "x", "down": 200, "up": 250},  # wrong first press at 'b'
                {"key": "Backspace", "down": 500, "up": 550},
                {"key": "b", "down": 700, "up": 750},
                {"key": "c", "down": 880, "up": 930},  # clean after the corrected 'b': 180 ms
            ],
        }
    )  # fmt: skip
    [(times, errors)] = char_outcomes([test])
    assert errors.tolist() == [0.0, 1.0, 0.0]
    assert np.isnan(times[0])  # the first press has no interval
    assert times[1] == 200.0  # 'x' after a correct 'a': a clean transition, timed though wrong
    assert times[2] == 180.0


def test_samples_use_only_earlier_tests_as_features():
    stored, parsed = _stored()
    samples = char_samples(stored)
    assert samples["cats"].shape[1] == 4 and samples["numeric"].shape[1] == NUMERIC
    assert set(np.unique(samples["split"])) <= {TRAIN, LATER, UNSEEN}
    # A typist's first test is encoded without history; a later one with exactly the tests before it.
    deltas = {(d.user_id, d.test_id): d for d in test_deltas(stored.keys, stored.pairs, stored.results)}
    user = next(u for u in range(1, 13) if not is_unseen(u))
    tests = sorted((t for t in parsed if t.user_id == user), key=lambda t: t.started_at_ms)
    mine = samples["user_id"] == user
    first = encode_text(tests[0].text, tests[0].layout, TypistView.of(None))
    np.testing.assert_array_equal(samples["numeric"][mine][: len(first)], first.numeric)
    before = UserFeatures(user)
    for t in tests[:3]:
        before.add(deltas[(user, t.test_id)])
    third = encode_text(tests[3].text, tests[3].layout, TypistView.of(before))
    offset = sum(len(t.text) for t in tests[:3])
    np.testing.assert_array_equal(samples["numeric"][mine][offset : offset + len(third)], third.numeric)
    # The overall-median baseline of the 4th test is the median of the clean times of the 3 before it.
    earlier = np.concatenate([o[0] for o in char_outcomes(tests[:3])])
    assert samples["b_overall_ms"][mine][offset] == pytest.approx(np.nanmedian(earlier))


def test_trajectory_samples_never_train_on_later_tests():
    stored, _ = _stored(users=10, tests=30)
    samples = trajectory_samples(stored)
    assert samples["x"].shape[1] == FEATURES
    train = samples["split"] == TRAIN
    assert train.any() and (~train).any()
    assert np.all(np.isfinite(samples["b_keybr"]))
    assert np.all(samples["ref"] > 0)


def test_metrics_against_known_values():
    y = np.array([0, 0, 1, 1], dtype=np.float64)
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), y) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), y) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), y) == 0.5
    assert log_loss(np.array([0.5] * 4), y) == pytest.approx(np.log(2))


def test_keybr_projection_extends_a_linear_trend():
    wpm = np.linspace(30, 60, 30)
    assert polynomial_projection(wpm, 5) > polynomial_projection(wpm, 1) > wpm[-10]
    assert polynomial_projection(np.array([40.0]), 3) == 40.0


def test_history_encoding_is_relative_to_current_speed():
    x, ref = encode_history(np.array([40.0, 42, 44, 46, 48, 50]), 6, 5)
    assert ref == pytest.approx(46.0)
    assert x.shape == (FEATURES,) and x[19] == pytest.approx(np.log(50 / 46))
    empty, none = encode_history(np.zeros(0), 0, 1)
    assert np.isnan(none) and not empty.any()


def test_predictor_answers_with_and_without_history(tmp_path):
    stored, _ = _stored(users=2, tests=4)
    models = {}
    for kind in ("pattern", "error", "trajectory"):
        torch.manual_seed(0)
        save_artifact(tmp_path / kind, kind, build(kind), {}, {"note": "untrained"})
        loaded_kind, _, meta = load_artifact(tmp_path / kind)
        assert loaded_kind == kind and meta["note"] == "untrained"
        models[kind] = LoadedModel.load(tmp_path / kind, f"{kind}-v1")
    predictor = TypingPredictor(models)
    features = UserFeatures(1)
    for delta in test_deltas(stored.keys, stored.pairs, stored.results):
        if delta.user_id == 1:
            features.add(delta)
    text = "the quick brown fox"
    with_history, cold = predictor.predict_typing([(features, text, "qwerty"), (None, text, "dvorak")])
    for answer in (with_history, cold):
        assert [c["char"] for c in answer["chars"]] == list(text)
        assert all(c["time_ms"] > 0 and 0 < c["error_prob"] < 1 for c in answer["chars"])
        assert answer["predicted_wpm"] > 0
    assert with_history["chars"] != cold["chars"]
    trajectory = predictor.trajectory(features, 20)
    assert [p["test"] for p in trajectory["points"]] == list(range(1, 21))
    assert all(p["low"] <= p["wpm"] <= p["high"] for p in trajectory["points"])
    assert predictor.trajectory(None, 5)["points"] == []
    with pytest.raises(LookupError):
        TypingPredictor({}).predict_typing([(None, "a", "qwerty")])


def test_an_artifact_of_other_inputs_is_refused(tmp_path):
    from app.models.nets import ArtifactError

    save_artifact(tmp_path / "p", "pattern", build("pattern", {"hidden": 32}), {"hidden": 32}, {})
    assert load_artifact(tmp_path / "p")[1].mlp[0].out_features == 32  # the saved shape, not today's default
    saved = torch.load(tmp_path / "p" / "model.pt", weights_only=True)
    torch.save({**saved, "inputs_version": 1}, tmp_path / "p" / "model.pt")
    with pytest.raises(ArtifactError, match="inputs version 1"):
        load_artifact(tmp_path / "p")
