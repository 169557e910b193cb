"""Warehouse export: one UTC day of keyscope's data as date-partitioned Parquet for BigQuery / Snowflake (seed 4.2).

    python -m pipelines.warehouse [--day YYYY-MM-DD] [--days N] [--out URI]      # default: yesterday (UTC)
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m pipelines.warehouse
    keyscope warehouse export [--day D] [--out URI]        keyscope warehouse cohorts [--from URI]

Three datasets, each under `<root>/<dataset>/day=YYYY-MM-DD/part-N.parquet` (hive partitioning: the partition key
`day` is in the path only, never inside the files, as Hive, BigQuery and Snowflake expect), zstd-compressed, with
the column names and types of `DATASETS` (stable: a change is a new `SCHEMA_VERSION`):

- `per_test`: one row per test that started that day (from `test_results FINAL`), its metrics and counts;
- `user_daily`: one row per user with tests that day: tests, mean / median / best WPM, accuracy, health,
  keystrokes, time typed, and the day of the user's first test ever (the cohort key);
- `user_key_daily`: one row per user and presented key over the user's tests that day (from `test_keys`):
  presses, errors, time to type (mean, median, p95) and hold time.

`<root>` is `--out`, else `KEYSCOPE_WAREHOUSE_URI`, else `<data_dir>/warehouse`: a local directory or any URI a
pyarrow filesystem opens (`s3://bucket/prefix?region=…`, `gs://…`, `file:///…`; credentials from the usual
AWS / Google environment or the pod's service account).

Consistency. All three datasets read the same snapshot of `test_results`: the rows ingested up to a watermark, the
ClickHouse server's clock minus `SETTLE_S` when the export starts (a row is visible a moment after its `ingested_at`
is set, so rows near "now" are left to the next run). `user_key_daily` sums the `test_keys` rows of exactly those
tests (a test's result row is written after its other rows, so every test in the snapshot has them). All three
therefore describe exactly the same tests. A test that arrives after its day was exported appears when the day is
exported again.

Retention. After exporting, each run exports again the days that have just passed the two-year anonymization
(`pipelines/warehouse_retention.py`: anonymized tests wrap to negative user ids in `per_test`, the per-typist
datasets leave them out), and removes from every exported day the rows of the users deleted since its last sweep
(`pipelines/warehouse_erasure.py`; `keyscope warehouse erase` runs it alone).

Idempotent per day, by temp name then rename: every file of a run is first written under `<root>/_staging/day=D/`
(outside every dataset's prefix, so no external table sees it), and only when all three datasets are written are
they moved into place: per dataset, the day's `_manifest.json` is deleted, each new `part-N.parquet` is moved over
the old one (a rename on a local disk, an atomic object copy on S3 / GCS), parts the new run did not write are
deleted, and the manifest is written last. A day is complete when its `_manifest.json` exists; it lists the files,
row counts, columns and the source watermark. Re-running a day replaces its files, never adds to them. (Two runs
of the same day at the same time are not supported: the RayCronJob never overlaps them.)

Why a driver-side pyarrow write and not a Ray Data pipeline: the work is one ClickHouse query per dataset,
aggregated where the data lives (DESIGN decision 5), streamed as Arrow record batches into a Parquet writer; memory
stays at about one row group whatever the day's size. Ray Data would add a hop and no parallelism (the source is
one query), cannot reach an in-process `chdb://` store from its workers, and names its output files itself, which
rules out the in-place replacement above. The job still runs as a Ray job (`ray job submit`, the RayCronJob in
`cluster/raycronjob-warehouse.yaml`); a very large day splits into several parts of `max_file_rows` rows each.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client

from app.argtypes import positive_int
from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import UNIT_ARRAYS, load_offsets
from app.config import Settings
from app.schemas import COUNT_FIELDS, MAX_USER_ID, METRIC_FIELDS

log = logging.getLogger("keyscope.warehouse")

SCHEMA_VERSION = 1
# Rows ingested within this many seconds of the export's start are left to the next run (see the docstring).
SETTLE_S = 60.0
# A day's dataset is split into files of at most this many rows (BigQuery and Snowflake like files of 100 MB-1 GB;
# a per-test row is about 100 bytes compressed), written in row groups of ROW_GROUP_ROWS rows.
MAX_FILE_ROWS = 4_000_000
ROW_GROUP_ROWS = 262_144
MANIFEST = "_manifest.json"
STAGING = "_staging"
COHORT_SQL_PATH = Path(__file__).with_name("warehouse_cohorts.sql")

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


@dataclass
class ExportReport:
    """What one day's export wrote."""

    day: date
    root: str
    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)
    watermark: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        counts = ", ".join(f"{name} {rows:,} rows" for name, rows in self.rows.items())
        return f"warehouse {self.day}: {counts} → {self.root} in {self.seconds:.1f} s (watermark {self.watermark})"


# --- filesystems ---------------------------------------------------------------------------------------------------


def warehouse_uri(settings: Settings, out: str | None = None) -> str:
    """Where the warehouse files go: `out`, else KEYSCOPE_WAREHOUSE_URI, else `<data_dir>/warehouse`."""
    return out or settings.warehouse_uri or str(Path(settings.data_dir) / "warehouse")


def open_root(uri: str, filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and root path of a warehouse URI (a plain path is a local directory); with
    `filesystem`, `uri` is a path in it."""
    if filesystem is not None:
        return filesystem, uri.rstrip("/")
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
    filesystem, path = pafs.FileSystem.from_uri(uri)
    return filesystem, path.rstrip("/")


def list_files(fs: pafs.FileSystem, directory: str, recursive: bool = False) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(directory, allow_not_found=True, recursive=recursive)
    return [info for info in fs.get_file_info(selector) if info.type == pafs.FileType.File]


def parquet_parts(fs: pafs.FileSystem, directory: str) -> list[pafs.FileInfo]:
    """A day directory's Parquet parts, by name (its manifest and anything else left out)."""
    return sorted((i for i in list_files(fs, directory) if i.base_name.endswith(".parquet")), key=lambda i: i.base_name)


def delete_dir(fs: pafs.FileSystem, directory: str) -> None:
    if fs.get_file_info(directory).type != pafs.FileType.NotFound:
        fs.delete_dir(directory)


def write_json(fs: pafs.FileSystem, path: str, value: Any) -> None:
    with fs.open_output_stream(path) as out:
        out.write((json.dumps(value, indent=2, sort_keys=False) + "\n").encode())


# --- export --------------------------------------------------------------------------------------------------------


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """The batch with the dataset's column order, types and descriptions (ClickHouse's UInt64 → int64, …). An
    anonymized test's user id (2^63 and up) wraps to a negative INT64: the only ids that do."""
    table = pa.Table.from_batches([batch]).select(schema.names)
    if "user_id" in table.column_names and table.schema.field("user_id").type == pa.uint64():
        wrapped = pc.cast(table.column("user_id"), pa.int64(), safe=False)
        table = table.set_column(table.column_names.index("user_id"), "user_id", wrapped)
    return table.cast(schema)


def _write_parts(
    fs: pafs.FileSystem,
    directory: str,
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    max_file_rows: int,
    row_group_rows: int,
) -> list[dict[str, Any]]:
    """Stream the batches into part-0.parquet, part-1.parquet, … of at most `max_file_rows` rows (one empty part-0 for
    an empty day, so that the day's schema is always readable); returns each file's name and rows."""
    fs.create_dir(directory, recursive=True)
    parts: list[dict[str, Any]] = []
    writer: pq.ParquetWriter | None = None
    pending: list[pa.Table] = []
    pending_rows = 0

    def flush() -> None:
        nonlocal pending, pending_rows
        if pending and writer is not None:
            writer.write_table(pa.concat_tables(pending), row_group_size=row_group_rows)
        pending, pending_rows = [], 0

    def open_part() -> pq.ParquetWriter:
        name = f"part-{len(parts)}.parquet"
        parts.append({"name": name, "rows": 0})
        return pq.ParquetWriter(f"{directory}/{name}", schema, filesystem=fs, compression="zstd")

    for batch in batches:
        table = _conform(batch, schema)
        while table.num_rows:
            if writer is None:
                writer = open_part()
            take = table.slice(0, max_file_rows - parts[-1]["rows"])
            table = table.slice(take.num_rows)
            pending.append(take)
            pending_rows += take.num_rows
            parts[-1]["rows"] += take.num_rows
            if pending_rows >= row_group_rows:
                flush()
            if parts[-1]["rows"] >= max_file_rows:
                flush()
                writer.close()
                writer = None
    if writer is None and not parts:
        writer = open_part()
        writer.write_table(schema.empty_table())
    flush()
    if writer is not None:
        writer.close()
    return parts


def _stream(client: Client, sql: str, parameters: dict[str, Any]) -> Iterator[pa.RecordBatch]:
    with client.query_arrow_stream(sql, parameters=parameters) as stream:
        yield from stream


def _columns(schema: pa.Schema) -> list[dict[str, Any]]:
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


def _publish(fs: pafs.FileSystem, staged: str, target: str, parts: list[dict[str, Any]], manifest: dict) -> None:
    """Move a dataset's staged parts over its day's files, drop parts the new run did not write, manifest last."""
    fs.create_dir(target, recursive=True)
    manifest_path = f"{target}/{MANIFEST}"
    if fs.get_file_info(manifest_path).type == pafs.FileType.File:
        fs.delete_file(manifest_path)  # from here until the new manifest the day reads as incomplete
    names = {part["name"] for part in parts}
    for name in sorted(names):
        fs.move(f"{staged}/{name}", f"{target}/{name}")
    for info in list_files(fs, target):
        if info.base_name not in names and info.base_name != MANIFEST:
            fs.delete_file(info.path)  # a part of an earlier, larger run of this day
    write_json(fs, f"{staged}/{MANIFEST}", manifest)
    fs.move(f"{staged}/{MANIFEST}", manifest_path)


def _server_now_ms(client: Client) -> int:
    return int(client.query("SELECT toUnixTimestamp64Milli(now64(3))").result_rows[0][0])


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def export_day(
    client: Client,
    day: date,
    uri: str,
    *,
    settle_s: float = SETTLE_S,
    max_file_rows: int = MAX_FILE_ROWS,
    row_group_rows: int = ROW_GROUP_ROWS,
    ingest_offsets: dict[str, Any] | None = None,
    filesystem: pafs.FileSystem | None = None,
) -> ExportReport:
    """Export one UTC day to the warehouse at `uri` (a path in `filesystem` if given), replacing what an earlier run
    of that day wrote.

    `ingest_offsets` (consumer group, topic and the stored offsets) goes into the manifests as lineage.
    """
    started = time.monotonic()
    fs, root = open_root(uri, filesystem)
    watermark_ms = _server_now_ms(client) - round(settle_s * 1000)
    parameters = {"day": day, "watermark_ms": watermark_ms}
    staging = f"{root}/{STAGING}/day={day.isoformat()}"
    delete_dir(fs, staging)  # what a crashed run of this day left
    report = ExportReport(day=day, root=uri, watermark=_iso(watermark_ms))
    written: dict[str, list[dict[str, Any]]] = {}
    try:
        for dataset in DATASETS:
            written[dataset.name] = _write_parts(
                fs,
                f"{staging}/{dataset.name}",
                _stream(client, dataset.sql, parameters),
                dataset.schema,
                max_file_rows,
                row_group_rows,
            )
        exported_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for dataset in DATASETS:
            parts = written[dataset.name]
            for part in parts:
                part["bytes"] = fs.get_file_info(f"{staging}/{dataset.name}/{part['name']}").size
            manifest = {
                "dataset": dataset.name,
                "day": day.isoformat(),
                "schema_version": SCHEMA_VERSION,
                "format": "parquet",
                "compression": "zstd",
                "partitioning": "hive (day=YYYY-MM-DD in the path, not in the files)",
                "rows": sum(part["rows"] for part in parts),
                "files": parts,
                "columns": _columns(dataset.schema),
                "source": {
                    "table": dataset.source,
                    "watermark": {
                        "ingested_at_max": report.watermark,
                        "ingested_at_max_ms": watermark_ms,
                        "applies": True,
                        "meaning": "tests of the day stored (ingested_at) up to this time",
                    },
                    "ingest_offsets": ingest_offsets,
                },
                "exported_at": exported_at,
            }
            target = f"{root}/{dataset.name}/day={day.isoformat()}"
            _publish(fs, f"{staging}/{dataset.name}", target, parts, manifest)
            report.rows[dataset.name] = manifest["rows"]
            report.files[dataset.name] = [f"{target}/{part['name']}" for part in parts]
    finally:
        delete_dir(fs, staging)
    report.seconds = time.monotonic() - started
    log.info(report.line())
    return report


def yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def run_export(
    settings: Settings, day: date | None = None, out: str | None = None, days: int = 1, *, upkeep: bool = True
) -> list[ExportReport]:
    """Export `days` days ending with `day` (default yesterday, UTC), oldest first, with the settings' ClickHouse;
    then (`upkeep`) keep what is exported in line with the stores: days newly past the two-year cut-off exported
    again anonymized (pipelines/warehouse_retention.py), users deleted since the last sweep removed from every day
    (pipelines/warehouse_erasure.py)."""
    if days < 1:
        raise ValueError("days must be ≥ 1")
    last = day or yesterday()
    uri = warehouse_uri(settings, out)
    client = clickhouse_client(settings.clickhouse_url, background=True)
    try:
        offsets = load_offsets(client, settings.consumer_group, settings.keystroke_topic)
        lineage = {
            "consumer_group": settings.consumer_group,
            "topic": settings.keystroke_topic,
            "next_offsets": {str(partition): offset for partition, offset in sorted(offsets.items())},
        }
        reports = [
            export_day(client, last - timedelta(days=back), uri, ingest_offsets=lineage)
            for back in range(days - 1, -1, -1)
        ]
        if upkeep:
            from pipelines.archive import cutoffs
            from pipelines.warehouse_erasure import sweep_deleted_users
            from pipelines.warehouse_retention import reexport_anonymized_days

            cold_cutoff = cutoffs(settings, datetime.now(UTC))[1]
            reexport_anonymized_days(client, uri, cold_cutoff, ingest_offsets=lineage)
            sweep_deleted_users(client, uri)
        return reports
    finally:
        client.close()


# --- the cohort example ---------------------------------------------------------------------------------------------


def cohort_sql(user_daily: str) -> str:
    """The cohort query (pipelines/warehouse_cohorts.sql) with `{user_daily}` replaced by a table expression."""
    return COHORT_SQL_PATH.read_text().replace("{user_daily}", user_daily)


def cohort_report(uri: str, client: Client | None = None, filesystem: pafs.FileSystem | None = None) -> pa.Table:
    """Weekly retention and WPM gain by signup week over the exported `user_daily` files at `uri`.

    The query runs on ClickHouse (`client`, else an in-process chDB) with the `file()` table function over the
    Parquet files; files on a remote filesystem are copied to a temporary directory first. Each row: signup_week,
    week, cohort_users, active_users, retention, mean_wpm, wpm_gain (see the SQL file for the definitions).
    """
    fs, root = open_root(uri, filesystem)
    source = f"{root}/user_daily"
    if not any(info.base_name.endswith(".parquet") for info in list_files(fs, source, recursive=True)):
        raise ValueError(f"no exported user_daily files under {uri}: run `keyscope warehouse export` first")
    scratch = tempfile.mkdtemp(prefix="keyscope-cohorts-")
    own_client = client is None
    try:
        if not isinstance(fs, pafs.LocalFileSystem):
            local = f"{scratch}/user_daily"
            pafs.copy_files(source, local, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
            source = local
        if own_client:
            client = clickhouse_client(f"chdb://{scratch}/chdb")
        pattern = f"{source}/day=*/*.parquet".replace("\\", "\\\\").replace("'", "\\'")
        sql = cohort_sql(f"file('{pattern}', Parquet)")
        return client.query_arrow(sql, settings={"use_hive_partitioning": 1})
    finally:
        if own_client and client is not None:
            client.close()
        shutil.rmtree(scratch, ignore_errors=True)


def print_cohorts(table: pa.Table) -> None:
    header = ("signup week", "week", "users", "active", "retention", "mean WPM", "WPM gain")
    print("{:<12} {:>4} {:>6} {:>6} {:>9} {:>8} {:>8}".format(*header))
    for row in table.to_pylist():
        gain = "" if row["wpm_gain"] is None else f"{row['wpm_gain']:+.1f}"
        wpm = "" if row["mean_wpm"] is None else f"{row['mean_wpm']:.1f}"
        print(
            f"{row['signup_week']!s:<12} {row['week']:>4} {row['cohort_users']:>6} {row['active_users']:>6} "
            f"{row['retention']:>9.1%} {wpm:>8} {gain:>8}"
        )


def parse_day(text: str) -> date:
    """A UTC day from YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not a day (YYYY-MM-DD): {text!r}") from exc


def _day(text: str) -> date:
    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


DESCRIPTION = (
    "Export one UTC day (default yesterday) of per-test results and per-user / per-key daily aggregates from "
    "ClickHouse to date-partitioned Parquet, replacing that day's earlier export; erase deleted users from the "
    "exported days; run the cohort example over the files."
)
ACTIONS = ("export", "erase", "cohorts")
ROOT_HELP = "root directory or URI (default: KEYSCOPE_WAREHOUSE_URI or <data_dir>/warehouse)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The job's actions and flags, for `python -m pipelines.warehouse` and `keyscope warehouse` alike."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="one UTC day of per-test results and per-user / per-key daily aggregates → Parquet (replaces the day)",
    )
    export.add_argument("--day", type=_day, help="the (last) UTC day to export, YYYY-MM-DD (default: yesterday)")
    export.add_argument(
        "--days", type=positive_int, default=1, help="export this many days ending with --day (default 1)"
    )
    export.add_argument("--out", metavar="URI", help=ROOT_HELP)
    erase = actions.add_parser(
        "erase", help="remove the users deleted since the last sweep from every exported day (each export also does)"
    )
    erase.add_argument("--out", metavar="URI", help=ROOT_HELP)
    cohorts = actions.add_parser(
        "cohorts", help="weekly retention and WPM gain by signup week (pipelines/warehouse_cohorts.sql) over the files"
    )
    cohorts.add_argument("--from", dest="source", metavar="URI", help=ROOT_HELP)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """The action the arguments name; prints its report lines or table."""
    if args.action == "export":
        for report in run_export(settings, args.day, args.out, args.days):
            print(report.line())
        return 0
    if args.action == "erase":
        from pipelines.warehouse_erasure import sweep_deleted_users

        client = clickhouse_client(settings.clickhouse_url, background=True)
        try:
            print(sweep_deleted_users(client, warehouse_uri(settings, args.out)).line())
        finally:
            client.close()
        return 0
    uri = warehouse_uri(settings, args.source)
    table = cohort_report(uri)
    print(f"weekly retention and WPM gain by signup week, over {uri}/user_daily:")
    print_cohorts(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.warehouse", description=DESCRIPTION)
    add_arguments(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in (*ACTIONS, "-h", "--help"):
        argv = ["export", *argv]  # the RayCronJob and earlier scripts run the export without naming it
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run(Settings.from_env(), args)


if __name__ == "__main__":
    raise SystemExit(main())
