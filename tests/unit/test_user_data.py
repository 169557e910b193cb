"""The user-data registry's pure pieces: table discovery plans, SQL, export parts and manifest, the ingest filter for
deleted users. No services (ClickHouse SQL is only parsed, by chDB's `formatQuery`)."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest

import app.user_data as ud
import pipelines.ingest.analyse as analyse
from app.clickhouse.client import clickhouse_client
from app.codec import decode_test, encode_test
from app.config import Settings
from app.kafka import user_key
from app.schemas import parse_submission
from devstack.simulate import simulate_tests
from pipelines.ingest.report import IngestReport

COLUMNS = [
    ("keystrokes", "user_id", "UInt64"),
    ("keystrokes", "key", "LowCardinality(String)"),
    ("key_daily", "user_id", "UInt64"),
    ("key_daily", "presses", "SimpleAggregateFunction(sum, UInt64)"),
    ("key_daily", "time_to_type", "AggregateFunction(quantilesTiming(0.5, 0.95), UInt32)"),
    ("key_daily_mv", "user_id", "UInt64"),
    ("user_tombstones", "user_id", "UInt64"),
    ("plain", "user_id", "UInt64"),
]
TABLES = [
    ("keystrokes", "ReplacingMergeTree", "ReplacingMergeTree PARTITION BY toYYYYMM(started_at) ORDER BY (user_id)"),
    ("key_daily", "AggregatingMergeTree", "AggregatingMergeTree ORDER BY (user_id, key, day)"),
    ("key_daily_mv", "MaterializedView", ""),
    ("user_tombstones", "ReplacingMergeTree", "ReplacingMergeTree(deleted_at) ORDER BY user_id"),
    ("plain", "MergeTree", "MergeTree ORDER BY user_id"),
]


def test_discovery_keeps_stored_tables_and_skips_views_and_tombstones():
    plan = {t.name: t for t in ud.plan_user_tables(TABLES, COLUMNS)}
    assert sorted(plan) == ["key_daily", "keystrokes", "plain"]
    assert plan["keystrokes"].final and plan["key_daily"].final and not plan["plain"].final
    assert plan["keystrokes"].delete_from == "keystrokes" and plan["keystrokes"].on_cluster is None


def test_sql_reads_final_finalizes_aggregate_states_and_deletes_with_a_synchronous_mutation():
    plan = {t.name: t for t in ud.plan_user_tables(TABLES, COLUMNS)}
    daily = plan["key_daily"]
    assert daily.export_sql(7) == (
        "SELECT `user_id`, `presses`, finalizeAggregation(`time_to_type`) AS `time_to_type` "
        "FROM `key_daily` FINAL WHERE user_id = 7"
    )
    assert plan["plain"].count_sql(7) == "SELECT count() FROM `plain` WHERE user_id = 7"
    assert daily.delete_sql(7) == "ALTER TABLE `key_daily` DELETE WHERE user_id = 7 SETTINGS mutations_sync = 2"
    with pytest.raises(ValueError):
        daily.delete_sql(0)
    with pytest.raises(ValueError):
        daily.export_sql("7 OR 1")  # type: ignore[arg-type]


def test_on_a_cluster_the_distributed_table_is_read_and_its_local_table_deleted_on_cluster():
    tables = [
        ("keystrokes", "Distributed", "Distributed('{cluster}', 'default', 'keystrokes_local', cityHash64(user_id))"),
        ("keystrokes_local", "ReplicatedReplacingMergeTree", "ReplicatedReplacingMergeTree('/t/{shard}', '{replica}')"),
        (
            "user_tombstones",
            "Distributed",
            "Distributed('{cluster}', 'default', 'user_tombstones_local', cityHash64(user_id))",
        ),
        ("user_tombstones_local", "ReplicatedReplacingMergeTree", "ReplicatedReplacingMergeTree('/t', '{replica}')"),
    ]
    columns = [(t, "user_id", "UInt64") for t, _, _ in tables]
    (table,) = ud.plan_user_tables(tables, columns)
    assert (table.name, table.delete_from, table.on_cluster, table.final) == (
        "keystrokes",
        "keystrokes_local",
        "{cluster}",
        True,
    )
    assert table.count_sql(3) == "SELECT count() FROM `keystrokes` FINAL WHERE user_id = 3"
    assert table.delete_sql(3) == (
        "ALTER TABLE `keystrokes_local` ON CLUSTER '{cluster}' DELETE WHERE user_id = 3 SETTINGS mutations_sync = 2"
    )


def test_a_table_keyscope_cannot_delete_from_is_an_error_not_a_silent_gap():
    with pytest.raises(ud.UserDataError, match="cannot delete from that engine"):
        ud.plan_user_tables([("events", "Log", "Log")], [("events", "user_id", "UInt64")])


def test_every_generated_statement_parses_as_clickhouse_sql(tmp_path):
    plan = ud.plan_user_tables(TABLES, COLUMNS)
    client = clickhouse_client(f"chdb://{tmp_path / 'ch'}")
    try:
        for table in plan:
            for sql in (table.export_sql(5), table.count_sql(5), table.delete_sql(5)):
                formatted = client.query("SELECT formatQuery({sql:String})", parameters={"sql": sql})
                assert formatted.result_rows[0][0], sql
    finally:
        client.close()


def test_split_lines_cuts_parts_at_line_ends():
    lines = [f'{{"n":{i}}}\n'.encode() for i in range(100)]
    stream = [b"".join(lines)[i : i + 7] for i in range(0, len(b"".join(lines)), 7)]  # chunks cut mid-line
    parts = list(ud.split_lines(stream, limit=100))
    assert len(parts) > 5 and all(p.endswith(b"\n") for p in parts)
    assert b"".join(parts) == b"".join(lines)
    assert all(len(p) <= 100 for p in parts)
    assert list(ud.split_lines([], limit=100)) == [b""]  # an empty table is still one (empty) file
    long_line = b"x" * 250 + b"\n"
    assert list(ud.split_lines([long_line[:100], long_line[100:], b"y\n"], limit=100)) == [long_line, b"y\n"]


def test_part_names_and_records():
    assert [ud.part_name("keystrokes", i) for i in (1, 2)] == ["keystrokes.jsonl", "keystrokes.0002.jsonl"]
    assert ud._part_of("keystrokes.0002.jsonl") == ud._part_of("keystrokes.jsonl") == "keystrokes"
    assert ud._records("a.jsonl", b"{}\n{}\n") == 2 and ud._records("a.jsonl", b"{}\n{}") == 2
    assert ud._records("a.jsonl", b"") == 0 and ud._records("a.parquet", b"PAR1") is None
    with pytest.raises(ud.UserDataError):
        ud._safe_path("x", "../etc/passwd")


def test_redis_keys_of_a_user_are_the_cache_its_generation_and_the_rate_limit_bucket():
    assert ud.user_redis_keys(42) == [
        "keyscope:user:42", "keyscope:user:42:gen", "keyscope:rl:user:42", "keyscope:user:42:live"
    ]


def test_a_pending_message_is_exported_as_the_submission_it_was():
    submission = simulate_tests(1, 1, seed=3)[0]
    test = parse_submission(submission)
    exported = ud._submission(decode_test(encode_test(test)))
    again = parse_submission(json.loads(json.dumps(exported)))
    assert exported["user_id"] == test.user_id and exported["test_id"] == test.test_id
    assert again.keys() == test.keys() and again.down_ms.tolist() == test.down_ms.tolist()
    assert again.up_ms.tolist() == test.up_ms.tolist() and again.started_at_ms == test.started_at_ms


# --- the registry, export and deletion with stores of our own ---------------------------------------------------


class FakeStore:
    def __init__(self, name: str, data: dict[int, list[str]], files: str = "jsonl") -> None:
        self.name, self.data, self.files, self.closed = name, data, files, False

    def export(self, user_id: int) -> Iterator[tuple[str, bytes]]:
        rows = self.data.get(user_id, [])
        if self.files == "jsonl":
            yield "rows.jsonl", b"".join(json.dumps({"v": r}).encode() + b"\n" for r in rows)
        else:
            yield "rows.bin", "|".join(rows).encode()

    def count(self, user_id: int) -> int:
        return len(self.data.get(user_id, []))

    def delete(self, user_id: int) -> int:
        return len(self.data.pop(user_id, []))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def registry(monkeypatch):
    """An empty registry for the test; the real one is restored after."""
    monkeypatch.setattr(ud, "_SOURCES", [])
    monkeypatch.setattr(ud, "_CACHES", [])
    return ud


def test_registration_is_idempotent_and_caches_come_after_sources(registry):
    made: list[FakeStore] = []

    def factory(name, **kw):
        def make(settings):
            made.append(FakeStore(name, {}, **kw))
            return made[-1]

        return make

    cache, a, b = factory("cache"), factory("a"), factory("b")
    registry.register_store(cache, cache=True)
    registry.register_store(a)
    registry.register_store(a)
    registry.register_store(b)
    assert registry.store_factories() == [a, b, cache]
    assert [s.name for s in registry.open_stores(Settings())] == ["a", "b", "cache"]
    assert [s.name for s in registry.open_stores(Settings(), ["cache"])] == ["cache"]
    with pytest.raises(ud.UserDataError, match="no user-data store"):
        registry.open_stores(Settings(), ["nope"])
    registry.register_store(factory("a"))
    with pytest.raises(ud.UserDataError, match="share a name"):
        registry.open_stores(Settings())
    assert [s.closed for s in made[3:6]] == [True, True, False]  # those not asked for are closed
    assert all(s.closed for s in made[6:])  # and every store opened for a failed call


def test_the_builtin_stores_are_registered():
    names = [factory.__name__ for factory in ud.store_factories()]
    assert names[:2] == ["ClickHouseStore", "KafkaPendingStore"] and names[-1] == "RedisStore"


def test_export_writes_each_store_and_a_manifest_of_what_it_holds(registry, tmp_path):
    stores = {
        "alpha": FakeStore("alpha", {7: ["a", "b", "c"], 8: ["x"]}),
        "beta": FakeStore("beta", {7: ["p", "q"]}, files="bin"),
    }
    for name in stores:
        registry.register_store(lambda settings, n=name: stores[n])
    manifest = registry.export_user(Settings(), 7, tmp_path / "out" / "u7.zip")
    with zipfile.ZipFile(tmp_path / "out" / "u7.zip") as archive:
        assert sorted(archive.namelist()) == ["alpha/rows.jsonl", "beta/rows.bin", "manifest.json"]
        assert json.loads(archive.read("manifest.json")) == manifest
        assert archive.read("alpha/rows.jsonl").count(b"\n") == 3
    assert manifest["user_id"] == 7 and manifest["format"] == ud.EXPORT_FORMAT
    assert manifest["stores"]["alpha"]["count"] == 3 and manifest["stores"]["alpha"]["parts"] == {"rows": 3}
    assert manifest["stores"]["beta"]["count"] == 2  # not JSON Lines: the store's own count
    assert manifest["total"] == 5
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_a_failing_store_leaves_no_archive(registry, tmp_path):
    class Broken(FakeStore):
        def export(self, user_id):
            yield "rows.jsonl", b"{}\n"
            raise ConnectionError("store down")

    registry.register_store(lambda settings: Broken("broken", {}))
    with pytest.raises(ConnectionError):
        registry.export_user(Settings(), 7, tmp_path / "u7.zip")
    assert list(tmp_path.iterdir()) == []


def test_erase_deletes_from_every_store_and_reports_counts(registry):
    alpha, beta = FakeStore("alpha", {7: ["a", "b"], 8: ["x"]}), FakeStore("beta", {7: ["p"]})
    registry.register_store(lambda settings: beta, cache=True)
    registry.register_store(lambda settings: alpha)
    result = registry.erase_user(Settings(), 7)
    assert result == {"alpha": {"count": 2, "parts": {}}, "beta": {"count": 1, "parts": {}}}
    assert alpha.data == {8: ["x"]} and beta.data == {} and alpha.closed and beta.closed
    assert registry.count_user(Settings(), 8) == {"alpha": {"count": 1, "parts": {}}, "beta": {"count": 0, "parts": {}}}


# --- the ingest job drops deleted users' messages ----------------------------------------------------------------


def _messages(tests, stamps) -> pa.Table:
    return pa.table(
        {
            "offset": pa.array(range(len(tests)), pa.int64()),
            "key": pa.array([user_key(t.user_id) for t in tests], pa.binary()),
            "value": pa.array([encode_test(t) for t in tests], pa.binary()),
            "partition": pa.array([0] * len(tests), pa.int32()),
            "timestamp": pa.array(stamps, pa.int64()),
        }
    )


def test_messages_of_a_deleted_user_from_before_the_deletion_are_dropped_and_later_ones_kept():
    tests = [parse_submission(s) for s in simulate_tests(2, 3, seed=5, first_user_id=10)]
    deleted, kept = 10, 11
    stamps = [1_000, 2_000, 3_000, 1_000, 2_000, 3_000]
    assert [t.user_id for t in tests] == [deleted] * 3 + [kept] * 3
    tables, dead, duplicates, dropped, _ = analyse.unpack(
        analyse.analyse_messages(_messages(tests, stamps), tombstones={deleted: 2_000})
    )
    assert dropped == 2 and dead == [] and duplicates == 0  # at or before 2,000 ms: dropped
    (batch,) = tables
    assert sorted(zip(batch.results.column("user_id").to_pylist(), batch.results.column("test_id").to_pylist())) == [
        (deleted, tests[2].test_id),
        *((kept, t.test_id) for t in tests[3:]),
    ]
    assert set(batch.keystrokes.column("user_id").to_pylist()) == {deleted, kept}
    # No tombstones: nothing dropped.
    *_, dropped, _ = analyse.unpack(analyse.analyse_messages(_messages(tests, stamps)))
    assert dropped == 0


def test_a_deleted_users_invalid_message_is_dropped_not_dead_lettered():
    test = parse_submission(simulate_tests(1, 1, seed=6, first_user_id=20)[0])
    bad = parse_submission(simulate_tests(1, 1, seed=7, first_user_id=20)[0])
    # A key code that names no key: it decodes, then fails the keystroke checks (a dead letter for anyone else).
    raw = encode_test(dataclasses.replace(bad, key_codes=np.full_like(bad.key_codes, -999)))
    messages = pa.table(
        {
            "offset": pa.array([0, 1], pa.int64()),
            "key": pa.array([user_key(20)] * 2, pa.binary()),
            "value": pa.array([encode_test(test), raw], pa.binary()),
            "partition": pa.array([0, 0], pa.int32()),
            "timestamp": pa.array([5, 6], pa.int64()),
        }
    )
    _, dead, _, _, _ = analyse.unpack(analyse.analyse_messages(messages))
    assert len(dead) == 1  # the invalid one is a dead letter for a user who is not deleted
    tables, dead, _, dropped, _ = analyse.unpack(analyse.analyse_messages(messages, tombstones={20: 10}))
    assert dead == [] and dropped == 2 and tables[0].results.num_rows == 0


def test_the_report_counts_dropped_messages():
    report = IngestReport(messages=3, dropped_deleted=2)
    total = IngestReport()
    total.add(report)
    assert total.dropped_deleted == 2 and "2 of deleted users dropped" in total.line()
    assert "deleted" not in IngestReport(messages=1).line()
