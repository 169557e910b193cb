"""Warehouse export: one UTC day of keyscope's data as date-partitioned Parquet for BigQuery / Snowflake (seed 4.2).

    python -m pipelines.warehouse export [--day YYYY-MM-DD] [--days N] [--out URI]    # default: yesterday (UTC)
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m pipelines.warehouse export
    keyscope warehouse export [--day D] [--out URI]        keyscope warehouse cohorts [--from URI]

The datasets of pipelines/warehouse/datasets.py, each under `<root>/<dataset>/day=YYYY-MM-DD/part-N.parquet` (hive
partitioning: the partition key `day` is in the path only, never inside the files, as Hive, BigQuery and Snowflake
expect), zstd-compressed. `<root>` is `--out`, else `KEYSCOPE_WAREHOUSE_URI`, else `<data_dir>/warehouse`
(pipelines/warehouse/files.py).

Consistency. All three datasets read the same snapshot of `test_results`: the rows ingested up to a watermark, the
ClickHouse server's clock minus `SETTLE_S` when the export starts (a row is visible a moment after its `ingested_at`
is set, so rows near "now" are left to the next run). `user_key_daily` sums the `test_keys` rows of exactly those
tests (a test's result row is written after its other rows, so every test in the snapshot has them). All three
therefore describe exactly the same tests. A test that arrives after its day was exported appears when the day is
exported again.

Retention. After exporting, each run (pipelines/warehouse/job.py) exports again the days that have just passed the
two-year anonymization (pipelines/warehouse/retention.py: anonymized tests wrap to negative user ids in `per_test`,
the per-typist datasets leave them out), and removes from every exported day the rows of the users deleted since its
last sweep (pipelines/warehouse/erasure.py; `keyscope warehouse erase` runs it alone).

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
`cluster/prod/app/raycronjob-warehouse.yaml`); a very large day splits into several parts of `max_file_rows` rows each.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client

from pipelines.warehouse.datasets import DATASETS, MAX_FILE_ROWS, ROW_GROUP_ROWS, SCHEMA_VERSION, manifest_columns
from pipelines.warehouse.files import MANIFEST, STAGING, delete_dir, list_files, open_root, write_json

log = logging.getLogger("keyscope.warehouse")

# Rows ingested within this many seconds of the export's start are left to the next run (see the docstring).
SETTLE_S = 60.0


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
                "columns": manifest_columns(dataset.schema),
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


def parse_day(text: str) -> date:
    """A UTC day from YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not a day (YYYY-MM-DD): {text!r}") from exc

