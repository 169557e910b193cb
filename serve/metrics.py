"""The API's Prometheus metrics, through Ray's metrics export (scraped from each node's metrics port).

Ray Serve tags them with the deployment and replica; names get Ray's `ray_` prefix on export.
"""

from __future__ import annotations

from ray.serve.metrics import Counter, Histogram

# Names as Prometheus sees them (Ray prefixes `ray_`); cluster/prometheus/keyscope-rules.yaml alerts on them.
REQUEST_LATENCY = "keyscope_api_request_latency_ms"
CACHE_LOOKUPS = "keyscope_api_cache_lookups"
PRODUCE_ERRORS = "keyscope_api_produce_errors"
PREDICTOR_BATCH = "keyscope_predictor_batch_requests"
PREDICTOR_SWAPS = "keyscope_predictor_version_swaps"
PRACTICE_LATENCY = "keyscope_practice_latency_ms"
PRACTICE_WRITTEN = "keyscope_practice_texts_written"
PRACTICE_WRITE_FAILURES = "keyscope_practice_write_failures"
EXPORTED_NAMES = (
    *(f"ray_{REQUEST_LATENCY}{suffix}" for suffix in ("_bucket", "_count", "_sum")),
    f"ray_{CACHE_LOOKUPS}",
    f"ray_{PRODUCE_ERRORS}",
    *(f"ray_{PREDICTOR_BATCH}{suffix}" for suffix in ("_bucket", "_count", "_sum")),
    f"ray_{PREDICTOR_SWAPS}",
    *(f"ray_{PRACTICE_LATENCY}{suffix}" for suffix in ("_bucket", "_count", "_sum")),
    f"ray_{PRACTICE_WRITTEN}",
    f"ray_{PRACTICE_WRITE_FAILURES}",
)

# Milliseconds; the seed's targets are 100 ms (predictions), 200 ms (insights) and 500 ms (practice text).
LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]


class ServeMetrics:
    """ApiMetrics (serve/gateway.py) for a Serve replica."""

    def __init__(self) -> None:
        self._latency = Histogram(
            REQUEST_LATENCY,
            description="Latency of API requests by route, method and status, in ms",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("route", "method", "status"),
        )
        self._cache = Counter(
            CACHE_LOOKUPS,
            description="Cache lookups of user reads by result (hit or miss); hit ratio = hit / all",
            tag_keys=("result",),
        )
        self._produce_errors = Counter(
            PRODUCE_ERRORS, description="Submissions Kafka did not acknowledge (answered 503)"
        )

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._latency.observe(seconds * 1000.0, tags={"route": route, "method": method, "status": str(status)})

    def cache_lookup(self, hit: bool) -> None:
        self._cache.inc(tags={"result": "hit" if hit else "miss"})

    def produce_error(self) -> None:
        self._produce_errors.inc()


class PredictorMetrics:
    """The predictor deployment's own: how full its batches run, and each promoted version it swaps in."""

    def __init__(self) -> None:
        self._batch = Histogram(
            PREDICTOR_BATCH,
            description="Typing-prediction requests answered per batch (one forward pass per model)",
            boundaries=[1, 2, 4, 8, 16, 32, 64],
        )
        self._swaps = Counter(
            PREDICTOR_SWAPS, description="Promoted model versions a predictor replica swapped in", tag_keys=("model",)
        )

    def batch(self, requests: int) -> None:
        self._batch.observe(requests)

    def swapped(self, changes: list[str]) -> None:
        for change in changes:  # "model version"
            self._swaps.inc(tags={"model": change.split(" ", 1)[0]})


class PracticeMetrics:
    """The practice deployment's own (serve/practice.py): how long an answer took, hit (a written text) or miss
    (a rule-based drill, or a signature with no texts yet), and what its background writer wrote."""

    def __init__(self) -> None:
        self._latency = Histogram(
            PRACTICE_LATENCY,
            description="Practice-text answers by route (user: a typist's text, signature: a signature's texts) and "
            "result (hit: written texts, miss: none yet), in ms; the hit ratio is hit / all of _count",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("route", "result"),
        )
        self._written = Counter(
            PRACTICE_WRITTEN, description="Practice texts the background writer stored", tag_keys=("generator",)
        )
        self._failures = Counter(
            PRACTICE_WRITE_FAILURES, description="Background writing rounds that failed (retried later)"
        )

    def answered(self, route: str, hit: bool, seconds: float) -> None:
        self._latency.observe(seconds * 1000.0, tags={"route": route, "result": "hit" if hit else "miss"})

    def written(self, texts: int) -> None:
        if texts:
            self._written.inc(texts, tags={"generator": "lm"})

    def write_failed(self) -> None:
        self._failures.inc()
