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
EXPORTED_NAMES = (
    *(f"ray_{REQUEST_LATENCY}{suffix}" for suffix in ("_bucket", "_count", "_sum")),
    f"ray_{CACHE_LOOKUPS}",
    f"ray_{PRODUCE_ERRORS}",
    *(f"ray_{PREDICTOR_BATCH}{suffix}" for suffix in ("_bucket", "_count", "_sum")),
    f"ray_{PREDICTOR_SWAPS}",
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
