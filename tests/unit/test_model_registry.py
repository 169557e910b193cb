"""The model registry's rules without a ClickHouse: the promotion rule (every branch), the metrics it accepts, version
ids, the promotion log's stack (what a rollback returns to) and where artifacts live."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.config import Settings
from app.models.registry import (
    MODELS,
    PROMOTION_METRICS,
    ModelRegistryError,
    ModelVersion,
    Promotion,
    check_metrics,
    check_model,
    check_version_id,
    decide_promotion,
    models_root,
    new_version_id,
    promotion_stack,
)

ERROR_BASELINE = {"log_loss": 0.50, "roc_auc": 0.70}
ERROR_PROMOTED = {"log_loss": 0.40, "roc_auc": 0.80}


def error_metrics(candidate: dict[str, float], promoted: dict[str, float] | None = ERROR_PROMOTED) -> dict:
    return {"candidate": candidate, "baseline": ERROR_BASELINE, "promoted": promoted}


def test_the_models_and_their_promotion_metrics():
    assert MODELS == ("pattern", "error", "trajectory")
    assert PROMOTION_METRICS["error"] == [("log_loss", "min"), ("roc_auc", "max")]


def test_a_candidate_better_on_every_metric_than_both_is_promoted_with_its_margins():
    promote, reason = decide_promotion("error", error_metrics({"log_loss": 0.38, "roc_auc": 0.82}))
    assert promote
    assert reason.startswith("promoted: beats the baseline and the promoted version on every metric")
    assert "log_loss 0.38 vs promoted 0.4 (-0.02, -5.0%; lower is better)" in reason
    assert "roc_auc 0.82 vs baseline 0.7 (+0.12, +17.1%; higher is better)" in reason


def test_without_a_promoted_version_beating_the_baseline_is_enough():
    promote, reason = decide_promotion("pattern", {"candidate": {"mae_ms": 40}, "baseline": {"mae_ms": 50}})
    assert promote
    assert "(no version promoted yet)" in reason and "mae_ms 40 vs baseline 50 (-10, -20.0%" in reason
    assert decide_promotion("trajectory", {"candidate": {"mae_wpm": 3.0}, "baseline": {"mae_wpm": 4.0}})[0]


def test_losing_to_the_baseline_keeps_the_candidate_out():
    promote, reason = decide_promotion("trajectory", {"candidate": {"mae_wpm": 4.2}, "baseline": {"mae_wpm": 4.0}})
    assert not promote
    assert reason == "not promoted: does not beat mae_wpm 4.2 vs baseline 4 (+0.2, +5.0%; lower is better)"


def test_beating_the_baseline_but_not_the_promoted_version_keeps_the_candidate_out():
    promote, reason = decide_promotion("error", error_metrics({"log_loss": 0.45, "roc_auc": 0.85}))
    assert not promote
    assert reason == "not promoted: does not beat log_loss 0.45 vs promoted 0.4 (+0.05, +12.5%; lower is better)"


def test_one_metric_lost_is_enough_to_keep_the_candidate_out():
    # Better log loss than both, worse ROC AUC than the promoted version: a "max" metric losing.
    promote, reason = decide_promotion("error", error_metrics({"log_loss": 0.30, "roc_auc": 0.79}))
    assert not promote
    assert "roc_auc 0.79 vs promoted 0.8 (-0.01, -1.3%; higher is better)" in reason
    assert "log_loss" not in reason  # only what lost is named


def test_a_tie_is_not_a_win():
    promote, reason = decide_promotion("pattern", {"candidate": {"mae_ms": 50.0}, "baseline": {"mae_ms": 50.0}})
    assert not promote and "mae_ms 50 vs baseline 50 (+0" in reason


def test_a_zero_reference_is_compared_without_a_percentage():
    promote, reason = decide_promotion("pattern", {"candidate": {"mae_ms": 1.0}, "baseline": {"mae_ms": 0.0}})
    assert not promote and reason.endswith("mae_ms 1 vs baseline 0 (+1; lower is better)")


def test_extra_metrics_are_carried_but_do_not_decide():
    metrics = {"candidate": {"mae_ms": 40, "p90_ms": 999}, "baseline": {"mae_ms": 50, "p90_ms": 1}}
    assert decide_promotion("pattern", metrics)[0]
    assert check_metrics("pattern", metrics)["candidate"] == {"mae_ms": 40.0, "p90_ms": 999.0}


@pytest.mark.parametrize(
    ("model", "metrics", "message"),
    [
        ("speed", {"candidate": {}, "baseline": {}}, "unknown model 'speed'"),
        ("pattern", [("mae_ms", 1)], "must be a dict with keys candidate, baseline, promoted"),
        ("pattern", {"candidate": {"mae_ms": 1}}, "'baseline' is missing"),
        ("pattern", {"baseline": {"mae_ms": 1}}, "'candidate' is missing"),
        ("pattern", {"candidate": {"mae_ms": 1}, "baseline": {"mae_ms": 2}, "promotoed": None}, "unknown keys"),
        ("pattern", {"candidate": None, "baseline": {"mae_ms": 2}}, "'candidate' must be a dict"),
        ("pattern", {"candidate": {"mae": 1}, "baseline": {"mae_ms": 2}}, "'candidate' lacks mae_ms"),
        ("error", error_metrics({"log_loss": 0.3}), "'candidate' lacks roc_auc"),
        ("error", error_metrics(ERROR_PROMOTED, promoted={"roc_auc": 0.9}), "'promoted' lacks log_loss"),
        ("pattern", {"candidate": {"mae_ms": float("nan")}, "baseline": {"mae_ms": 2}}, "candidate.mae_ms must be"),
        ("pattern", {"candidate": {"mae_ms": 1}, "baseline": {"mae_ms": "2"}}, "baseline.mae_ms must be a finite"),
        ("pattern", {"candidate": {"mae_ms": True}, "baseline": {"mae_ms": 2}}, "candidate.mae_ms must be a finite"),
        ("pattern", {"candidate": {"mae_ms": 1, 3: 1}, "baseline": {"mae_ms": 2}}, "name that is not a string: 3"),
    ],
)
def test_bad_metrics_are_refused_naming_what_is_wrong(model, metrics, message):
    with pytest.raises(ModelRegistryError, match=re.escape(message)):
        decide_promotion(model, metrics)


def test_unknown_models_are_errors_naming_them():
    assert check_model("error") == "error"
    with pytest.raises(ValueError, match="unknown model 'Pattern': keyscope's models are pattern, error, trajectory"):
        check_model("Pattern")


def test_version_ids_are_the_utc_time_and_a_random_suffix():
    at = datetime(2026, 12, 6, 10, 15, 0, tzinfo=UTC)
    ids = {new_version_id(at) for _ in range(50)}
    assert all(re.fullmatch(r"20261206T101500Z-[0-9a-f]{4}", version) for version in ids)
    assert len(ids) > 40  # 65,536 suffixes: runs in the same second still differ
    assert check_version_id(new_version_id()) and new_version_id()[:8] == datetime.now(UTC).strftime("%Y%m%d")
    later = new_version_id(datetime(2027, 1, 1, tzinfo=UTC))
    assert later > max(ids)  # ids sort by time


@pytest.mark.parametrize("bad", ["", "latest", "../../etc", "20261206T101500Z-3F2A", "20261206T101500Z-3f2a/x", 7])
def test_anything_else_is_not_a_version_id(bad):
    with pytest.raises(ModelRegistryError, match="is not a model version id"):
        check_version_id(bad)


def _log(*rows: tuple[str, str]) -> list[Promotion]:
    at = datetime(2026, 12, 6, tzinfo=UTC)
    return [Promotion("error", version, at, action, "") for version, action in rows]  # type: ignore[arg-type]


def test_the_promotion_stack_walks_back_through_rollbacks():
    assert promotion_stack([]) == []
    assert promotion_stack(_log(("a", "promote"))) == ["a"]
    assert promotion_stack(_log(("a", "promote"), ("b", "promote"), ("c", "promote"))) == ["a", "b", "c"]
    # c rolled back to b, then b to a: a second rollback does not bounce back to c.
    assert promotion_stack(_log(("a", "promote"), ("b", "promote"), ("c", "promote"), ("b", "rollback"))) == [
        "a",
        "b",
    ]
    rolled_twice = _log(("a", "promote"), ("b", "promote"), ("c", "promote"), ("b", "rollback"), ("a", "rollback"))
    assert promotion_stack(rolled_twice) == ["a"]
    # A version promoted again by hand stacks again.
    assert promotion_stack(_log(("a", "promote"), ("b", "promote"), ("a", "promote"))) == ["a", "b", "a"]


def test_a_rollback_the_stack_does_not_explain_still_decides_what_serves():
    assert promotion_stack(_log(("a", "promote"), ("b", "promote"), ("z", "rollback"))) == ["a", "z"]
    assert promotion_stack(_log(("z", "rollback"))) == ["z"]


def test_artifacts_live_under_the_data_dir_unless_models_dir_is_set(tmp_path):
    assert models_root(Settings(data_dir=tmp_path)) == tmp_path / "models"
    assert models_root(Settings().with_overrides(data_dir=tmp_path / "d")) == tmp_path / "d" / "models"
    settings = Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path), "KEYSCOPE_MODELS_DIR": str(tmp_path / "m")})
    assert models_root(settings) == tmp_path / "m"
    assert Settings.from_env(settings.as_env()) == settings
    assert models_root(Settings.from_env({"KEYSCOPE_DATA_DIR": str(tmp_path)})) == Path(tmp_path).resolve() / "models"


def test_a_model_version_is_frozen():
    entry = ModelVersion("pattern", "20261206T101500Z-3f2a", datetime.now(UTC), "pattern/x", {}, {}, "", "", {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.promoted = True  # type: ignore[misc]
