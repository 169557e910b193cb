"""The models end to end on the real stack: simulated typists with traits go through the normal ingest path,
each model trains through `ray job submit` with a small budget, the run registers its version and promotes it when
it beats its baselines, and the promoted pattern model's predictions beat the best baseline on typists it never
saw. The tests start in 2031 so `--since` keeps other tests' typists out of the training set."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from ray.job_submission import JobStatus, JobSubmissionClient

from app.models.registry import ModelRegistry, decide_promotion
from devstack.produce import produce_tests
from devstack.simulate import simulate_tests
from pipelines.ingest import run_ingest

pytestmark = pytest.mark.usefixtures("stack")

FIRST_USER = 7_400_001
START = datetime(2031, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def typists(stack, ray_driver, stack_settings):
    import asyncio

    tests = simulate_tests(160, 24, seed=31, first_user_id=FIRST_USER, start=START, traits=True)
    asyncio.run(produce_tests(stack_settings, tests))
    report = run_ingest(stack_settings)
    assert report.tests_written >= len(tests)
    return tests


def _train_logs(settings, model: str, flags: str) -> str:
    """The logs of `python -m training.train --model MODEL FLAGS` run through `ray job submit` (it must succeed)."""
    jobs = JobSubmissionClient(f"http://127.0.0.1:{settings.ray_dashboard_port}")
    job_id = jobs.submit_job(entrypoint=f"python -m training.train --model {model} --since 2031-01-01 {flags}")
    deadline = time.monotonic() + 420
    while jobs.get_job_status(job_id) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, f"training {model} did not finish in 7 minutes"
        time.sleep(2)
    logs = jobs.get_job_logs(job_id)
    assert jobs.get_job_status(job_id) == JobStatus.SUCCEEDED, logs[-4000:]
    return logs


def _train(settings, model: str, *extra: str) -> dict:
    logs = _train_logs(settings, model, f"--run-name e2e-{model} " + " ".join(extra))
    assert f"[{model}] epoch 1/" in logs  # a progress line per epoch
    [line] = [line for line in logs.splitlines() if line.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


def test_pattern_model_trains_registers_promotes_and_beats_the_baselines(typists, stack_settings):
    result = _train(stack_settings, "pattern", "--epochs 4")
    registry = ModelRegistry(stack_settings)
    version = registry.get("pattern", result["version"])
    metrics = version.metrics
    # Better than the best of the three baselines on both held-out sets, typists never seen included.
    for split in ("later", "unseen"):
        assert metrics["candidate"][f"{split}.mae_ms"] < metrics["baseline"][f"{split}.baseline_mae_ms"], metrics
    assert result["promoted"], result["reason"]
    assert registry.promoted("pattern").version == result["version"]
    assert registry.artifact_path(version).joinpath("model.pt").exists()
    assert version.data_window["users"] >= 160


def test_error_and_trajectory_models_train_and_are_judged(typists, stack_settings):
    registry = ModelRegistry(stack_settings)
    for model in ("error", "trajectory"):
        result = _train(stack_settings, model, "--epochs 4" if model == "error" else "--epochs 30")
        version = registry.get(model, result["version"])
        # The decision the run took, made again from what it recorded (the promoted version's figures included).
        promote, reason = decide_promotion(model, version.metrics)
        assert result["promoted"] == promote, (result, reason)
        assert set(version.metrics["candidate"]) >= {"later.samples", "unseen.samples"}


def test_a_deleted_typist_leaves_the_next_training_set(typists, stack_settings):
    from app.user_data import delete_user
    from training.data import typists as window_typists

    since = datetime(2031, 1, 1, tzinfo=UTC)
    before, _ = window_typists(stack_settings, since)
    assert FIRST_USER + 5 in before
    delete_user(stack_settings, FIRST_USER + 5)
    after, _ = window_typists(stack_settings, since)
    assert FIRST_USER + 5 not in after and len(after) == len(before) - 1


def test_a_run_started_again_resumes_from_its_last_checkpoint(typists, stack_settings):
    first = _train_logs(stack_settings, "trajectory", "--epochs 1 --run-name e2e-resume --no-promote")
    assert "[trajectory] epoch 1/1" in first
    again = _train_logs(stack_settings, "trajectory", "--epochs 2 --run-name e2e-resume --no-promote")
    assert "[trajectory] epoch 2/2" in again and "[trajectory] epoch 1/2" not in again
