"""`keyscope migrate mysql` against the real MariaDB (a database of its own per test, dropped after) and real
ClickHouse (chDB in a temporary directory): the import, its resumption after crashes, re-runs, rejections."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest

from app import faults
from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import STORED_TABLES, user_unit_aggregates, write_tables
from app.schemas import format_started_at, parse_submission
from app.tables import build_tables
from bench.storage import key_errors_by_test, key_timings_json
from devstack.simulate import simulate_tests
from pipelines.migrate_mysql import (
    MIGRATED_PARTITION,
    MySQLSource,
    load_progress,
    migrate,
    parse_dsn,
    stored_rejections,
)
from tests.chdb_stores import chdb_databases

FIRST_USER = 9_100_001  # far from the ids other tests use
CREATE = """CREATE TABLE {table} (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL,
    test_result_id BIGINT UNSIGNED NULL,
    key_timings JSON NOT NULL,
    key_errors JSON NULL,
    health_score DOUBLE NULL,
    created_at DATETIME(3) NULL,
    text TEXT NULL,
    KEY idx_analytics_user_time (user_id, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"""
INSERT = (
    "INSERT INTO {table} (user_id, test_result_id, key_timings, key_errors, health_score, created_at, text) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


@dataclass
class MariaDB:
    database: str
    connection: object

    @property
    def source(self) -> MySQLSource:
        return parse_dsn(self.dsn)

    @property
    def dsn(self) -> str:
        return f"mysql://root@127.0.0.1:3306/{self.database}"

    def execute(self, sql: str, rows: list[tuple] | None = None) -> list[tuple]:
        with self.connection.cursor() as cursor:
            if rows is None:
                cursor.execute(sql)
            else:
                cursor.executemany(sql, rows)
            return list(cursor.fetchall())

    def ids(self, table: str = "keystroke_analytics") -> list[int]:
        return [row[0] for row in self.execute(f"SELECT id FROM {table} ORDER BY id")]


@pytest.fixture
def mariadb():
    import pymysql

    try:
        connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", charset="utf8mb4", autocommit=True)
    except pymysql.err.OperationalError as exc:
        pytest.skip(f"no MariaDB at 127.0.0.1:3306: {exc}")
    database = f"keyscope_migrate_{secrets.token_hex(4)}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
        cursor.execute(f"USE {database}")
    try:
        yield MariaDB(database, connection)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        connection.close()


@pytest.fixture
def clickhouse(tmp_path):
    """new(name): a client on a new database of one chDB directory, migrations applied; all closed after."""
    yield from chdb_databases(tmp_path / "chdb")


def seed_tests(n_users: int = 4, n_tests: int = 3, seed: int = 5):
    return [parse_submission(s) for s in simulate_tests(n_users, n_tests, seed=seed, first_user_id=FIRST_USER)]


def seed_rows(tests, with_text=lambda i: i % 2 == 0, first_result_id: int = 1000):
    """The tests as the seed's keystroke_analytics rows (half of them with their presented text)."""
    tables = build_tables(tests, np.zeros(len(tests), np.int64), np.zeros(len(tests), np.int64))
    errors = key_errors_by_test(tables)
    health = dict(
        zip(
            zip(tables.results.column("user_id").to_pylist(), tables.results.column("test_id").to_pylist()),
            tables.results.column("health_score").to_pylist(),
        )
    )
    rows = []
    for i, test in enumerate(tests):
        key = (test.user_id, test.test_id)
        rows.append(
            (
                test.user_id,
                first_result_id + i,
                key_timings_json(test),
                json.dumps(errors.get(key, {})),
                health[key],
                datetime.fromtimestamp(test.started_at_ms / 1000, tz=UTC).replace(tzinfo=None),
                test.text if with_text(i) else None,
            )
        )
    return rows


def load(mariadb: MariaDB, rows, table: str = "keystroke_analytics") -> list[int]:
    mariadb.execute(CREATE.format(table=table))
    mariadb.execute(INSERT.format(table=table), rows)
    return mariadb.ids(table)


def expected_database(client, rows, ids):
    """The same rows sent as the seed's messages through parse_submission → build_tables → write_tables."""
    tests = []
    for user_id, result_id, timings, errors, _health, created_at, text in rows:
        message = {
            "userId": user_id,
            "testResultId": result_id,
            "timestamp": format_started_at(int(created_at.replace(tzinfo=UTC).timestamp() * 1000)),
            "keyTimings": json.loads(timings),
            "keyErrors": json.loads(errors),
        }
        if text is not None:
            message["text"] = text
        tests.append(parse_submission(message))
    partitions = np.full(len(tests), MIGRATED_PARTITION, dtype=np.uint32)
    write_tables(client, build_tables(tests, partitions, np.array(ids, dtype=np.uint64)))
    return client


def table_rows(client, table: str) -> list[str]:
    """Every row of a stored table (FINAL), as text so NaN equals NaN; ingest-time column left out. A test's
    times to type per key or pair are a multiset (their order follows the batch the test was analysed in)."""
    skip = " EXCEPT (ingested_at)" if table == "test_results" else ""
    if table in ("test_keys", "test_pairs"):
        skip = " REPLACE (arrayMap(times -> arraySort(times), time_to_type_ms) AS time_to_type_ms)"
    rows = client.query(f"SELECT *{skip} FROM {table} FINAL ORDER BY ALL").result_rows
    return [repr(row) for row in rows]


def raw_count(client, table: str) -> int:
    """Rows before any merge: a test stored twice would show here even where FINAL hides it."""
    return int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])


def assert_same_storage(migrated, expected, users) -> None:
    for table in STORED_TABLES:
        assert table_rows(migrated, table) == table_rows(expected, table), table
        assert raw_count(migrated, table) == raw_count(expected, table), table
    for user in users:
        for kind in ("key", "pair"):
            assert repr(user_unit_aggregates(migrated, user, kind)) == repr(user_unit_aggregates(expected, user, kind))


def test_a_clean_import_stores_what_parse_submission_stores(mariadb, clickhouse):
    tests = seed_tests()
    rows = seed_rows(tests)
    ids = load(mariadb, rows)
    migrated, expected = clickhouse("migrated"), clickhouse("expected")

    report = migrate(migrated, mariadb.source, batch_size=5, progress=False)

    assert (report.rows_read, report.tests_written, report.already_present, report.rejected) == (12, 12, 0, [])
    assert report.balanced and report.batches == 3 and report.last_id == ids[-1]
    assert report.keystrokes_written == sum(t.keystroke_count for t in tests)
    assert load_progress(migrated, mariadb.source.key, "keystroke_analytics") == ids[-1]
    assert stored_rejections(migrated, mariadb.source.key, "keystroke_analytics") == []
    assert_same_storage(migrated, expected_database(expected, rows, ids), {t.user_id for t in tests})
    stored_ids = migrated.query("SELECT test_id FROM test_results FINAL ORDER BY test_id").result_rows
    assert [r[0] for r in stored_ids] == [str(1000 + i) for i in range(12)]  # test_result_id is the test id


def test_a_crash_between_batches_resumes_after_the_last_stored_batch(mariadb, clickhouse):
    tests = seed_tests()
    rows = seed_rows(tests)
    ids = load(mariadb, rows)
    migrated, expected = clickhouse("migrated"), clickhouse("expected")

    stored: list[str] = []

    def crash_after_second():  # at `migrate_after_batch`: a batch's progress is stored
        stored.append("batch")
        if len(stored) == 2:
            raise faults.SimulatedCrash("killed after batch 2")

    with faults.armed("migrate_after_batch", crash_after_second), pytest.raises(faults.SimulatedCrash):
        migrate(migrated, mariadb.source, batch_size=4, progress=False)
    assert load_progress(migrated, mariadb.source.key, "keystroke_analytics") == ids[7]
    assert raw_count(migrated, "test_results") == 8

    report = migrate(migrated, mariadb.source, batch_size=4, progress=False)
    assert report.started_after == ids[7]
    assert (report.rows_read, report.tests_written, report.already_present, len(report.rejected)) == (4, 4, 0, 0)
    assert_same_storage(migrated, expected_database(expected, rows, ids), {t.user_id for t in tests})


def test_a_crash_inside_a_batch_leaves_nothing_doubled_or_missing(mariadb, clickhouse):
    tests = seed_tests()
    rows = seed_rows(tests)
    ids = load(mariadb, rows)
    migrated, expected = clickhouse("migrated"), clickhouse("expected")
    inserts: list[str] = []

    def crash_in_second_batch():  # at `mid_write`: a batch's raw keystrokes are in
        inserts.append("keystrokes")
        if len(inserts) == 2:  # batch 2's raw keystrokes are in, its other tables not
            raise faults.SimulatedCrash("killed mid-write")

    with faults.armed("mid_write", crash_in_second_batch), pytest.raises(faults.SimulatedCrash):
        migrate(migrated, mariadb.source, batch_size=4, progress=False)
    assert load_progress(migrated, mariadb.source.key, "keystroke_analytics") == ids[3]
    assert raw_count(migrated, "test_results") == 4
    assert raw_count(migrated, "keystrokes") == sum(t.keystroke_count for t in tests[:8])  # batch 2's are in

    report = migrate(migrated, mariadb.source, batch_size=4, progress=False)
    assert report.started_after == ids[3]
    # Batch 2's tests had no result row, so they are completed (written) now; their keystrokes, already in, are
    # not inserted again (the raw counts below show it).
    assert (report.rows_read, report.tests_written, report.already_present, len(report.rejected)) == (8, 8, 0, 0)
    assert report.keystrokes_written == sum(t.keystroke_count for t in tests[4:])
    assert_same_storage(migrated, expected_database(expected, rows, ids), {t.user_id for t in tests})


def test_a_rerun_writes_nothing_twice(mariadb, clickhouse):
    tests = seed_tests()
    rows = seed_rows(tests)
    ids = load(mariadb, rows)
    migrated, expected = clickhouse("migrated"), clickhouse("expected")
    first = migrate(migrated, mariadb.source, batch_size=5, progress=False)
    assert first.tests_written == 12

    again = migrate(migrated, mariadb.source, batch_size=5, progress=False)  # nothing after the stored progress
    assert (again.started_after, again.rows_read, again.batches) == (ids[-1], 0, 0) and again.balanced

    from_start = migrate(migrated, mariadb.source, batch_size=7, progress=False, from_start=True)
    assert (from_start.rows_read, from_start.tests_written, from_start.already_present) == (12, 0, 12)
    assert from_start.balanced and from_start.started_after is None
    assert_same_storage(migrated, expected_database(expected, rows, ids), {t.user_id for t in tests})
    assert load_progress(migrated, mariadb.source.key, "keystroke_analytics") == ids[-1]


def bad_rows(good):
    """(row, reason fragment or None) in table order: good rows with bad ones between them."""
    base = good[0]

    def variant(**changes):
        names = ("user_id", "test_result_id", "key_timings", "key_errors", "health_score", "created_at", "text")
        values = dict(zip(names, base))
        values.update(changes)
        return tuple(values[n] for n in names)

    down_up = json.dumps(
        [
            {"key": t["key"], "down": t["time"], "up": None if t["duration"] is None else t["time"] + t["duration"]}
            for t in json.loads(good[2][2])
        ]
    )
    return [
        (good[0], None),
        (variant(test_result_id=1, key_timings="[{not json"), "key_timings: invalid JSON"),
        (good[1], None),
        (
            variant(test_result_id=2, key_timings='[{"key":"a","time":50},{"key":"b","time":10}]'),
            "key_timings[1].time: times must not decrease (10 after 50)",
        ),
        (
            variant(test_result_id=3, key_timings='[{"key":"a","down":80,"up":20}]'),
            "key_timings[0].up: release (20) is before the press (80)",
        ),
        (good[2][:2] + (down_up,) + good[2][3:], None),  # keyscope's {key, down, up}: accepted
        (variant(test_result_id=4, key_timings='[{"key":"Space","time":0}]'), "key_timings[0].key: must be one"),
        (variant(test_result_id=5, user_id=0), "user_id: must be between 1"),
        (variant(test_result_id=6, key_errors='["a"]'), "key_errors: must be an object"),
        (variant(test_result_id=7, created_at=None), "created_at: is NULL"),
        (variant(test_result_id=8, key_timings='[{"key":"\\ud800","time":0}]'), "key_timings: "),
        (good[3][:2] + (json.dumps(good[3][2]),) + good[3][3:], None),  # double-encoded JSON: accepted
        (good[1], "duplicate"),  # the same user and test id again: the first copy stays
        (good[4], None),
    ]


def test_bad_rows_are_rejected_with_reasons_and_the_rest_is_stored(mariadb, clickhouse):
    tests = seed_tests(n_users=2, n_tests=3)
    good = seed_rows(tests)
    plan = bad_rows(good)
    mariadb.execute(CREATE.format(table="keystroke_analytics"))
    mariadb.execute("SET SESSION check_constraint_checks = 0")  # let invalid JSON in, as an old table might hold
    mariadb.execute(INSERT.format(table="keystroke_analytics"), [row for row, _ in plan])
    ids = mariadb.ids()
    migrated = clickhouse("migrated")

    report = migrate(migrated, mariadb.source, batch_size=4, progress=False)

    expected_rejections = [(ids[i], reason) for i, (_, reason) in enumerate(plan) if reason not in (None, "duplicate")]
    assert [r.row_id for r in report.rejected] == [i for i, _ in expected_rejections]
    for rejection, (_, reason) in zip(report.rejected, expected_rejections):
        assert rejection.reason.startswith(reason), rejection
    assert "surrogate" in report.rejected[-1].reason or "code" in report.rejected[-1].reason
    good_count = sum(1 for _, reason in plan if reason is None)
    assert (report.rows_read, report.tests_written, report.already_present, len(report.rejected)) == (
        len(plan),
        good_count,
        1,
        len(expected_rejections),
    )
    assert report.balanced
    assert stored_rejections(migrated, mariadb.source.key, "keystroke_analytics") == report.rejected
    # Nothing of a rejected row reached any table: every table holds exactly the good tests.
    stored = {str(row[1]) for row, reason in plan if reason is None}
    for table in STORED_TABLES:
        found = {r[0] for r in migrated.query(f"SELECT DISTINCT test_id FROM {table}").result_rows}
        assert found == stored, table
    text = "\n".join(report.lines())
    assert f"{len(plan)} = {good_count} + 1 + {len(expected_rejections)} ✓" in text
    assert f"id {ids[1]}: key_timings: invalid JSON" in text

    again = migrate(migrated, mariadb.source, batch_size=4, progress=False, from_start=True)
    counts = (again.tests_written, again.already_present, len(again.rejected))
    assert counts == (0, good_count + 1, len(expected_rejections))
    assert stored_rejections(migrated, mariadb.source.key, "keystroke_analytics") == report.rejected


def test_users_deleted_on_request_stay_deleted(mariadb, clickhouse):
    from app.user_data import record_tombstone

    tests = seed_tests(n_users=2, n_tests=3)  # a user's test i starts on day i
    rows = seed_rows(tests)
    ids = load(mariadb, rows)
    migrated = clickhouse("migrated")
    deleted, raced = tests[0].user_id, tests[3].user_id
    between = datetime.fromtimestamp((tests[1].started_at_ms + tests[2].started_at_ms) / 2000, tz=UTC)
    record_tombstone(migrated, deleted, between)  # deleted after its second test: its third is a new start

    def deleted_during_the_write():  # at `mid_write`: the raw keystrokes are in
        if not erased:
            record_tombstone(migrated, raced, datetime.now(UTC))

    erased: list[list[int]] = []
    with faults.armed("mid_write", deleted_during_the_write):
        report = migrate(migrated, mariadb.source, progress=False, erase_users=erased.append)
    assert [r.row_id for r in report.rejected] == ids[:2]
    assert all(f"user {deleted} was deleted on request" in r.reason for r in report.rejected)
    assert (report.rows_read, report.tests_written, report.already_present) == (6, 4, 0) and report.balanced
    assert erased == [[raced]] and report.erased_users == [raced]
    stored = migrated.query("SELECT test_id FROM test_results WHERE user_id = {u:UInt64}", parameters={"u": deleted})
    assert [r[0] for r in stored.result_rows] == [str(rows[2][1])]

    other = clickhouse("other")

    def deleted_while_writing_to_other():
        record_tombstone(other, raced, datetime.now(UTC))

    with (
        faults.armed("mid_write", deleted_while_writing_to_other),
        pytest.raises(RuntimeError, match="deleted while their tests were written"),  # no way to erase: an error
    ):
        migrate(other, mariadb.source, progress=False)


def test_tables_that_cannot_be_migrated_are_named(mariadb, clickhouse):
    migrated = clickhouse("migrated")
    with pytest.raises(ValueError, match="no table `nothing_here`"):
        migrate(migrated, mariadb.source, "nothing_here", progress=False)
    mariadb.execute("CREATE TABLE partial (id INT PRIMARY KEY, user_id INT, created_at DATETIME)")
    with pytest.raises(ValueError, match="has no column key_timings"):
        migrate(migrated, mariadb.source, "partial", progress=False)
    mariadb.execute(
        "CREATE TABLE uuid_keyed (uid CHAR(36) PRIMARY KEY, user_id INT, key_timings JSON, created_at DATETIME)"
    )
    with pytest.raises(ValueError, match="pages by an integer key"):
        migrate(migrated, mariadb.source, "uuid_keyed", progress=False)


def test_the_cli_migrates_prints_the_reconciliation_and_never_the_password(mariadb, tmp_path, monkeypatch, capsys):
    from cli.main import main

    tests = seed_tests(n_users=2, n_tests=2)
    rows = seed_rows(tests)
    ids = load(mariadb, rows, table="legacy")
    path = tmp_path / "cli-chdb"
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{path}")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # cache invalidation is best effort: no Redis here
    monkeypatch.delenv("MYSQL_PWD", raising=False)

    code = main(["migrate", "mysql", "--dsn", mariadb.dsn, "--table", "legacy", "--batch-size", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "rows read                        4" in out and "4 = 4 + 0 + 0 ✓" in out
    assert f"to id {ids[-1]}" in out

    secret_dsn = f"mysql://root:hunter2-secret@127.0.0.1:3306/{mariadb.database}"
    code = main(["migrate", "mysql", "--dsn", secret_dsn, "--table", "legacy"])
    captured = capsys.readouterr()
    assert code == 1 and "hunter2-secret" not in captured.out + captured.err
    assert "Access denied" in captured.err

    code = main(["migrate", "mysql", "--dsn", "mysql://root:hunter2-secret@127.0.0.1:port/x"])
    captured = capsys.readouterr()
    assert code == 1 and "port must be a number" in captured.err and "hunter2-secret" not in captured.err

    client = clickhouse_client(f"chdb://{path}")
    try:
        assert raw_count(client, "test_results") == 4
    finally:
        client.close()
