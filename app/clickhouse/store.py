"""Reads and writes of keystrokes, test results, per-key stats and ingest offsets.

Writes are idempotent: every table is a ReplacingMergeTree keyed by the test, and the ingest job
skips tests whose result row already exists, so a re-run over the same offsets changes nothing.
Reads that must count exactly use FINAL, restricted to one user's key range.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from app.schemas import METRIC_FIELDS, format_started_at
from app.test_tables import TestTables

STORED_TABLES = ("keystrokes", "test_key_stats", "test_pair_stats", "test_confusions", "test_results")
SLOWEST_KEYS = 5
MIN_TIMED_PRESSES = 3  # fewer timed presses say too little about a key's speed to rank it


def write_tables(client: Client, tables: TestTables) -> TestTables:
    """Store a batch of tests, each table's rows at most once per test; returns the tests completed now.

    Tables are written in order with the result rows last, so a stored result means a complete test. A test
    whose rows reached some tables before a crash gets only its missing tables' rows on the next run: each
    test's rows enter each table once, which keeps the materialized views over them exact.
    """
    if tables.results.num_rows == 0:
        return tables
    tests = list(zip(tables.results.column("user_id").to_pylist(), tables.results.column("test_id").to_pylist()))
    done = stored_tests(client, tests)
    pending = tables.only(np.array([t not in done for t in tests], dtype=bool))
    if pending.results.num_rows == 0:
        return pending
    remaining = [t for t in tests if t not in done]
    for table, rows in pending.parts().items():
        if table != "test_results":
            present = stored_tests(client, remaining, table)
            if present:
                rows = rows.filter(pa.array([t not in present for t in _pairs(rows)], type=pa.bool_()))
        if rows.num_rows:
            client.insert_arrow(table, rows)
    return pending


def _pairs(table: pa.Table) -> list[tuple[int, str]]:
    return list(zip(table.column("user_id").to_pylist(), table.column("test_id").to_pylist()))


def stored_tests(client: Client, tests: list[tuple[int, str]], table: str = "test_results") -> set[tuple[int, str]]:
    """The (user_id, test_id) pairs among `tests` that already have rows in `table`."""
    if not tests:
        return set()
    if table not in STORED_TABLES:
        raise ValueError(f"unknown table {table!r}")
    users = sorted({u for u, _ in tests})
    ids = sorted({t for _, t in tests})
    rows = client.query(
        f"SELECT DISTINCT user_id, test_id FROM {table} "
        "WHERE user_id IN {users:Array(UInt64)} AND test_id IN {ids:Array(String)}",
        parameters={"users": users, "ids": ids},
    ).result_rows
    wanted = set(tests)
    return {(int(u), str(t)) for u, t in rows} & wanted


def load_offsets(client: Client, group: str, topic: str) -> dict[int, int]:
    """The next offset to read per partition, as last stored by the ingest job."""
    rows = client.query(
        "SELECT partition, next_offset FROM ingest_offsets FINAL "
        "WHERE consumer_group = {g:String} AND topic = {t:String}",
        parameters={"g": group, "t": topic},
    ).result_rows
    return {int(p): int(o) for p, o in rows}


def store_offsets(client: Client, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Record that everything before these offsets is stored."""
    if not offsets:
        return
    now = datetime.now(UTC)
    rows = [[group, topic, int(p), int(o), now] for p, o in sorted(offsets.items())]
    client.insert(
        "ingest_offsets", rows, column_names=["consumer_group", "topic", "partition", "next_offset", "updated_at"]
    )


def _metrics_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {
        "test_id": row["test_id"],
        "started_at": format_started_at(int(row["started_ms"])),
        "layout": row["layout"],
        "language": row["language"],
        "keystroke_count": int(row["keystroke_count"]),
        "duration_ms": int(row["duration_ms"]),
    }
    out.update({name: float(row[name]) for name in METRIC_FIELDS})
    return out


def user_tests(client: Client, user_id: int, limit: int) -> list[dict[str, Any]]:
    """The user's newest tests, newest first, with their metrics."""
    result = client.query(
        "SELECT test_id, toUnixTimestamp64Milli(started_at) AS started_ms, layout, language, keystroke_count, "
        f"duration_ms, {', '.join(METRIC_FIELDS)} FROM test_results FINAL WHERE user_id = {{u:UInt64}} "
        "ORDER BY started_at DESC, test_id DESC LIMIT {n:UInt32}",
        parameters={"u": user_id, "n": limit},
    )
    return [_metrics_row(dict(zip(result.column_names, row))) for row in result.result_rows]


def user_insights(client: Client, user_id: int) -> dict[str, Any] | None:
    """Test count, mean wpm and accuracy, per-key time-to-type and error rate, slowest keys; None if no tests."""
    summary = client.query(
        "SELECT count(), avg(wpm), avg(accuracy) FROM test_results FINAL WHERE user_id = {u:UInt64}",
        parameters={"u": user_id},
    ).result_rows[0]
    if int(summary[0]) == 0:
        return None
    key_rows = client.query(
        "SELECT key, sum(presses), sum(errors), sum(timed_presses), sum(time_to_type_sum_ms) "
        "FROM test_key_stats FINAL WHERE user_id = {u:UInt64} GROUP BY key ORDER BY key",
        parameters={"u": user_id},
    ).result_rows
    keys = []
    for key, presses, errors, timed, time_sum in key_rows:
        keys.append(
            {
                "key": key,
                "presses": int(presses),
                "errors": int(errors),
                "error_rate": int(errors) / int(presses) if presses else 0.0,
                "timed_presses": int(timed),
                "mean_time_to_type_ms": int(time_sum) / int(timed) if timed else None,
            }
        )
    ranked = [k for k in keys if k["timed_presses"] >= MIN_TIMED_PRESSES]
    slowest = sorted(ranked, key=lambda k: (-k["mean_time_to_type_ms"], k["key"]))[:SLOWEST_KEYS]
    return {
        "user_id": user_id,
        "test_count": int(summary[0]),
        "mean_wpm": float(summary[1]),
        "mean_accuracy": float(summary[2]),
        "keys": keys,
        "slowest_keys": slowest,
    }
