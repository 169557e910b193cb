"""The ClickHouse user-data store and the tombstones on the real engine (chDB in process, every migration applied):
discovery, export (aggregate states finalized), counts, deletion of one user among several."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import app.user_data as ud
from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations
from app.clickhouse.store import write_tables
from app.config import Settings
from app.schemas import parse_submission
from app.tables import build_tables
from devstack.simulate import simulate_tests

USERS = (501, 502, 503)


@pytest.fixture
def chdb(tmp_path):
    url = f"chdb://{tmp_path / 'ch'}"
    client = clickhouse_client(url)
    apply_migrations(client)
    tests = [parse_submission(s) for s in simulate_tests(len(USERS), 3, seed=12, first_user_id=USERS[0])]
    write_tables(client, build_tables(tests, np.zeros(len(tests), np.int64), np.arange(len(tests), dtype=np.int64)))
    client.insert(
        "user_insights",
        [[u, datetime.now(UTC), datetime.now(UTC), 3, "{}", "{}", "{}"] for u in USERS],
        column_names=["user_id", "computed_at", "covered_until", "test_count", "insights", "keys", "progress"],
    )
    # What the archive job keeps of a typist whose oldest tests it anonymized (migration 0013).
    client.insert("user_first_tests", [[u, datetime(2025, 1, 1, tzinfo=UTC)] for u in USERS])
    try:
        yield url, client
    finally:
        client.close()


def direct_counts(client, user_id: int, tables) -> dict[str, int]:
    return {
        t.name: int(client.query(f"SELECT count() FROM {t.name} FINAL WHERE user_id = {user_id}").result_rows[0][0])
        for t in tables
    }


def test_every_user_table_is_discovered_and_exported_with_counts_that_match(chdb):
    url, client = chdb
    store = ud.ClickHouseStore(Settings(clickhouse_url=url))
    try:
        tables = store.tables()
        names = {t.name for t in tables}
        expected = {"keystrokes", "test_results", "test_keys", "test_pairs", "test_confusions", "user_insights"}
        expected |= {"user_first_tests"}
        assert expected <= names
        assert "user_tombstones" not in names and not any(n.endswith("_mv") for n in names)
        files = dict(store.export(USERS[0]))
        counts = store.count_parts(USERS[0])
        assert set(files) == {f"{name}.jsonl" for name in names}
        assert {name.removesuffix(".jsonl"): data.count(b"\n") for name, data in files.items()} == counts
        assert counts == direct_counts(client, USERS[0], tables)
        assert all(counts[name] > 0 for name in expected)
        rows = [json.loads(line) for line in files["test_keys.jsonl"].splitlines()]
        assert {row["user_id"] for row in rows} == {USERS[0]}
        for row in rows:  # one row per test, its keys' stats as parallel arrays, each press's time in a list
            assert len(row["key"]) == len(row["presses"]) == len(row["time_to_type_ms"]) > 0
            assert [len(times) for times in row["time_to_type_ms"]] == row["timed_presses"]
        result = json.loads(files["test_results.jsonl"].splitlines()[0])
        assert result["started_at"].endswith("Z") and isinstance(result["user_id"], int)
    finally:
        store.close()


def test_deleting_one_user_empties_every_table_of_theirs_and_nothing_else(chdb):
    url, client = chdb
    store = ud.ClickHouseStore(Settings(clickhouse_url=url))
    try:
        tables = store.tables()
        ud.record_tombstone(client, 999, datetime.now(UTC))
        before = {u: direct_counts(client, u, tables) for u in USERS}
        per_user_presses = "SELECT user_id, sum(arraySum(presses)) FROM test_keys GROUP BY user_id ORDER BY 1"
        sums_before = client.query(per_user_presses).result_rows
        deleted = store.delete_parts(USERS[1])
        assert deleted == before[USERS[1]]
        assert store.count(USERS[1]) == 0
        # Physically gone (not a lightweight-delete mask): no row without FINAL either.
        for table in tables:
            raw = client.query(f"SELECT count() FROM {table.name} WHERE user_id = {USERS[1]}").result_rows[0][0]
            assert raw == 0, table.name
        for user in (USERS[0], USERS[2]):
            assert direct_counts(client, user, tables) == before[user]
        sums_after = client.query(per_user_presses).result_rows
        assert sums_after == [row for row in sums_before if row[0] != USERS[1]]
        assert ud.load_tombstones(client, [999]).keys() == {999}  # the tombstones are not user data to delete
        assert store.delete(USERS[1]) == 0  # idempotent
    finally:
        store.close()


def test_a_table_added_later_is_covered_without_registering_it(chdb):
    url, client = chdb
    client.command("CREATE TABLE survey_answers (user_id UInt64, arm String) ENGINE = MergeTree ORDER BY user_id")
    client.command(f"INSERT INTO survey_answers VALUES ({USERS[0]}, 'a'), ({USERS[1]}, 'b')")
    store = ud.ClickHouseStore(Settings(clickhouse_url=url))
    try:
        assert store.count_parts(USERS[0])["survey_answers"] == 1
        assert dict(store.export(USERS[0]))["survey_answers.jsonl"] == b'{"user_id":%d,"arm":"a"}\n' % USERS[0]
        store.delete(USERS[0])
        assert store.count_parts(USERS[0])["survey_answers"] == 0
        assert store.count_parts(USERS[1])["survey_answers"] == 1
    finally:
        store.close()


def test_an_aggregating_table_is_exported_with_its_states_finalized_and_deleted(chdb):
    url, client = chdb
    client.command(
        "CREATE TABLE key_speed_daily (user_id UInt64, day Date, presses SimpleAggregateFunction(sum, UInt64), "
        "median AggregateFunction(quantileTiming(0.5), UInt32)) ENGINE = AggregatingMergeTree ORDER BY (user_id, day)"
    )
    for ms in (100, 300, 200):  # three inserts, three parts: the export merges the states (FINAL)
        client.command(
            f"INSERT INTO key_speed_daily SELECT {USERS[0]}, '2026-11-01', 1, quantileTimingState(0.5)(toUInt32({ms}))"
        )
    store = ud.ClickHouseStore(Settings(clickhouse_url=url))
    try:
        rows = [json.loads(line) for line in dict(store.export(USERS[0]))["key_speed_daily.jsonl"].splitlines()]
        assert rows == [{"user_id": USERS[0], "day": "2026-11-01", "presses": 3, "median": 200}]
        assert store.count_parts(USERS[0])["key_speed_daily"] == 1
        store.delete(USERS[0])
        assert store.count_parts(USERS[0])["key_speed_daily"] == 0
    finally:
        store.close()


def test_tombstones_keep_the_latest_deletion_per_user(chdb):
    _, client = chdb
    first = datetime(2026, 1, 1, tzinfo=UTC)
    ud.record_tombstone(client, 7, first)
    ud.record_tombstone(client, 7, first + timedelta(seconds=5))
    ud.record_tombstone(client, 8, first - timedelta(days=1))
    ms = int(first.timestamp() * 1000)
    assert ud.load_tombstones(client) == {7: ms + 5000, 8: ms - 86_400_000}
    assert ud.load_tombstones(client, [8, 9]) == {8: ms - 86_400_000}
    assert ud.load_tombstones(client, []) == {}
    assert ud.tombstoned_since(client, ms) == [7]
