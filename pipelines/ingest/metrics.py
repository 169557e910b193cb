"""The ingest job's Prometheus metrics, exported by Ray's metrics agent (`ray_` prefix, on each node's
metrics-export port; locally the Ray head's GCS port + 4), and the alert thresholds the seed set on them."""

from __future__ import annotations

import math
import time

from ray.util.metrics import Counter, Gauge

from pipelines.ingest.drift import DriftSnapshot

# Names as Prometheus sees them (Ray prefixes `ray_`); cluster/prometheus/keyscope-rules.yaml alerts on them.
CONSUMER_LAG = "keyscope_ingest_consumer_lag"
PROCESSING_LATENCY = "keyscope_ingest_processing_latency_seconds"
LAST_PASS = "keyscope_ingest_last_pass_timestamp_seconds"
TESTS_STORED = "keyscope_ingest_tests_stored"
DEAD_LETTERED = "keyscope_ingest_dead_lettered"
# The drift check's (drift.py), per model and promoted version.
LIVE_MAE = "keyscope_model_live_mae_ms"
TRAINING_MAE = "keyscope_model_training_mae_ms"
DRIFT_TESTS = "keyscope_model_drift_tests_checked"
DRIFT_ERRORS = "keyscope_model_drift_check_errors"
EXPORTED_NAMES = tuple(
    f"ray_{name}"
    for name in (
        CONSUMER_LAG, PROCESSING_LATENCY, LAST_PASS, TESTS_STORED, DEAD_LETTERED,
        LIVE_MAE, TRAINING_MAE, DRIFT_TESTS, DRIFT_ERRORS,
    )
)  # fmt: skip


class IngestMetrics:
    """Gauges and counters of the ingest job, updated once per pass."""

    def __init__(self, topic: str) -> None:
        self._tags = {"topic": topic}
        keys = ("topic",)
        self.lag = Gauge(CONSUMER_LAG, "Messages on the topic not yet stored (after the last pass)", keys)
        self.latency = Gauge(
            PROCESSING_LATENCY, "Oldest message of the last pass: seconds from Kafka append to stored", keys
        )
        self.last_pass = Gauge(LAST_PASS, "Unix time the last pass finished", keys)
        self.stored = Counter(TESTS_STORED, "Typing tests stored", keys)
        self.dead = Counter(DEAD_LETTERED, "Messages sent to the dead-letter topic", keys)

    def record_pass(self, lag: int, oldest_message_ms: int | None, stored: int, dead: int) -> None:
        now = time.time()
        self.lag.set(lag, tags=self._tags)
        self.latency.set(max(0.0, now - oldest_message_ms / 1000) if oldest_message_ms else 0.0, tags=self._tags)
        self.last_pass.set(now, tags=self._tags)
        if stored:
            self.stored.inc(stored, tags=self._tags)
        if dead:
            self.dead.inc(dead, tags=self._tags)


def drift_gauges(snapshot: DriftSnapshot, retired: list[str]) -> list[tuple[str, dict[str, str], float]]:
    """(gauge, tags, value) to set for the drift check's state: the live and training MAE of the version checked
    now (each once it is known), and NaN for each version checked before it in this job. A gauge keeps its last
    value per tag set for the process's life, and Ray offers no way to remove one; a NaN value Ray's exporter drops,
    so a replaced version's series leave the export instead of still comparing (and alerting) as if it served."""
    points: list[tuple[str, dict[str, str], float]] = []
    for version in retired:
        tags = {"model": snapshot.model, "version": version}
        points += [(LIVE_MAE, tags, math.nan), (TRAINING_MAE, tags, math.nan)]
    if snapshot.version is not None:
        tags = {"model": snapshot.model, "version": snapshot.version}
        if snapshot.live_mae_ms is not None:
            points.append((LIVE_MAE, tags, snapshot.live_mae_ms))
        if snapshot.training_mae_ms is not None:
            points.append((TRAINING_MAE, tags, snapshot.training_mae_ms))
    return points


class DriftMetrics:
    """The drift check's gauges and counters, updated once per pass from its snapshot."""

    def __init__(self) -> None:
        keys = ("model", "version")
        self._gauges = {
            LIVE_MAE: Gauge(LIVE_MAE, "Pattern model: MAE (ms) on the latest stored tests", keys),
            TRAINING_MAE: Gauge(TRAINING_MAE, "Pattern model: held-out MAE (ms) when the version was trained", keys),
        }
        self._tests = Counter(DRIFT_TESTS, "Stored tests the drift check compared with the model", ("model",))
        self._errors = Counter(DRIFT_ERRORS, "Drift checks that failed (the ingest pass went on)", ("model",))
        self._version: str | None = None
        self._counted = (0, 0)  # tests, errors already exported

    def record(self, snapshot: DriftSnapshot) -> None:
        retired = [self._version] if self._version is not None and self._version != snapshot.version else []
        for name, tags, value in drift_gauges(snapshot, retired):
            self._gauges[name].set(value, tags=tags)
        self._version = snapshot.version or self._version
        tags = {"model": snapshot.model}
        tests, errors = snapshot.tests - self._counted[0], snapshot.errors - self._counted[1]
        if tests:
            self._tests.inc(tests, tags=tags)
        if errors:
            self._errors.inc(errors, tags=tags)
        self._counted = (snapshot.tests, snapshot.errors)
