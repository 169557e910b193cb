"""Training data as Ray Data datasets, read from ClickHouse a group of typists at a time.

The driver lists the typists with tests in the data window and cuts them into groups of `GROUP_USERS`; a dataset of
those groups maps each (in a Ray task, anywhere in the cluster) to the group's samples: four range queries
(results, per-test key and pair rows, keystrokes) and training/samples.py. No process ever holds the whole set; Ray
Train splits the training rows between its workers. Deleted typists' rows are gone from ClickHouse, so they leave
the next training set by construction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import KEYSTROKE_TIMES_SQL
from app.config import Settings
from app.features.deltas import UNIT_COLUMNS
from training.samples import StoredTests, char_samples, trajectory_samples

GROUP_USERS = 40


def _window(since: datetime | None) -> str:
    return " AND started_at >= {since:DateTime64(3, 'UTC')}" if since is not None else ""


def typists(settings: Settings, since: datetime | None = None) -> tuple[list[int], int]:
    """The typists with at least one stored test in the window, in id order, and how many tests they have."""
    client = clickhouse_client(settings.clickhouse_url)
    try:
        rows = client.query(
            f"SELECT user_id, count() FROM test_results FINAL WHERE 1 {_window(since)} "
            "GROUP BY user_id ORDER BY user_id",
            parameters={"since": since},
        ).result_rows
    finally:
        client.close()
    return [int(r[0]) for r in rows], sum(int(r[1]) for r in rows)


def fetch_group(settings: Settings, lo: int, hi: int, since: datetime | None = None) -> StoredTests:
    """The stored rows of typists lo..hi (inclusive) in the window."""
    client = clickhouse_client(settings.clickhouse_url)
    where = "user_id BETWEEN {lo:UInt64} AND {hi:UInt64}" + _window(since)
    params: dict[str, Any] = {"lo": lo, "hi": hi, "since": since}
    try:

        def query(sql: str) -> pa.Table:
            return client.query_arrow(sql, parameters=params)

        results = query(
            "SELECT user_id, test_id, started_at, text, layout, language, wpm, accuracy "
            f"FROM test_results FINAL WHERE {where}"
        )
        keys = query(f"SELECT {UNIT_COLUMNS} FROM test_keys FINAL WHERE {where}")
        pairs = query(f"SELECT {UNIT_COLUMNS} FROM test_pairs FINAL WHERE {where}")
        strokes = query(
            f"SELECT user_id, test_id, key, {KEYSTROKE_TIMES_SQL} FROM keystrokes FINAL WHERE {where} "
            "ORDER BY user_id, test_id, seq"
        )
    finally:
        client.close()
    return StoredTests(results, keys, pairs, strokes)


def _build(groups: dict[str, np.ndarray], settings: Settings, kind: str, since: datetime | None) -> dict[str, Any]:
    parts = []
    for lo, hi in zip(groups["lo"].tolist(), groups["hi"].tolist(), strict=True):
        stored = fetch_group(settings, int(lo), int(hi), since)
        parts.append(trajectory_samples(stored) if kind == "trajectory" else char_samples(stored))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def sample_dataset(
    settings: Settings, kind: str, since: datetime | None = None
) -> tuple[ray.data.Dataset, int, int]:
    """(every sample of the window for model `kind`, how many typists, how many tests), built in Ray tasks group by
    group."""
    users, tests = typists(settings, since)
    if not users:
        raise ValueError("no stored tests in the data window: nothing to train on")
    groups = [
        {"lo": users[i], "hi": users[min(i + GROUP_USERS, len(users)) - 1]} for i in range(0, len(users), GROUP_USERS)
    ]
    dataset = ray.data.from_items(groups, override_num_blocks=len(groups)).map_batches(
        _build, batch_size=1, fn_kwargs={"settings": settings, "kind": kind, "since": since}
    )
    return dataset, len(users), tests
