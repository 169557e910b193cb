"""The storage layer against both chDB in-process (`chdb://`) and the stack's ClickHouse HTTP endpoint."""

from __future__ import annotations

import numpy as np
import pytest

from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import MIGRATIONS_DIR, apply_migrations, load_migrations
from app.clickhouse.store import (
    load_offsets,
    store_offsets,
    stored_tests,
    user_tests,
    user_unit_aggregates,
    write_tables,
)
from app.insights import build_insights, build_key_table, build_progress
from app.schemas import parse_submission
from app.simulate import simulate_tests
from app.test_tables import build_tables
from tests.reference import reference_metrics


@pytest.fixture(params=["chdb", "http"])
def client(request, tmp_path):
    if request.param == "chdb":
        ch = clickhouse_client(f"chdb://{tmp_path / 'chdb'}")
    else:
        settings = request.getfixturevalue("stack_settings")
        request.getfixturevalue("stack")
        admin = clickhouse_client(settings.clickhouse_url)
        database = f"store_test_{tmp_path.name.replace('-', '_')}"
        admin.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        admin.close()
        ch = clickhouse_client(settings.clickhouse_url.rsplit("/", 1)[0] + "/" + database)
    try:
        apply_migrations(ch)
        yield ch
    finally:
        ch.close()


def submissions(n_users=3, n_tests=2, first_user_id=1):
    return simulate_tests(n_users, n_tests, seed=21, first_user_id=first_user_id)


def tables_of(subs):
    tests = [parse_submission(s) for s in subs]
    return build_tables(tests, np.zeros(len(tests), np.int64), np.arange(len(tests), dtype=np.int64))


def test_migrations_apply_once(client):
    assert apply_migrations(client) == []  # the fixture applied them already
    names = {row[0] for row in client.query("SHOW TABLES").result_rows}
    assert {"keystrokes", "test_results", "test_key_stats", "ingest_offsets", "schema_migrations"} <= names
    versions = [row[0] for row in client.query("SELECT version FROM schema_migrations ORDER BY version").result_rows]
    assert versions == [m.version for m in load_migrations()]


def test_an_edited_migration_is_refused(client, tmp_path):
    edited = tmp_path / "migrations"
    edited.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        (edited / path.name).write_text(path.read_text() + "\n-- edited\n")
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        apply_migrations(client, edited)


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
    insights = build_insights(client, subs[0]["user_id"])
    assert insights["test_count"] == 2
    assert sum(k["presses"] for k in insights["keys"]) > 0
    assert build_key_table(client, subs[0]["user_id"])["pairs"]
    assert len(build_progress(client, subs[0]["user_id"])["daily"]) >= 1
    assert build_insights(client, 987_654) is None
    assert build_key_table(client, 987_654) is None and build_progress(client, 987_654) is None
    assert user_tests(client, 987_654, 5) == []


def test_writing_the_same_tests_twice_reads_as_once(client):
    subs = submissions(first_user_id=40)
    tables = tables_of(subs)
    write_tables(client, tables)
    write_tables(client, tables)  # a re-run after a crash between the write and the offset store
    assert len(user_tests(client, 40, limit=10)) == 2
    assert build_insights(client, 40)["test_count"] == 2
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


def test_the_daily_views_hold_what_the_raw_keystrokes_aggregate_to(client):
    subs = submissions(n_users=2, n_tests=3, first_user_id=80)
    write_tables(client, tables_of(subs), partial_possible=False)
    for kind, unit, where, timed in (
        ("key", "target", "target != ''", "iki_ms >= 0"),
        ("pair", "concat(prev_target, target)", "target != '' AND prev_target != ''", "clean_transition = 1"),
    ):
        expected = client.query(
            f"SELECT {unit} AS unit, count(), countIf(correct = 0), countIf({timed}), "
            f"sumIf(toUInt64(greatest(iki_ms, 0)), {timed}), "
            f"quantilesTimingIf(0.5, 0.95)(toUInt32(greatest(iki_ms, 0)), {timed}) "
            f"FROM keystrokes WHERE user_id = 80 AND {where} GROUP BY unit ORDER BY unit"
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
        "SELECT countIf(hold_ms >= 0), sumIf(hold_ms, hold_ms >= 0) FROM keystrokes WHERE user_id = 80 AND target != ''"
    ).result_rows[0]
    assert any(k["mean_hold_ms"] is not None for k in user_unit_aggregates(client, 80, "key"))
    assert client.query("SELECT sum(holds), sum(hold_sum) FROM key_daily WHERE user_id = 80").result_rows[0] == holds


def test_a_write_stopped_part_way_is_completed_once(client):
    subs = submissions(first_user_id=90)
    tables = tables_of(subs)
    client.insert_arrow("keystrokes", tables.keystrokes)  # a crash after the first table of the batch
    client.insert_arrow("test_key_stats", tables.key_stats)
    write_tables(client, tables)  # checks every table: only the missing rows go in
    assert write_tables(client, tables, partial_possible=False).results.num_rows == 0  # result rows: stored
    presses = client.query("SELECT count() FROM keystrokes WHERE user_id = 90").result_rows[0][0]
    assert presses == sum(len(s["keystrokes"]) for s in subs if s["user_id"] == 90)
    keyed = sum(k["presses"] for k in user_unit_aggregates(client, 90, "key"))
    assert keyed == client.query("SELECT count() FROM keystrokes WHERE user_id = 90 AND target != ''").result_rows[0][0]
    assert len(user_tests(client, 90, limit=10)) == 2
