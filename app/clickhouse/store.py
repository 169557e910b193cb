"""Reads and writes of keystrokes, test results, per-test key and pair stats, and the jobs' positions: the ingest
offsets, its write marks and the batch jobs' watermarks (every query of those lives here).

Writes are idempotent: every table is a ReplacingMergeTree keyed by the test, and the ingest job
skips tests whose result row already exists, so a re-run over the same offsets changes nothing.
Reads that must count exactly use FINAL, restricted to one user's key range.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from app.faults import failpoint
from app.keys import key_code
from app.schemas import (
    COUNT_FIELDS,
    ERROR_LOCATION_FIELDS,
    METRIC_FIELDS,
    SERIES_FIELDS,
    TEST_IDENTITY_FIELDS,
    TEST_KEYS_SCHEMA,
    TEST_PAIRS_SCHEMA,
    TypingTest,
    format_started_at,
)
from app.tables import TestTables

STORED_TABLES = ("keystrokes", "test_keys", "test_pairs", "test_confusions", "test_results")
_UNIT_TABLES = {"key": "test_keys", "pair": "test_pairs"}
# Each per-test table's array columns (one element per key or pair of the test): what ARRAY JOIN unrolls.
UNIT_ARRAYS = {
    kind: ", ".join(f.name for f in schema if f.name not in TEST_IDENTITY_FIELDS)
    for kind, schema in (("key", TEST_KEYS_SCHEMA), ("pair", TEST_PAIRS_SCHEMA))
}


def pending_tests(
    client: Client, tables: TestTables, *, partial_possible: bool = True
) -> tuple[TestTables, list[tuple[str, pa.Table]]]:
    """Which of a batch's tests still need writing, and what: (the tests without a result row, and per other table
    the rows of theirs that table still lacks).

    The caller inserts those rows (in any order, at once if it likes) and the pending tests' result rows last, once
    every other table's rows are in, so a stored result means a complete test. A test whose rows reached some tables
    before a crash gets only its missing tables' rows: each test's rows enter each table once, so no table holds a
    second copy of a test for FINAL and merges to remove. With `partial_possible` False the caller vouches that no
    test without a result row has rows anywhere (no write of these tests can have stopped part-way), and the
    per-table checks are skipped.
    """
    if tables.results.num_rows == 0:
        return tables, []
    tests = list(zip(tables.results.column("user_id").to_pylist(), tables.results.column("test_id").to_pylist()))
    done = stored_tests(client, tests)
    pending = tables.only(np.array([t not in done for t in tests], dtype=bool))
    if pending.results.num_rows == 0:
        return pending, []
    remaining = [t for t in tests if t not in done]
    details = []
    for table, rows in pending.parts().items():
        if table == "test_results":
            continue
        if partial_possible:
            rows = _missing_rows(client, table, rows, remaining)
        if rows.num_rows:
            details.append((table, rows))
    return pending, details


def write_tables(client: Client, tables: TestTables, *, partial_possible: bool = True) -> TestTables:
    """Store a batch of tests, each table's rows at most once per test (`pending_tests`), one table after the other
    on `client` and the result rows last; returns the tests completed now. The fault point `mid_write` (app/faults.py)
    comes once the raw keystrokes are in."""
    pending, details = pending_tests(client, tables, partial_possible=partial_possible)
    if pending.results.num_rows == 0:
        return pending
    for table, rows in details:
        client.insert_arrow(table, rows)
        if table == "keystrokes":
            failpoint(None, "mid_write")
    client.insert_arrow("test_results", pending.results)
    return pending


def _missing_rows(client: Client, table: str, rows: pa.Table, tests: list[tuple[int, str]]) -> pa.Table:
    """The rows of the tests that have none in `table` yet."""
    present = stored_tests(client, tests, table)
    if not present:
        return rows
    return rows.filter(pa.array([t not in present for t in _pairs(rows)], type=pa.bool_()))


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


# The press and release times of stored keystrokes, as select-list entries `down_ms, up_ms` (Int64) for any query
# over `keystrokes`: the table keeps the time since the previous press (`iki_ms`; at seq 0, since the test start)
# and the hold time (`hold_ms`, −1 = release unknown), not the times themselves (migration 0006).
KEYSTROKE_TIMES_SQL = (
    "sum(iki_ms) OVER (PARTITION BY user_id, test_id ORDER BY seq ROWS UNBOUNDED PRECEDING) AS down_ms, "
    "if(hold_ms >= 0, down_ms + hold_ms, -1) AS up_ms"
)


def stored_keystrokes(client: Client, user_id: int, test_id: str) -> pa.Table:
    """One stored test's keystrokes as submitted, in order: `key` (the character or the named key), `down_ms`
    (ms from the test start to the press) and `up_ms` (to the release, −1 where unknown), both int32. Empty for
    a test that is not stored."""
    table = client.query_arrow(
        f"SELECT key, {KEYSTROKE_TIMES_SQL} "
        "FROM keystrokes FINAL WHERE user_id = {u:UInt64} AND test_id = {t:String} ORDER BY seq",
        parameters={"u": user_id, "t": test_id},
    )
    return table.cast(pa.schema([("key", pa.string()), ("down_ms", pa.int32()), ("up_ms", pa.int32())]))


def stored_test(client: Client, user_id: int, test_id: str) -> TypingTest | None:
    """A stored test rebuilt as the `TypingTest` it was stored from (text, layout, language and start from
    test_results, the keystrokes from `stored_keystrokes`); None for a test without a result row."""
    rows = client.query(
        "SELECT toUnixTimestamp64Milli(started_at), text, layout, language FROM test_results FINAL "
        "WHERE user_id = {u:UInt64} AND test_id = {t:String}",
        parameters={"u": user_id, "t": test_id},
    ).result_rows
    if not rows:
        return None
    started_ms, text, layout, language = rows[0]
    keystrokes = stored_keystrokes(client, user_id, test_id)
    codes = [key_code(k) for k in keystrokes.column("key").to_pylist()]
    return TypingTest(
        user_id,
        test_id,
        int(started_ms),
        str(text),
        str(layout),
        str(language),
        np.array(codes, dtype=np.int32),
        keystrokes.column("down_ms").to_numpy(zero_copy_only=False).astype(np.int32),
        keystrokes.column("up_ms").to_numpy(zero_copy_only=False).astype(np.int32),
    )


def load_offsets(client: Client, group: str, topic: str) -> dict[int, int]:
    """The next offset to read per partition, as last stored by the ingest job."""
    rows = client.query(
        "SELECT partition, next_offset FROM ingest_offsets FINAL "
        "WHERE consumer_group = {g:String} AND topic = {t:String}",
        parameters={"g": group, "t": topic},
    ).result_rows
    return {int(p): int(o) for p, o in rows}


def last_offsets_stored_ms(client: Client, group: str, topic: str) -> int:
    """When the last finished pass of the ingest job stored its offsets (epoch ms; 0 if none ever did)."""
    rows = client.query(
        "SELECT toUnixTimestamp64Milli(max(updated_at)) FROM ingest_offsets "
        "WHERE consumer_group = {g:String} AND topic = {t:String}",
        parameters={"g": group, "t": topic},
    ).result_rows
    return int(rows[0][0] or 0) if rows else 0


def store_offsets(client: Client, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Record that everything before these offsets is stored."""
    if not offsets:
        return
    now = datetime.now(UTC)
    rows = [[group, topic, int(p), int(o), now] for p, o in sorted(offsets.items())]
    client.insert(
        "ingest_offsets",
        rows,
        column_names=["consumer_group", "topic", "partition", "next_offset", "updated_at"],
        # Given, the types spare a DESCRIBE round trip before each insert (two per ingest pass).
        column_type_names=["String", "String", "UInt32", "UInt64", "DateTime64(6, 'UTC')"],
    )


def _write_marks_group(group: str) -> str:
    # Write marks live beside the stored offsets, under a consumer group name of their own.
    return f"{group}#writing"


def load_write_marks(client: Client, group: str, topic: str) -> dict[int, int]:
    """Per partition, the end of the furthest range a pass of the job began writing (see `store_write_marks`)."""
    return load_offsets(client, _write_marks_group(group), topic)


def store_write_marks(client: Client, group: str, topic: str, marks: dict[int, int]) -> None:
    """Record, before a pass writes anything, the end offsets of what it will write. A later pass whose stored
    offsets are short of a mark knows a write may have stopped part-way in that range; when every mark is
    covered by the stored offsets, no test can have rows without its result row."""
    store_offsets(client, _write_marks_group(group), topic, marks)


def _number(value: Any) -> float | None:
    """A JSON-safe float: None for NULL or NaN."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) or math.isinf(number) else number


def _q(column: str) -> str:
    """A quoted column name: some of ours are SQL words (`inf` alone is infinity in ClickHouse)."""
    return f"`{column}`"


def _test_row(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "test_id": row["test_id"],
        "started_at": format_started_at(int(row["started_ms"])),
        "layout": row["layout"],
        "language": row["language"],
        "keystroke_count": int(row["keystroke_count"]),
        "duration_ms": int(row["duration_ms"]),
    }
    out.update({name: _number(row[name]) for name in METRIC_FIELDS})
    out["char_stats"] = {name.removeprefix("chars_"): int(row[name]) for name in COUNT_FIELDS[:4]}
    out.update({name: int(row[name]) for name in COUNT_FIELDS[4:]})
    out.update({name: [int(v) for v in row[name]] for name in ERROR_LOCATION_FIELDS})
    out.update({name: [round(float(v), 2) for v in row[name]] for name in SERIES_FIELDS})
    return out


# The test_results columns a page row is made of (besides its start time).
_TEST_ROW_COLUMNS = (
    "test_id", "layout", "language", "keystroke_count", "duration_ms",
    *METRIC_FIELDS, *COUNT_FIELDS, *ERROR_LOCATION_FIELDS, *SERIES_FIELDS,
)
_TEST_COLUMNS = ", ".join(("toUnixTimestamp64Milli(started_at) AS started_ms", *map(_q, _TEST_ROW_COLUMNS)))


def user_tests(
    client: Client, user_id: int, limit: int, before: tuple[int, str] | None = None
) -> list[dict[str, Any]]:
    """The user's newest tests, newest first, with every per-test metric (None where undefined).

    `before` = (started_at ms, test_id) of the last test of the previous page: keyset pagination, so a page
    costs the same however deep it is and tests stored meanwhile never shift a page."""
    where, parameters = "user_id = {u:UInt64}", {"u": user_id, "n": limit}
    if before is not None:
        where += " AND (toUnixTimestamp64Milli(started_at), test_id) < ({b_ms:Int64}, {b_id:String})"
        parameters.update(b_ms=before[0], b_id=before[1])
    result = client.query(
        f"SELECT {_TEST_COLUMNS} FROM test_results FINAL WHERE {where} "
        "ORDER BY started_at DESC, test_id DESC LIMIT {n:UInt32}",
        parameters=parameters,
    )
    return [_test_row(dict(zip(result.column_names, row))) for row in result.result_rows]


def written_test_rows(results: pa.Table) -> dict[int, list[dict[str, Any]]]:
    """Result rows just written (TEST_RESULT_SCHEMA), per user, as `user_tests` reads them back: the ingest job
    carries cached first pages forward with them (app/result_pages.py). The columns have the stored types, so the
    values are the ones a read would return."""
    started_ms = pc.cast(results.column("started_at"), pa.int64())
    columns = {name: results.column(name).to_pylist() for name in _TEST_ROW_COLUMNS}
    columns["started_ms"] = started_ms.to_pylist()
    by_user: dict[int, list[dict[str, Any]]] = {}
    for i, user_id in enumerate(results.column("user_id").to_pylist()):
        by_user.setdefault(int(user_id), []).append(_test_row({name: values[i] for name, values in columns.items()}))
    return by_user


# --- A typist's history, for many typists in one query each -------------------------------------------------
# The insights refresh reads thousands of typists a pass: one query per read kind over all of them (rows ordered
# by user, split here) costs the store a few scans instead of a dozen point queries per typist. The one-user
# functions are the same queries for a list of one.

_TEST_HISTORY_COLUMNS = (
    "test_id, started_at, layout, keystroke_count, wpm, accuracy, health_score, consistency, hesitations, "
    "hesitations_word_start, hesitations_after_error, slowdown, chars_incorrect, corrections, transpositions, "
    "doubled_letters, dropped_letters, error_bursts"
)
_UNIT_HISTORY_ARRAYS = ("key", "presses", "errors", "timed_presses", "time_to_type_sum_ms")


def _user_slices(table: pa.Table) -> dict[int, pa.Table]:
    """Split a table ordered by its `user_id` column into one zero-copy slice per user."""
    if table.num_rows == 0:
        return {}
    users = table.column("user_id").to_numpy()
    starts = np.concatenate(([0], np.flatnonzero(np.diff(users)) + 1))
    ends = np.append(starts[1:], table.num_rows)
    return {int(users[a]): table.slice(int(a), int(b - a)) for a, b in zip(starts, ends)}


def _sliced(table: pa.Table, user_ids: list[int], *, keep_user: bool) -> dict[int, pa.Table]:
    """Every asked user's rows (an empty table for a user with none), without `user_id` unless `keep_user`."""
    if not keep_user:
        slices = {u: t.drop_columns(["user_id"]) for u, t in _user_slices(table).items()}
        table = table.drop_columns(["user_id"])
    else:
        slices = _user_slices(table)
    empty = table.slice(0, 0)
    return {u: slices.get(u, empty) for u in user_ids}


def users_test_history(client: Client, user_ids: list[int]) -> dict[int, pa.Table]:
    """Each user's tests in chronological order with the per-test facts progress and advice need."""
    table = client.query_arrow(
        f"SELECT user_id, {_TEST_HISTORY_COLUMNS} FROM test_results FINAL WHERE user_id IN {{u:Array(UInt64)}} "
        "ORDER BY user_id, started_at, test_id",
        parameters={"u": user_ids},
    )
    return _sliced(table, user_ids, keep_user=False)


def user_test_history(client: Client, user_id: int) -> pa.Table:
    """The user's tests in chronological order with the per-test facts progress and advice need."""
    return users_test_history(client, [user_id])[user_id]


def _unit_table(kind: str) -> str:
    if kind not in _UNIT_TABLES:
        raise ValueError(f"unknown unit kind {kind!r}")
    return _UNIT_TABLES[kind]


def users_unit_history(client: Client, user_ids: list[int], kind: str) -> dict[int, pa.Table]:
    """Each user's per-test rows of one unit kind ('key' or 'pair'), one per (test, unit), for smoothing and ranking.

    Fetched as the stored per-test arrays (one row per test) and unrolled here: the same rows as an ARRAY JOIN in
    the store, without sending each test's id and time once per unit."""
    per_test = client.query_arrow(
        f"SELECT user_id, test_id, started_at, {', '.join(_UNIT_HISTORY_ARRAYS)} FROM {_unit_table(kind)} FINAL "
        "WHERE user_id IN {u:Array(UInt64)} ORDER BY user_id, started_at, test_id",
        parameters={"u": user_ids},
    )
    lengths = pc.list_value_length(per_test.column("key")).to_numpy(zero_copy_only=False)
    test_of_row = pa.array(np.repeat(np.arange(per_test.num_rows), lengths))
    columns = {name: per_test.column(name).take(test_of_row) for name in ("user_id", "test_id", "started_at")}
    columns.update({name: pc.list_flatten(per_test.column(name)) for name in _UNIT_HISTORY_ARRAYS})
    return _sliced(pa.table(columns), user_ids, keep_user=True)


def user_unit_history(client: Client, user_id: int, kind: str) -> pa.Table:
    """The user's per-test rows of one unit kind ('key' or 'pair'), one per (test, unit), for smoothing and
    ranking."""
    return users_unit_history(client, [user_id], kind)[user_id]


def users_confusions(client: Client, user_ids: list[int]) -> dict[int, pa.Table]:
    """Per user: presented key, key typed instead, and how often, over the user's history, most frequent first."""
    table = client.query_arrow(
        "SELECT user_id, key, typed, toUInt64(sum(count)) AS count FROM test_confusions FINAL "
        "WHERE user_id IN {u:Array(UInt64)} GROUP BY user_id, key, typed ORDER BY user_id, count DESC, key, typed",
        parameters={"u": user_ids},
    )
    return _sliced(table, user_ids, keep_user=False)


def user_confusions(client: Client, user_id: int) -> pa.Table:
    """Presented key, key typed instead, and how often, over the user's history."""
    return users_confusions(client, [user_id])[user_id]


def users_unit_aggregates(client: Client, user_ids: list[int], kind: str) -> dict[int, list[dict[str, Any]]]:
    """Per user, per key or letter pair over their history: presses, errors, time-to-type mean / median / p95
    (ClickHouse's quantilesTiming over every timed press) and, for keys, mean hold time."""
    table = _unit_table(kind)
    hold = "sum(holds) AS n_holds, sum(hold_sum_ms) AS n_hold_sum" if kind == "key" else "0 AS n_holds, 0 AS n_hold_sum"
    # Arrow, column by column into Python lists: a pass's hundreds of thousands of (user, pair) rows parse in C.
    # The aliases differ from the arrays' names, which ClickHouse would otherwise resolve to the aggregates.
    result = client.query_arrow(
        "SELECT user_id, key, sum(presses) AS n_presses, sum(errors) AS n_errors, sum(timed_presses) AS n_timed, "
        "sum(time_to_type_sum_ms) AS n_time_sum, quantilesTimingArray(0.5, 0.95)(time_to_type_ms) AS n_quantiles, "
        f"{hold} FROM {table} FINAL ARRAY JOIN {UNIT_ARRAYS[kind]} WHERE user_id IN {{u:Array(UInt64)}} "
        "GROUP BY user_id, key ORDER BY user_id, key",
        parameters={"u": user_ids},
    )
    columns = [result.column(name).to_pylist() for name in (
        "user_id", "key", "n_presses", "n_errors", "n_timed", "n_time_sum", "n_quantiles", "n_holds", "n_hold_sum"
    )]  # fmt: skip
    out: dict[int, list[dict[str, Any]]] = {u: [] for u in user_ids}
    for user_id, name, presses, errors, timed, time_sum, quantiles, holds, hold_sum in zip(*columns):
        out[user_id].append(
            {
                "key": name,
                "presses": presses,
                "errors": errors,
                "error_rate": errors / presses if presses else None,
                "timed_presses": timed,
                "mean_time_to_type_ms": time_sum / timed if timed else None,
                "median_time_to_type_ms": _number(quantiles[0]) if timed else None,
                "p95_time_to_type_ms": _number(quantiles[1]) if timed else None,
                "mean_hold_ms": hold_sum / holds if holds else None,
            }
        )
    return out


def user_unit_aggregates(client: Client, user_id: int, kind: str) -> list[dict[str, Any]]:
    """Per key or letter pair over the user's history: presses, errors, time-to-type mean / median / p95 (ClickHouse's
    quantilesTiming over every timed press) and, for keys, mean hold time."""
    return users_unit_aggregates(client, [user_id], kind)[user_id]


def users_summary(client: Client, user_ids: list[int], recent: int = 10) -> dict[int, dict[str, Any]]:
    """Per user with tests: test count, metric means over all tests and over the newest `recent`, counts, error
    locations, layout, and `covered_until` (the newest ingested_at). Users without tests are absent."""
    means = ", ".join(f"avg({_q(name)}) AS {_q(name)}" for name in METRIC_FIELDS)
    sums = ", ".join(f"toUInt64(sum({_q(name)})) AS {_q(name)}" for name in COUNT_FIELDS[4:])
    result = client.query(
        f"SELECT user_id, count() AS tests, sum(keystroke_count) AS keystrokes, {means}, {sums}, "
        "sumForEach(errors_by_finger) AS errors_by_finger, sumForEach(errors_by_hand) AS errors_by_hand, "
        "sumForEach(errors_by_row) AS errors_by_row, topK(1)(layout) AS layouts, "
        "max(ingested_at) AS covered_until FROM test_results FINAL WHERE user_id IN {u:Array(UInt64)} "
        "GROUP BY user_id",
        parameters={"u": user_ids},
    )
    recent_result = client.query(
        f"SELECT user_id, count() AS tests, {means} FROM (SELECT * FROM test_results FINAL "
        "WHERE user_id IN {u:Array(UInt64)} ORDER BY started_at DESC LIMIT {n:UInt32} BY user_id) GROUP BY user_id",
        parameters={"u": user_ids, "n": recent},
    )
    latest_by_user = {int(row[0]): dict(zip(recent_result.column_names, row)) for row in recent_result.result_rows}
    out = {}
    for row in result.result_rows:
        overall = dict(zip(result.column_names, row))
        user_id, latest = int(overall["user_id"]), latest_by_user[int(overall["user_id"])]
        out[user_id] = {
            "test_count": int(overall["tests"]),
            "keystroke_count": int(overall["keystrokes"]),
            "layout": overall["layouts"][0] if overall["layouts"] else "qwerty",
            "overall": {name: _number(overall[name]) for name in METRIC_FIELDS},
            "recent": {"tests": int(latest["tests"]), **{name: _number(latest[name]) for name in METRIC_FIELDS}},
            "totals": {name: int(overall[name]) for name in COUNT_FIELDS[4:]},
            "errors_by": {
                name.removeprefix("errors_by_"): [int(v) for v in overall[name]] for name in ERROR_LOCATION_FIELDS
            },
            "covered_until": overall["covered_until"],
        }
    return out


def user_summary(client: Client, user_id: int, recent: int = 10) -> dict[str, Any] | None:
    """Test count and metric means over all tests and over the newest `recent`; None for an unknown user."""
    return users_summary(client, [user_id], recent).get(user_id)


def load_job_watermark(client: Client, job: str) -> datetime | None:
    """Where a batch job got to (`job_watermarks`), None before its first run."""
    rows = client.query(
        "SELECT watermark FROM job_watermarks FINAL WHERE job = {j:String}", parameters={"j": job}
    ).result_rows
    return rows[0][0] if rows else None


def store_job_watermark(client: Client, job: str, watermark: datetime) -> None:
    client.insert("job_watermarks", [[job, watermark]], column_names=["job", "watermark"])


def load_job_progress(client: Client, job: str) -> tuple[datetime, int] | None:
    """An unfinished run of a batch job (`job_progress`): (the watermark it will store, the last user id done);
    None when the last run finished or none ran."""
    rows = client.query(
        "SELECT run_until, done_through, finished FROM job_progress FINAL WHERE job = {j:String}",
        parameters={"j": job},
    ).result_rows
    if not rows or rows[0][2]:
        return None
    return rows[0][0], int(rows[0][1])


def store_job_progress(
    client: Client, job: str, run_until: datetime, done_through: int, *, finished: bool = False
) -> None:
    client.insert(
        "job_progress",
        [[job, run_until, done_through, int(finished), datetime.now(UTC)]],
        column_names=["job", "run_until", "done_through", "finished", "updated_at"],
    )
