"""The ingest job's Prometheus metrics, exported by Ray's metrics agent (`ray_` prefix, on each node's
metrics-export port; locally the Ray head's GCS port + 4), and the alert thresholds the seed set on them."""

from __future__ import annotations

import time

from ray.util.metrics import Counter, Gauge

# Names as Prometheus sees them (Ray prefixes `ray_`); cluster/prometheus/keyscope-rules.yaml alerts on them.
CONSUMER_LAG = "keyscope_ingest_consumer_lag"
PROCESSING_LATENCY = "keyscope_ingest_processing_latency_seconds"
LAST_PASS = "keyscope_ingest_last_pass_timestamp_seconds"
TESTS_STORED = "keyscope_ingest_tests_stored"
DEAD_LETTERED = "keyscope_ingest_dead_lettered"
EXPORTED_NAMES = tuple(
    f"ray_{name}" for name in (CONSUMER_LAG, PROCESSING_LATENCY, LAST_PASS, TESTS_STORED, DEAD_LETTERED)
)


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
