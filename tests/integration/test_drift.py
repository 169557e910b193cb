"""The ingest job's drift check on the real stack: a pattern artifact registered and promoted in the registry
(ClickHouse + artifact folder), simulated tests produced to Kafka and stored by an ingest pass (Ray Data →
ClickHouse, features folded into Redis); the pass's live MAE equals one computed here from the submissions
themselves (each test predicted from its typist's earlier tests), the training MAE is the registry's, a newly
promoted version is picked up no sooner than the look-up interval, and the gauges reach Ray's Prometheus export."""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict

import httpx
import numpy as np
import pytest
import redis
import torch

from app.features import test_deltas
from app.features.summary import fold
from app.models.nets import build, save_artifact
from app.models.predictor import LoadedModel, TypingPredictor
from app.models.registry import ModelRegistry
from app.schemas import parse_submission
from app.tables import build_tables
from devstack.produce import produce_tests
from devstack.simulate import simulate_tests
from pipelines.ingest import Ingestor, run_ingest
from pipelines.ingest.drift import RELOAD_CHECK_S, DriftMonitor, DriftSnapshot, PromotedWatch
from pipelines.ingest.metrics import LIVE_MAE, TRAINING_MAE, DriftMetrics
from training.samples import char_outcomes

pytestmark = pytest.mark.stack

FIRST, USERS, TESTS, SEED = 7_300_001, 3, 5, 73
TRAINING_MAE_V1, TRAINING_MAE_V2 = 123.4, 98.7


@pytest.fixture(scope="module")
def settings(stack, stack_settings):
    # Every stored test checked, so the pass's MAE can be recomputed here exactly.
    return stack_settings.with_overrides(drift_sample_share=1.0)


@pytest.fixture(scope="module")
def registry(settings):
    with ModelRegistry(settings) as reg:
        yield reg


def register_pattern(registry: ModelRegistry, folder, seed: int, mae_ms: float) -> str:
    """An untrained pattern network registered with a held-out MAE of `mae_ms`; returns its version."""
    torch.manual_seed(seed)
    save_artifact(folder, "pattern", build("pattern"), {}, {"note": "untrained, for the drift check's test"})
    version = registry.register(
        "pattern",
        folder,
        {"candidate": {"mae_ms": mae_ms}, "baseline": {"mae_ms": mae_ms * 1.2}, "promoted": None},
        {"since": "2026-11-01", "until": "2026-11-30", "users": 3, "tests": 15},
        "test",
        {"seed": seed},
    )
    return version.version


@pytest.fixture(scope="module")
def promoted(registry, tmp_path_factory) -> str:
    version = register_pattern(registry, tmp_path_factory.mktemp("pattern-v1"), 1, TRAINING_MAE_V1)
    registry.promote("pattern", version, "the drift check's test")
    return version


def expected_errors(registry: ModelRegistry, version: str, submissions: list[dict]) -> np.ndarray:
    """|predicted − real| per timed character of every submission, each predicted from the typist's features folded
    from their earlier submissions, with the registered artifact; outcomes from the submitted keystrokes."""
    artifact = registry.artifact_path(registry.get("pattern", version))
    predictor = TypingPredictor({"pattern": LoadedModel.load(artifact, version)})
    tests = [parse_submission(s) for s in submissions]
    tables = build_tables(tests, np.zeros(len(tests), np.int64), np.arange(len(tests), dtype=np.int64))
    deltas = test_deltas(tables.keys, tables.pairs, tables.results)
    by_user = defaultdict(list)
    for i, test in enumerate(tests):
        by_user[test.user_id].append(i)
    errors = []
    for user_id, rows in by_user.items():
        rows.sort(key=lambda i: tests[i].started_at_ms)
        for k, i in enumerate(rows):
            features = fold(user_id, [deltas[j] for j in rows[:k]])
            times = char_outcomes([tests[i]])[0][0]
            predicted = predictor.pattern_times(features, tests[i].text, tests[i].layout)
            errors.append(np.abs(predicted - times)[np.isfinite(times)])
    return np.concatenate(errors)


def test_a_pass_checks_the_stored_tests_against_the_promoted_model(settings, ray_driver, registry, promoted):
    run_ingest(settings)  # start from a drained topic: the pass below stores only these typists' tests
    submissions = simulate_tests(USERS, TESTS, seed=SEED, first_user_id=FIRST, traits=True)
    assert asyncio.run(produce_tests(settings, submissions)) == USERS * TESTS
    with Ingestor(settings) as job:
        report = job.run_pass()
        drift = job.drift()
    assert report.tests_written == USERS * TESTS
    assert drift is not None and (drift.model, drift.version) == ("pattern", promoted)
    assert drift.training_mae_ms == TRAINING_MAE_V1
    assert (drift.tests, drift.skipped, drift.errors) == (USERS * TESTS, 0, 0)
    want = expected_errors(registry, promoted, submissions)
    assert drift.chars == drift.window_chars == want.shape[0] > 500
    assert drift.live_mae_ms is not None and drift.live_mae_ms > 0
    assert drift.live_mae_ms == pytest.approx(float(want.mean()), rel=1e-5)
    print(f"drift check: {drift.cpu_s * 1000:.0f} ms CPU for {drift.tests} tests, the model's first load included")


def test_a_new_promotion_is_loaded_at_the_next_look_not_before(settings, registry, promoted, tmp_path):
    submissions = simulate_tests(2, 2, seed=SEED + 1, first_user_id=FIRST + 100, traits=True)
    tests = [parse_submission(s) for s in submissions]
    tables = build_tables(tests, np.zeros(len(tests), np.int64), np.arange(len(tests), dtype=np.int64))
    now = [1000.0]
    client = redis.Redis.from_url(settings.redis_url)
    monitor = DriftMonitor(settings, client, watch=PromotedWatch(settings, clock=lambda: now[0]))
    try:
        monitor.after_write(monitor.before_write(tables), tables)
        first = monitor.snapshot()
        assert (first.version, first.training_mae_ms, first.tests) == (promoted, TRAINING_MAE_V1, 4)
        assert first.live_mae_ms > 0 and first.errors == 0

        newer = register_pattern(registry, tmp_path / "pattern-v2", 2, TRAINING_MAE_V2)
        registry.promote("pattern", newer, "a newer version, for the drift check's test")
        now[0] += RELOAD_CHECK_S - 1  # the registry is not asked again yet: still the old version
        monitor.after_write(monitor.before_write(tables), tables)
        assert monitor.snapshot().version == promoted and monitor.snapshot().tests == 8

        now[0] += 2
        sample = monitor.before_write(tables)
        switched = monitor.snapshot()  # the new version starts a window of its own
        assert (switched.version, switched.training_mae_ms, switched.live_mae_ms) == (newer, TRAINING_MAE_V2, None)
        monitor.after_write(sample, tables)
        checked = monitor.snapshot()
        assert checked.live_mae_ms > 0 and checked.live_mae_ms != first.live_mae_ms  # another network's errors
        assert checked.window_chars == first.window_chars and checked.tests == 12
    finally:
        monitor.close()
        client.close()


def scrape(settings, wanted: dict[str, re.Pattern[str]], gone: tuple[str, ...] = (), timeout_s: float = 60):
    """The value of the first exported series matching each pattern of `wanted`, once all but those named in `gone`
    are exported and none of `gone` is (Ray's agent exports each change at its next interval)."""
    port = int(settings.ray_address.rsplit(":", 1)[1]) + 4  # Ray's metrics agent: the GCS port + 4
    deadline, found = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        found = {name: float(m.group(1)) for name, pattern in wanted.items() if (m := pattern.search(text))}
        if set(wanted) - set(gone) <= set(found) and not set(gone) & set(found):
            break
        time.sleep(2)
    return found


def series(name: str, version: str) -> re.Pattern[str]:
    labels = r"\{[^}]*" + 'model="pattern"' + r"[^}]*" + f'version="{re.escape(version)}"' + r"[^}]*\}"
    return re.compile(rf"^ray_{name}{labels} (\S+)$", re.MULTILINE)


def test_the_live_and_training_mae_reach_prometheus(settings, ray_driver, registry):
    serving = registry.promoted("pattern")
    assert serving is not None
    submissions = simulate_tests(2, 3, seed=SEED + 2, first_user_id=FIRST + 200, traits=True)
    assert asyncio.run(produce_tests(settings, submissions)) == 6
    assert run_ingest(settings).tests_written == 6
    found = scrape(
        settings, {"live": series(LIVE_MAE, serving.version), "training": series(TRAINING_MAE, serving.version)}
    )
    assert found.get("live", 0) > 0
    assert found.get("training") == serving.metrics["candidate"]["mae_ms"]


def test_a_replaced_versions_series_leave_the_export(ray_driver, settings):
    # A version replaced while the job runs is set to NaN, which Ray's exporter drops: its series leave the export,
    # so the alert never compares a version that no longer serves.
    metrics = DriftMetrics()
    old = {"old live": series(LIVE_MAE, "replaced-for-test"), "old training": series(TRAINING_MAE, "replaced-for-test")}
    metrics.record(DriftSnapshot("pattern", "replaced-for-test", 50.0, 40.0, 10, 1, 10, 0, 0, 0.0))
    assert scrape(settings, old) == {"old live": 50.0, "old training": 40.0}
    metrics.record(DriftSnapshot("pattern", "serving-for-test", 60.0, 45.0, 10, 2, 20, 0, 0, 0.0))
    new = {"new live": series(LIVE_MAE, "serving-for-test"), "new training": series(TRAINING_MAE, "serving-for-test")}
    found = scrape(settings, {**new, **old}, gone=tuple(old))
    assert found == {"new live": 60.0, "new training": 45.0}
