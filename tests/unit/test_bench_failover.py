"""The figures of `keyscope bench failover` from a load result, and its table (no services)."""

from __future__ import annotations

import pytest

from bench.failover import Outcome, outcome, table_rows
from bench.serve import LoadResult


def result(statuses: dict[int, int], connection_errors: int, latencies_s: list[float]) -> LoadResult:
    load = LoadResult(requests=sum(statuses.values()), seconds=20.0, latencies_s=sorted(latencies_s))
    load.statuses.update(statuses)
    load.errors = sum(n for s, n in statuses.items() if not (200 <= s < 300 or s == 304)) + connection_errors
    return load


def test_failed_requests_are_bad_statuses_and_connection_errors_over_every_request_sent():
    load = result({200: 9_960, 304: 10, 500: 16, 429: 4}, 10, [0.01] * 9_890 + [0.5] * 100)
    o = outcome("replica", "ingress replica (pid 7)", load)
    assert (o.answered, o.non_2xx, o.connection_errors) == (9_990, 20, 10)
    assert o.requests == 10_000 and o.failed == 30
    assert o.failed_share == 0.003
    assert o.statuses == ((429, 4), (500, 16))
    # Of 9,990 latencies, 9,890 at 10 ms then 100 at 500 ms: rank 9,989 × 0.99 = 9,889.11 lies 0.11 of the way
    # from the last 10 ms to the first 500 ms.
    assert o.p99_ms == pytest.approx(10 + 0.11 * 490)


def test_a_run_without_responses_has_no_share_and_no_latency():
    o = outcome("node", "worker node", result({}, 0, []))
    assert o.requests == o.failed == 0 and o.failed_share == 0.0 and o.p99_ms is None


def test_the_table_has_a_header_and_a_row_per_scenario():
    rows = table_rows(
        [
            Outcome("none", "-", 22_161, 0, 0, 136.04),
            Outcome("node", "worker node (8 processes, 1 ingress replica)", 16_081, 0, 1, 192.3),
        ]
    )
    assert rows[0] == ["scenario", "killed", "requests", "failed", "non-2xx", "connection", "failed %", "p99 ms"]
    assert rows[1] == ["none", "-", "22,161", "0", "0", "0", "0.000", "136.0"]
    assert rows[2] == [
        "node", "worker node (8 processes, 1 ingress replica)", "16,082", "1", "0", "1", "0.006", "192.3"
    ]  # fmt: skip
