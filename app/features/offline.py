"""Point-in-time features from ClickHouse: a typist's UserFeatures from only the tests that started before a cut,
folded by the same code as the online store (so training sees what serving would have seen at that moment)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from app.features.deltas import RESULT_COLUMNS, UNIT_COLUMNS, TestDelta, test_deltas
from app.features.summary import UserFeatures, fold


def _where(user_ids: list[int] | None, lo: int | None, hi: int | None) -> str:
    clauses = ["started_at < {cut:DateTime64(3, 'UTC')}"]
    if user_ids is not None:
        clauses.append("user_id IN {users:Array(UInt64)}")
    if lo is not None and hi is not None:
        clauses.append("user_id BETWEEN {lo:UInt64} AND {hi:UInt64}")
    return " AND ".join(clauses)


def stored_deltas(
    client: Client,
    cut: datetime,
    user_ids: list[int] | None = None,
    user_range: tuple[int, int] | None = None,
) -> list[TestDelta]:
    """The deltas of every stored test that started before `cut`, of these users (or of a user-id range)."""
    lo, hi = user_range if user_range is not None else (None, None)
    where = _where(user_ids, lo, hi)
    params = {"cut": cut, "users": user_ids or [], "lo": lo or 0, "hi": hi or 0}

    def query(table: str, columns: str) -> pa.Table:
        return client.query_arrow(f"SELECT {columns} FROM {table} FINAL WHERE {where}", parameters=params)

    results = query("test_results", RESULT_COLUMNS)
    if results.num_rows == 0:
        return []
    return test_deltas(query("test_keys", UNIT_COLUMNS), query("test_pairs", UNIT_COLUMNS), results)


def features_at(client: Client, user_ids: list[int], cut: datetime) -> dict[int, UserFeatures]:
    """Each typist's features from their tests that started before `cut` (typists without any are left out)."""
    by_user: dict[int, list[TestDelta]] = defaultdict(list)
    for delta in stored_deltas(client, cut, user_ids=user_ids):
        by_user[delta.user_id].append(delta)
    return {user_id: fold(user_id, deltas) for user_id, deltas in by_user.items()}
