"""The storage layer against both chDB in-process (`chdb://`) and the stack's ClickHouse HTTP endpoint."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pytest

from app.analytics.metrics import TestBatch, analyse_batch
from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import MIGRATIONS_DIR, apply_migrations, load_migrations
from app.clickhouse.store import (
    load_offsets,
    store_offsets,
    stored_keystrokes,
    stored_test,
    stored_tests,
    user_test_history,
    user_tests,
    user_unit_aggregates,
    write_tables,
)
from app.insights import (
    build_insights,
    build_key_table,
    build_progress,
    build_reads,
    load_histories,
    load_history,
    rank_histories,
)
from app.schemas import KEYSTROKE_SCHEMA, TypingTest, parse_submission
from app.tables import build_tables
from devstack.simulate import simulate_tests
from tests.reference import reference_metrics


@pytest.fixture(params=["chdb", "http"])
def new_database(request, tmp_path):
    """Opens a client on a new, empty database (by name) of one server: chDB in process, or the stack's HTTP
    endpoint. Every client is closed after the test."""
    if request.param == "chdb":
        path = tmp_path / "chdb"

        def connect(name):
            return clickhouse_client(f"chdb://{path}", database=name)
    else:
        settings = request.getfixturevalue("stack_settings")
        request.getfixturevalue("stack")
        base = settings.clickhouse_url.rsplit("/", 1)[0]

        def connect(name):
            return clickhouse_client(f"{base}/{name}")

    opened = [connect("default")]

    def new(label):
        database = f"store_test_{tmp_path.name.replace('-', '_')}_{label}"
        opened[0].command(f"CREATE DATABASE IF NOT EXISTS {database}")
        opened.append(connect(database))
        return opened[-1]

    try:
        yield new
    finally:
        for ch in reversed(opened):
            ch.close()


@pytest.fixture
def client(new_database):
    ch = new_database("main")
    apply_migrations(ch)
    return ch


def submissions(n_users=3, n_tests=2, first_user_id=1):
    return simulate_tests(n_users, n_tests, seed=21, first_user_id=first_user_id)


def tables_of(subs):
    return tables_of_tests([parse_submission(s) for s in subs])


def tables_of_tests(tests):
    return build_tables(tests, np.zeros(len(tests), np.int64), np.arange(len(tests), dtype=np.int64))


def varied_submissions(first_user_id):
    """Simulated tests with what the simulator never makes: a first press after the test start, and releases
    unknown at the first and the last press."""
    subs = submissions(n_users=2, n_tests=3, first_user_id=first_user_id)
    for i, sub in enumerate(subs):
        late = 1234 * i  # the first test keeps its first press at 0 ms
        strokes = [
            {**k, "down": k["down"] + late, "up": None if k["up"] is None else k["up"] + late}
            for k in sub["keystrokes"]
        ]
        strokes[0]["up"] = strokes[-1]["up"] = None
        sub["keystrokes"] = strokes
    return subs


def assert_same_test(stored: TypingTest | None, submitted: TypingTest) -> None:
    assert stored is not None
    for name in ("user_id", "test_id", "started_at_ms", "text", "layout", "language"):
        assert getattr(stored, name) == getattr(submitted, name), name
    for name in ("key_codes", "down_ms", "up_ms"):
        assert getattr(stored, name).tolist() == getattr(submitted, name).tolist(), name


def schema(client) -> list[tuple[str, str]]:
    """(name, CREATE statement without the database name) of every table and view of the client's database."""
    database = client.query("SELECT currentDatabase()").result_rows[0][0]
    rows = client.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase() "
        "AND name != 'schema_migrations' ORDER BY name"
    ).result_rows
    return [(name, query.replace(f"{database}.", "")) for name, query in rows]


def test_migrations_apply_once(client):
    assert apply_migrations(client) == []  # the fixture applied them already
    names = {row[0] for row in client.query("SHOW TABLES").result_rows}
    assert {"keystrokes", "test_results", "test_keys", "test_pairs", "ingest_offsets", "schema_migrations"} <= names
    assert not names & {"test_key_stats", "test_pair_stats", "key_daily", "pair_daily"}  # replaced in 0011-0012
    versions = [row[0] for row in client.query("SELECT version FROM schema_migrations ORDER BY version").result_rows]
    assert versions == [m.version for m in load_migrations()]


def test_an_edited_migration_is_refused(client, tmp_path):
    edited = tmp_path / "migrations"
    edited.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        (edited / path.name).write_text(path.read_text() + "\n-- edited\n")
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        apply_migrations(client, edited)


def test_stored_keystrokes_come_back_exactly_as_submitted(client):
    subs = varied_submissions(first_user_id=20)
    tests = [parse_submission(s) for s in subs]
    write_tables(client, tables_of(subs))
    for test, sub in zip(tests, subs):
        assert_same_test(stored_test(client, test.user_id, test.test_id), test)
        rows = stored_keystrokes(client, test.user_id, test.test_id).to_pylist()
        assert rows == [
            {"key": k["key"], "down_ms": k["down"], "up_ms": -1 if k["up"] is None else k["up"]}
            for k in sub["keystrokes"]
        ]
    assert stored_test(client, 20, "no-such-test") is None
    assert stored_keystrokes(client, 20, "no-such-test").num_rows == 0


def old_format_keystrokes(tests: list[TypingTest]) -> pa.Table:
    """The keystrokes rows the writer of migrations 0001-0005 stored: the press time in `down_ms`, −1 as the
    first press's IKI, and the presented character before the typed position in `prev_target`."""
    rows = tables_of_tests(tests).keystrokes
    batch = TestBatch.from_tests(tests)
    analysis = analyse_batch(batch)
    before = ["" if c < 0 else chr(c) for c in analysis.presented_before.tolist()]
    rows = rows.set_column(rows.schema.get_field_index("iki_ms"), "iki_ms", pa.array(analysis.iki_ms))
    rows = rows.append_column("prev_target", pa.array(before, pa.string()))
    return rows.append_column("down_ms", pa.array(batch.down_ms.astype(np.uint32)))


def test_a_database_at_0005_is_migrated_to_the_same_keystrokes(new_database, tmp_path):
    up_to_0005 = tmp_path / "migrations-0005"
    up_to_0005.mkdir()
    for migration in load_migrations():
        if migration.version <= 5:
            name = f"{migration.version:04d}_{migration.name}.sql"
            shutil.copy(MIGRATIONS_DIR / name, up_to_0005 / name)
    old = new_database("old")
    assert apply_migrations(old, up_to_0005) == [1, 2, 3, 4, 5]
    subs = varied_submissions(first_user_id=30)
    tests = [parse_submission(s) for s in subs]
    old_rows = old_format_keystrokes(tests)
    assert old_rows.column("iki_ms").to_pylist().count(-1) == len(tests)
    old.insert_arrow("keystrokes", old_rows)  # in two parts: the UPDATE must rewrite each
    tables = tables_of_tests(tests)
    # Up to 0010 the per-test key and pair stats were one row per (test, unit), feeding the daily views.
    old_parts = {"test_key_stats": tables.key_stats, "test_pair_stats": tables.pair_stats}
    old_parts |= {"test_confusions": tables.confusions, "test_results": tables.results}
    for table, rows in old_parts.items():
        old.insert_arrow(table, rows)
    later = [parse_submission(s) for s in varied_submissions(first_user_id=35)]
    old.insert_arrow("keystrokes", old_format_keystrokes(later))
    assert apply_migrations(old) == [m.version for m in load_migrations() if m.version > 5]

    for test in tests:
        assert_same_test(stored_test(old, test.user_id, test.test_id), test)
    for test in later:  # the second part's (no result rows: raw keystrokes only)
        times = stored_keystrokes(old, test.user_id, test.test_id)
        assert times.column("down_ms").to_pylist() == test.down_ms.tolist()
        assert times.column("up_ms").to_pylist() == test.up_ms.tolist()
    # The migrated rows are the rows the new writer stores for the same tests.
    migrated = old.query_arrow(
        f"SELECT {', '.join(KEYSTROKE_SCHEMA.names)} FROM keystrokes WHERE user_id < 35 ORDER BY user_id, test_id, seq"
    ).cast(KEYSTROKE_SCHEMA)
    written = tables.keystrokes.sort_by([("user_id", "ascending"), ("test_id", "ascending"), ("seq", "ascending")])
    assert migrated.equals(written)
    # The per-test stats are the rows the new writer stores (one per test, arrays in the same order).
    for table, new_rows in (("test_keys", tables.keys), ("test_pairs", tables.pairs)):
        copied = old.query_arrow(f"SELECT * FROM {table} ORDER BY user_id, test_id").cast(new_rows.schema)
        assert copied.equals(new_rows.sort_by([("user_id", "ascending"), ("test_id", "ascending")])), table
    pending = old.query(
        "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = 'keystrokes' "
        "AND NOT is_done"
    )
    assert pending.result_rows[0][0] == 0
    # The same schema as a database that ran every migration from the start.
    fresh = new_database("fresh")
    apply_migrations(fresh)
    assert schema(old) == schema(fresh)
    columns = fresh.query(
        "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'keystrokes' ORDER BY position"
    ).result_columns[0]
    assert columns == KEYSTROKE_SCHEMA.names


def test_written_tests_read_back_with_their_metrics(client):
    subs = submissions()
    write_tables(client, tables_of(subs))
    for user_id in {s["user_id"] for s in subs}:
        mine = sorted((s for s in subs if s["user_id"] == user_id), key=lambda s: s["started_at"], reverse=True)
        rows = user_tests(client, user_id, limit=10)
        assert [r["test_id"] for r in rows] == [s["test_id"] for s in mine]
        for row, sub in zip(rows, mine):
            expected = reference_metrics(sub["text"], sub["keystrokes"])
            assert row["wpm"] == pytest.approx(expected["wpm"])
            assert row["accuracy"] == pytest.approx(expected["accuracy"])
            assert row["started_at"] == sub["started_at"]
    user_id = subs[0]["user_id"]
    history = load_history(client, user_id)
    insights = build_insights(history)
    assert insights["test_count"] == 2
    assert sum(k["presses"] for k in insights["keys"]) > 0
    assert build_key_table(history)["pairs"]
    assert len(build_progress(user_id, history.tests)["daily"]) >= 1
    assert load_history(client, 987_654) is None
    assert build_progress(987_654, user_test_history(client, 987_654)) is None
    assert user_tests(client, 987_654, 5) == []


def test_writing_the_same_tests_twice_reads_as_once(client):
    subs = submissions(first_user_id=40)
    tables = tables_of(subs)
    write_tables(client, tables)
    write_tables(client, tables)  # a re-run after a crash between the write and the offset store
    assert len(user_tests(client, 40, limit=10)) == 2
    assert build_insights(load_history(client, 40))["test_count"] == 2
    presses = client.query("SELECT count() FROM keystrokes WHERE user_id = 40").result_rows[0][0]
    assert presses == sum(len(s["keystrokes"]) for s in subs if s["user_id"] == 40)
    # The daily materialized views saw each keystroke once: their key presses equal one copy's.
    keyed = sum(k["presses"] for k in user_unit_aggregates(client, 40, "key"))
    assert keyed == client.query("SELECT count() FROM keystrokes WHERE user_id = 40 AND target != ''").result_rows[0][0]


def test_stored_tests_finds_exactly_the_stored_pairs(client):
    subs = submissions(first_user_id=60)
    write_tables(client, tables_of(subs[:2]))
    asked = [(s["user_id"], s["test_id"]) for s in subs] + [(61, subs[0]["test_id"])]
    assert stored_tests(client, asked) == {(s["user_id"], s["test_id"]) for s in subs[:2]}
    assert stored_tests(client, []) == set()


def test_offsets_latest_store_wins(client):
    assert load_offsets(client, "g", "t") == {}
    store_offsets(client, "g", "t", {0: 5, 1: 7})
    store_offsets(client, "g", "t", {0: 9})
    store_offsets(client, "other", "t", {0: 100})
    assert load_offsets(client, "g", "t") == {0: 9, 1: 7}


def test_the_per_user_aggregates_are_what_the_raw_keystrokes_aggregate_to(client):
    subs = submissions(n_users=2, n_tests=3, first_user_id=80)
    write_tables(client, tables_of(subs), partial_possible=False)
    # A pair is the presented character before the typed position and the one at it. The raw table does not
    # keep the first: the analysis finds it again in the stored keys and the test's text.
    ids = client.query("SELECT test_id FROM test_results WHERE user_id = 80 ORDER BY test_id").result_columns[0]
    rebuilt = analyse_batch(TestBatch.from_tests([stored_test(client, 80, test_id) for test_id in ids]))
    before = ["" if c < 0 else chr(c) for c in rebuilt.presented_before.tolist()]
    pair_source = (  # the stored keystrokes in (test_id, seq) order, each with its `prev_target` from `before`
        "(SELECT p.1 AS prev_target, tupleElement(p.2, 3) AS target, tupleElement(p.2, 4) AS correct, "
        "tupleElement(p.2, 5) AS clean_transition, tupleElement(p.2, 6) AS iki_ms "
        "FROM (SELECT arrayJoin(arrayZip({before:Array(String)}, arraySort(groupArray("
        "(test_id, seq, target, correct, clean_transition, iki_ms))))) AS p FROM keystrokes WHERE user_id = 80))"
    )
    for kind, unit, source, where, timed in (
        # The first press of a test (seq 0) holds its time since the test start in iki_ms: no time to type.
        ("key", "target", "keystrokes", "user_id = 80 AND target != ''", "seq > 0"),
        ("pair", "concat(prev_target, target)", pair_source, "prev_target != '' AND target != ''", "clean_transition"),
    ):
        expected = client.query(
            f"SELECT {unit} AS unit, count(), countIf(correct = 0), countIf({timed}), "
            f"sumIf(toUInt64(greatest(iki_ms, 0)), {timed}), "
            f"quantilesTimingIf(0.5, 0.95)(toUInt32(greatest(iki_ms, 0)), {timed}) "
            f"FROM {source} WHERE {where} GROUP BY unit ORDER BY unit",
            parameters={"before": before},
        ).result_rows
        rows = user_unit_aggregates(client, 80, kind)
        assert len(rows) == len(expected) > 10
        for row, (name, presses, errors, timed_presses, time_sum, quantiles) in zip(rows, expected):
            assert (row["key"], row["presses"], row["errors"], row["timed_presses"]) == (
                name,
                presses,
                errors,
                timed_presses,
            )
            if timed_presses:
                assert row["mean_time_to_type_ms"] == pytest.approx(time_sum / timed_presses)
                assert [row["median_time_to_type_ms"], row["p95_time_to_type_ms"]] == pytest.approx(quantiles)
    holds = client.query(
        "SELECT target, if(countIf(hold_ms >= 0) > 0, sumIf(hold_ms, hold_ms >= 0) / countIf(hold_ms >= 0), NULL) "
        "FROM keystrokes WHERE user_id = 80 AND target != '' GROUP BY target ORDER BY target"
    ).result_rows
    mean_holds = [(k["key"], k["mean_hold_ms"]) for k in user_unit_aggregates(client, 80, "key")]
    assert mean_holds == [(key, pytest.approx(mean) if mean is not None else None) for key, mean in holds]
    assert sum(mean is not None for _, mean in mean_holds) > 10


def test_a_write_stopped_part_way_is_completed_once(client):
    subs = submissions(first_user_id=90)
    tables = tables_of(subs)
    client.insert_arrow("keystrokes", tables.keystrokes)  # a crash after the first table of the batch
    client.insert_arrow("test_keys", tables.keys)
    write_tables(client, tables)  # checks every table: only the missing rows go in
    assert write_tables(client, tables, partial_possible=False).results.num_rows == 0  # result rows: stored
    presses = client.query("SELECT count() FROM keystrokes WHERE user_id = 90").result_rows[0][0]
    assert presses == sum(len(s["keystrokes"]) for s in subs if s["user_id"] == 90)
    keyed = sum(k["presses"] for k in user_unit_aggregates(client, 90, "key"))
    assert keyed == client.query("SELECT count() FROM keystrokes WHERE user_id = 90 AND target != ''").result_rows[0][0]
    assert len(user_tests(client, 90, limit=10)) == 2


def test_reads_computed_for_many_typists_at_once_equal_each_computed_alone(client):
    """The insights refresh loads and ranks a whole batch of typists together (one query per kind, one vectorized
    ranking); every read must be what the typist alone would get, and a typist without tests is simply absent."""
    subs = submissions(n_users=6, n_tests=4, first_user_id=500)
    write_tables(client, tables_of(subs))
    users = sorted({s["user_id"] for s in subs})
    assert len(users) >= 4
    histories = load_histories(client, [*users, 987_655])
    assert sorted(histories) == users
    ranked = rank_histories(list(histories.values()))
    for user_id in users:
        alone = load_history(client, user_id)
        assert alone.summary == histories[user_id].summary
        assert alone.tests.equals(histories[user_id].tests)
        assert alone.pair_rows.equals(histories[user_id].pair_rows)
        assert build_reads(histories[user_id], ranked=ranked[user_id]) == build_reads(alone)
