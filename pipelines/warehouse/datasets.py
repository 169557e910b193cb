"""The exported datasets: each one's directory name, Parquet schema (column names, types and descriptions, stable: a
change is a new `SCHEMA_VERSION`), the ClickHouse query that reads one day of it, and the file sizing.

- `per_test`: one row per test that started that day (from `test_results FINAL`), its metrics and counts;
- `user_daily`: one row per user with tests that day: tests, mean / median / best WPM, accuracy, health,
  keystrokes, time typed, and the day of the user's first test ever (the cohort key);
- `user_key_daily`: one row per user and presented key over the user's tests that day (from `test_keys`):
  presses, errors, time to type (mean, median, p95) and hold time.

Every query takes the day and the snapshot's watermark (`{day:Date}`, `{watermark_ms:Int64}`; pipelines/warehouse/
export.py says why), so all three describe exactly the same tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from app.clickhouse.store import UNIT_ARRAYS
from app.schemas import COUNT_FIELDS, MAX_USER_ID, METRIC_FIELDS

SCHEMA_VERSION = 1
# A day's dataset is split into files of at most this many rows (BigQuery and Snowflake like files of 100 MB-1 GB;
# a per-test row is about 100 bytes compressed), written in row groups of ROW_GROUP_ROWS rows.
MAX_FILE_ROWS = 4_000_000
ROW_GROUP_ROWS = 262_144

# Timestamps as Parquet TIMESTAMP_MICROS adjusted to UTC: TIMESTAMP in BigQuery, TIMESTAMP_TZ / _NTZ in Snowflake.
_TS = pa.timestamp("us", tz="UTC")
_SQL_TYPES = {"int64": "INT64", "double": "FLOAT64", "string": "STRING", "date32[day]": "DATE", str(_TS): "TIMESTAMP"}


def _field(name: str, type_: pa.DataType, nullable: bool, description: str) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


_METRIC_DOCS = {
    "wpm": "words per minute, (len(transcribed) - 1) / seconds x 60 / 5",
    "accuracy": "correct character presses / character presses (0-1)",
    "health_score": "typing-technique health 0-100 (null with fewer than 3 defined components)",
}
_COUNT_DOCS = {"c_correct": "HCI C: correct characters", "inf": "HCI INF: incorrect, not fixed", "if_": "HCI IF: fixed"}

PER_TEST_SCHEMA = pa.schema(
    [
        _field(
            "user_id", pa.int64(), False, "the typist (keyscope user id); negative: an anonymized test, of no typist"
        ),
        _field("test_id", pa.string(), False, "the test's id, unique per user"),
        _field("started_at", _TS, False, "when the test started; its UTC date is the partition's day"),
        _field("layout", pa.string(), False, "keyboard layout (qwerty, qwertz, azerty, dvorak, colemak)"),
        _field("language", pa.string(), False, "language tag of the text"),
        _field("keystroke_count", pa.int64(), False, "key presses (every key-down, named keys included)"),
        _field("duration_ms", pa.int64(), False, "ms from the first to the last press"),
        *[
            _field(name, pa.float64(), True, _METRIC_DOCS.get(name, "per-test metric (README); null when undefined"))
            for name in METRIC_FIELDS
        ],
        *[_field(name, pa.int64(), False, _COUNT_DOCS.get(name, "per-test count (README)")) for name in COUNT_FIELDS],
        _field("ingested_at", _TS, False, "when keyscope stored the test"),
    ]
)

USER_DAILY_SCHEMA = pa.schema(
    [
        _field("user_id", pa.int64(), False, "the typist"),
        _field("tests", pa.int64(), False, "tests started that day"),
        _field("first_test_at", _TS, False, "start of the day's first test"),
        _field("last_test_at", _TS, False, "start of the day's last test"),
        _field("wpm_tests", pa.int64(), False, "tests with a defined WPM (the weight of mean_wpm across days)"),
        _field("mean_wpm", pa.float64(), True, "mean WPM of the day's tests (null if none has one)"),
        _field("median_wpm", pa.float64(), True, "median WPM of the day's tests (mean of the middle two if even)"),
        _field("best_wpm", pa.float64(), True, "highest WPM of the day"),
        _field("mean_accuracy", pa.float64(), True, "mean accuracy (0-1) of the day's tests"),
        _field("mean_health_score", pa.float64(), True, "mean health score (0-100) of the day's tests"),
        _field("keystrokes", pa.int64(), False, "key presses in the day's tests"),
        _field("time_typed_ms", pa.int64(), False, "sum of the tests' durations, first to last press, in ms"),
        _field("first_test_day", pa.date32(), False, "UTC day of the user's first test ever (signup for cohorts)"),
    ]
)

USER_KEY_DAILY_SCHEMA = pa.schema(
    [
        _field("user_id", pa.int64(), False, "the typist"),
        _field("key", pa.string(), False, "the presented character"),
        _field("presses", pa.int64(), False, "presses at positions where this character was presented"),
        _field("errors", pa.int64(), False, "of which wrong"),
        _field("timed_presses", pa.int64(), False, "presses with a time to type (not a test's first press)"),
        _field("time_to_type_sum_ms", pa.int64(), False, "sum of their times to type"),
        _field("mean_time_to_type_ms", pa.float64(), True, "time_to_type_sum_ms / timed_presses"),
        _field("median_time_to_type_ms", pa.float64(), True, "median time to type (ClickHouse quantilesTiming)"),
        _field("p95_time_to_type_ms", pa.float64(), True, "95th percentile time to type (quantilesTiming)"),
        _field("holds", pa.int64(), False, "presses with a known hold time"),
        _field("hold_sum_ms", pa.int64(), False, "sum of their hold times"),
        _field("mean_hold_ms", pa.float64(), True, "hold_sum_ms / holds"),
    ]
)

# The day's tests in the snapshot: started on {day} (UTC; started_at is a UTC column) and ingested by the watermark.
_DAY_TESTS = "toDate(started_at) = {day:Date} AND toUnixTimestamp64Milli(ingested_at) <= {watermark_ms:Int64}"
# The per-user datasets leave out anonymized tests (pipelines/archive.py: over two years old, their user ids above
# every real one): they belong to no typist, and each one's pseudonym would count as a typist of one test.
_TYPISTS_DAY_TESTS = f"{_DAY_TESTS} AND user_id <= {MAX_USER_ID}"

_PER_TEST_SQL = f"""
SELECT user_id, test_id, started_at, layout, language, keystroke_count, duration_ms,
       {", ".join(f"`{name}`" for name in (*METRIC_FIELDS, *COUNT_FIELDS))}, ingested_at
FROM test_results FINAL
WHERE {_DAY_TESTS}
ORDER BY user_id, started_at, test_id
"""

_USER_DAILY_SQL = f"""
SELECT d.user_id AS user_id, d.tests AS tests, d.first_test_at AS first_test_at, d.last_test_at AS last_test_at,
       d.wpm_tests AS wpm_tests, d.mean_wpm AS mean_wpm, d.median_wpm AS median_wpm, d.best_wpm AS best_wpm,
       d.mean_accuracy AS mean_accuracy, d.mean_health_score AS mean_health_score, d.keystrokes AS keystrokes,
       d.time_typed_ms AS time_typed_ms, f.first_test_day AS first_test_day
FROM
(
    SELECT user_id, count() AS tests, min(started_at) AS first_test_at, max(started_at) AS last_test_at,
           countIf(wpm IS NOT NULL) AS wpm_tests, avg(wpm) AS mean_wpm,
           quantileExactInclusive(0.5)(wpm) AS median_wpm, max(wpm) AS best_wpm,
           avg(accuracy) AS mean_accuracy, avg(health_score) AS mean_health_score,
           sum(keystroke_count) AS keystrokes, sum(duration_ms) AS time_typed_ms
    FROM test_results FINAL
    WHERE {_TYPISTS_DAY_TESTS}
    GROUP BY user_id
) AS d
INNER JOIN
(
    -- The day's users' first test ever: a primary-key range read per user, and the first test time kept for them
    -- when their oldest tests were anonymized (migration 0013).
    SELECT user_id, toDate(min(first_at)) AS first_test_day
    FROM
    (
        SELECT user_id, started_at AS first_at
        FROM test_results
        WHERE user_id IN (SELECT user_id FROM test_results WHERE {_TYPISTS_DAY_TESTS})
          AND toUnixTimestamp64Milli(ingested_at) <= {{watermark_ms:Int64}}
        UNION ALL
        SELECT user_id, first_test_at AS first_at
        FROM user_first_tests
        WHERE user_id IN (SELECT user_id FROM test_results WHERE {_TYPISTS_DAY_TESTS})
    )
    GROUP BY user_id
) AS f ON d.user_id = f.user_id
ORDER BY user_id
"""

# ARRAY JOIN makes test_keys' rows one per (test, presented key).
_USER_KEY_DAILY_SQL = f"""
SELECT user_id, key, presses, errors, timed_presses, time_to_type_sum_ms,
       if(timed_presses > 0, time_to_type_sum_ms / timed_presses, NULL) AS mean_time_to_type_ms,
       if(timed_presses > 0, toFloat64(q[1]), NULL) AS median_time_to_type_ms,
       if(timed_presses > 0, toFloat64(q[2]), NULL) AS p95_time_to_type_ms,
       holds, hold_sum_ms,
       if(holds > 0, hold_sum_ms / holds, NULL) AS mean_hold_ms
FROM
(
    SELECT user_id, key, sum(presses) AS presses, sum(errors) AS errors, sum(timed_presses) AS timed_presses,
           sum(time_to_type_sum_ms) AS time_to_type_sum_ms, quantilesTimingArray(0.5, 0.95)(time_to_type_ms) AS q,
           sum(holds) AS holds, sum(hold_sum_ms) AS hold_sum_ms
    FROM
    (
        SELECT user_id, {UNIT_ARRAYS["key"]}
        FROM test_keys FINAL
        ARRAY JOIN {UNIT_ARRAYS["key"]}
        WHERE toDate(started_at) = {{day:Date}}
          AND (user_id, test_id) IN (SELECT user_id, test_id FROM test_results FINAL WHERE {_TYPISTS_DAY_TESTS})
    )
    GROUP BY user_id, key
)
ORDER BY user_id, key
"""


@dataclass(frozen=True)
class Dataset:
    """One exported dataset: its directory name, Parquet schema, query and what it reads."""

    name: str
    schema: pa.Schema
    sql: str
    source: str


DATASETS: tuple[Dataset, ...] = (
    Dataset("per_test", PER_TEST_SCHEMA, _PER_TEST_SQL, "test_results FINAL"),
    Dataset("user_daily", USER_DAILY_SCHEMA, _USER_DAILY_SQL, "test_results FINAL"),
    Dataset("user_key_daily", USER_KEY_DAILY_SCHEMA, _USER_KEY_DAILY_SQL, "test_keys FINAL"),
)


def manifest_columns(schema: pa.Schema) -> list[dict[str, Any]]:
    """A dataset's columns as its manifest lists them: name, Arrow type, the warehouse's SQL type, nullability and
    description."""
    return [
        {
            "name": f.name,
            "type": str(f.type),
            "sql_type": _SQL_TYPES[str(f.type)],
            "nullable": f.nullable,
            "description": (f.metadata or {}).get(b"description", b"").decode(),
        }
        for f in schema
    ]
