"""The predictor's service without Ray: the promoted versions of a real model registry (in-process chDB, artifacts of
untrained networks in a temporary folder) loaded and swapped whole, and its answers for batches of requests,
typists with history (features folded from simulated tests) and without.

The feature source here is a dict of real UserFeatures; tests/e2e/test_predict_api.py reads them from Redis."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from app.config import Settings
from app.features import UserFeatures, test_deltas
from app.features.summary import fold
from app.models.nets import build, save_artifact
from app.models.registry import ModelRegistry
from app.schemas import parse_submission
from app.tables import build_tables
from devstack.simulate import simulate_tests
from serve.prediction_request import TypingRequest
from serve.predictions import INTERVAL, LocalPredictions, PredictionService
from tests.chdb_stores import chdb_databases

TYPIST, NEWCOMER = 501, 999_999
METRICS = {
    "pattern": {"mae_ms": 40.0},
    "error": {"log_loss": 0.3, "roc_auc": 0.8},
    "trajectory": {"mae_wpm": 3.0},
}
WINDOW = {"since": "2026-11-01", "until": "2026-12-01", "users": 3, "tests": 18}
TEXT = "the quick brown fox jumps over the lazy dog"


class HeldFeatures:
    """Typists' features held in a dict, answering like the online store."""

    def __init__(self, features: dict[int, UserFeatures]) -> None:
        self.features = features
        self.reads: list[list[int]] = []

    def get(self, user_id: int) -> UserFeatures | None:
        return self.features.get(user_id)

    def get_many(self, user_ids: list[int]) -> dict[int, UserFeatures]:
        self.reads.append(list(user_ids))
        return {u: self.features[u] for u in user_ids if u in self.features}

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def typist() -> UserFeatures:
    tests = [parse_submission(s) for s in simulate_tests(1, 8, seed=5, first_user_id=TYPIST, traits=True)]
    tables = build_tables(tests, np.zeros(len(tests)), np.arange(len(tests)))
    grouped = defaultdict(list)
    for delta in test_deltas(tables.keys, tables.pairs, tables.results):
        grouped[delta.user_id].append(delta)
    return fold(TYPIST, grouped[TYPIST])


@pytest.fixture(scope="module")
def databases(tmp_path_factory):
    yield from chdb_databases(tmp_path_factory.mktemp("chdb"))


@pytest.fixture
def registry(databases, tmp_path, request) -> ModelRegistry:
    settings = Settings(data_dir=tmp_path, models_dir=str(tmp_path / "models"))
    name = "predictions_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")
    return ModelRegistry(settings, client=databases(name[:60]))


@pytest.fixture
def service(registry, typist) -> PredictionService:
    return PredictionService(registry, HeldFeatures({TYPIST: typist}), poll_s=0.05)


def promote(registry: ModelRegistry, tmp_path: Path, kind: str, seed: int = 0, artifact_kind: str | None = None) -> str:
    """Register an untrained network of `kind` (seeded: versions differ) and promote it; returns its version."""
    import torch

    torch.manual_seed(seed)
    folder = save_artifact(tmp_path / f"src-{kind}-{seed}", artifact_kind or kind, build(artifact_kind or kind), {}, {})
    entry = registry.register(kind, folder, {"candidate": METRICS[kind], "baseline": METRICS[kind]}, WINDOW, "test", {})
    registry.promote(kind, entry.version, "test")
    return entry.version


def promote_all(registry: ModelRegistry, tmp_path: Path, seed: int = 0) -> dict[str, str]:
    return {kind: promote(registry, tmp_path, kind, seed) for kind in ("pattern", "error", "trajectory")}


def test_with_nothing_promoted_it_starts_and_answers_none(service):
    assert service.refresh() == [] and service.predictor is None and service.versions() == {}
    assert service.predict_typing([TypingRequest(TYPIST, "abc")]) == [None]
    assert service.trajectory(TYPIST, 5) is None


def test_typing_needs_both_pattern_and_error(service, registry, tmp_path):
    pattern = promote(registry, tmp_path, "pattern")
    assert service.refresh() == [f"pattern {pattern}"]
    assert service.predict_typing([TypingRequest(TYPIST, "abc")]) == [None]
    assert service.trajectory(TYPIST, 5) is None  # nor is there a trajectory model yet
    error = promote(registry, tmp_path, "error")
    assert service.refresh() == [f"error {error}"]
    [answer] = service.predict_typing([TypingRequest(TYPIST, "abc")])
    assert answer["model_version"] == f"pattern:{pattern},error:{error}"


def test_one_entry_per_character_for_typists_with_and_without_history(service, registry, tmp_path):
    versions = promote_all(registry, tmp_path)
    service.refresh()
    assert service.versions() == versions
    requests = [
        TypingRequest(TYPIST, TEXT), TypingRequest(NEWCOMER, TEXT), TypingRequest(TYPIST, "Ünïcode ☃!", "azerty")
    ]  # fmt: skip
    answers = service.predict_typing(requests)
    assert service.features.reads == [[TYPIST, NEWCOMER]]  # one read for the batch, each typist once
    for request, answer in zip(requests, answers, strict=True):
        assert list(answer) == ["user_id", "text", "model_version", "chars", "predicted_wpm", "predicted_accuracy"]
        assert (answer["user_id"], answer["text"]) == (request.user_id, request.text)
        assert [c["char"] for c in answer["chars"]] == list(request.text)
        assert all(c["time_ms"] > 0 and 0 < c["error_prob"] < 1 for c in answer["chars"])
        assert answer["predicted_wpm"] > 0 and 0 < answer["predicted_accuracy"] < 1
    # The typist's history is an input: the same text is predicted differently for a newcomer.
    assert answers[0]["chars"] != answers[1]["chars"]


def test_a_batch_answers_what_each_request_alone_would(service, registry, tmp_path):
    promote_all(registry, tmp_path)
    service.refresh()
    requests = [TypingRequest(TYPIST if i % 2 else NEWCOMER + i, TEXT[: 5 + i]) for i in range(20)]
    batched = service.predict_typing(requests)
    alone = [service.predict_typing([r])[0] for r in requests]
    for together, single in zip(batched, alone, strict=True):
        assert [c["char"] for c in together["chars"]] == [c["char"] for c in single["chars"]]
        # float32 sums may round a last digit differently in a larger matrix
        assert [c["time_ms"] for c in together["chars"]] == pytest.approx([c["time_ms"] for c in single["chars"]],
                                                                          abs=0.11)  # fmt: skip
        assert [c["error_prob"] for c in together["chars"]] == pytest.approx(
            [c["error_prob"] for c in single["chars"]], abs=2e-4
        )


def test_trajectory_points_for_a_typist_and_none_for_a_newcomer(service, registry, tmp_path, typist):
    versions = promote_all(registry, tmp_path)
    service.refresh()
    answer = service.trajectory(TYPIST, 7)
    assert answer["user_id"] == TYPIST and answer["model_version"] == versions["trajectory"]
    assert answer["interval"] == INTERVAL == 0.8
    assert answer["current_wpm"] == pytest.approx(float(np.mean(typist.recent_wpm()[-5:])), abs=0.01)
    assert [p["test"] for p in answer["points"]] == list(range(1, 8))
    assert all(p["low"] <= p["wpm"] <= p["high"] for p in answer["points"])
    assert "reason" not in answer
    cold = service.trajectory(NEWCOMER, 7)
    assert cold == {
        "user_id": NEWCOMER, "model_version": versions["trajectory"], "current_wpm": None, "interval": 0.8,
        "points": [], "reason": "no tests yet",
    }  # fmt: skip


def test_a_promotion_swaps_a_whole_new_predictor_and_leaves_the_old_one_intact(service, registry, tmp_path):
    first = promote_all(registry, tmp_path)
    service.refresh()
    old = service.predictor
    before = service.predict_typing([TypingRequest(TYPIST, TEXT)])[0]
    swaps: list[list[str]] = []
    service.on_swap = swaps.append
    newer = promote(registry, tmp_path, "pattern", seed=1)
    assert service.refresh() == [f"pattern {newer}"]
    assert swaps == [[f"pattern {newer}"]]  # what the deployment's metrics count
    assert service.predictor is not old
    # A batch that took the old predictor finishes on it, unchanged; the new one shares the unchanged models.
    assert old.versions() == first
    assert service.versions() == {**first, "pattern": newer}
    assert service.predictor.models["error"] is old.models["error"]
    after = service.predict_typing([TypingRequest(TYPIST, TEXT)])[0]
    assert after["model_version"] == f"pattern:{newer},error:{first['error']}"
    assert [c["time_ms"] for c in after["chars"]] != [c["time_ms"] for c in before["chars"]]
    assert [c["error_prob"] for c in after["chars"]] == [c["error_prob"] for c in before["chars"]]
    assert service.refresh() == [] and len(swaps) == 1  # nothing new: nothing reloaded, nothing counted
    registry.rollback("pattern", "test")
    assert service.refresh() == [f"pattern {first['pattern']}"]


def test_a_version_that_cannot_load_is_skipped_and_the_loaded_one_keeps_serving(service, registry, tmp_path, caplog):
    first = promote_all(registry, tmp_path)
    service.refresh()
    broken = promote(registry, tmp_path, "pattern", seed=2)
    (registry.artifact_path(registry.get("pattern", broken)) / "model.pt").write_bytes(b"not a model")
    mislabelled = promote(registry, tmp_path, "error", seed=3, artifact_kind="pattern")
    with caplog.at_level(logging.ERROR, logger="keyscope.predictor"):
        assert service.refresh() == []
    assert service.versions() == first
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert f"cannot load pattern version {broken}" in messages
    assert f"error version {mislabelled}: its artifact" in messages and "holds a pattern model" in messages


def test_the_poll_picks_up_a_promotion_and_the_local_predictions_answer_json(service, registry, tmp_path):
    async def scenario() -> tuple[dict, dict]:
        local = LocalPredictions(service)
        local.start()
        try:
            assert await local.predict_typing(TypingRequest(TYPIST, "abc")) is None
            versions = promote_all(registry, tmp_path)
            for _ in range(200):
                if service.versions() == versions:
                    break
                await asyncio.sleep(0.05)
            body = await local.predict_typing(TypingRequest(NEWCOMER, "abc"))
            trajectory = await local.trajectory(TYPIST, 3)
            return versions, {"typing": body, "trajectory": trajectory}
        finally:
            await local.close()

    versions, bodies = asyncio.run(scenario())
    assert service.versions() == versions
    typing = json.loads(bodies["typing"])
    assert typing["user_id"] == NEWCOMER and len(typing["chars"]) == 3
    assert len(json.loads(bodies["trajectory"])["points"]) == 3


def test_the_insights_forecast_comes_from_the_promoted_trajectory_model(registry, typist, tmp_path):
    from app.models.forecast import ModelForecaster

    held = HeldFeatures({TYPIST: typist})
    forecaster = ModelForecaster(Settings(), refresh_s=0.0, registry=registry, features=held)
    assert forecaster.forecast(TYPIST) is None  # nothing promoted: the reads go on without it
    version = promote(registry, tmp_path, "trajectory")
    forecast = forecaster.forecast(TYPIST)
    assert forecast["model_version"] == version and forecast["after_tests"] == 20 and forecast["interval"] == 0.8
    assert forecast["low"] <= forecast["wpm"] <= forecast["high"]
    assert forecast["current_wpm"] == pytest.approx(float(np.mean(typist.recent_wpm()[-5:])), abs=0.01)
    assert forecaster.forecast(TYPIST + 1) is None  # no features: no forecast, no error
