"""The cold store of raw keystrokes: Parquet files on any pyarrow filesystem, one per UTC day and user bucket.

Under the cold root (`KEYSCOPE_COLD_URI`: a directory or a URI such as `s3://bucket/prefix`; default
`<data_dir>/cold`):

    keystrokes/day=YYYY-MM-DD/user_bucket=NN/part-0.parquet   that day's keystrokes of the users in bucket NN
    _staging/<random>.parquet                                 files being written; never read, swept later

Each file holds the columns of the ClickHouse `keystrokes` table (`ARCHIVE_SCHEMA`), sorted by its key
(user_id, started_at, test_id, seq), zstd-compressed. A user's bucket is a multiplicative hash of the user id
(`user_bucket`, and `bucket_sql` for the same in ClickHouse), so one user's rows sit in 1 of 64 files a day.

Every change to a file is a verified write (`ColdStore.write_verified`): the new content goes to a temporary name,
is read back and compared with what was meant, and is then renamed over the file's one fixed name. A reader (the
`file()`/`s3()` glob of `cold_query`) therefore sees a file's old content or its new one, never both or a part.
The manifest table `archive_manifest` in ClickHouse lists the files with their row counts and checksums.

With the test's text, layout and language from `test_results` (kept in ClickHouse for the same two years as the
cold files, see pipelines/archive.py) a cold test's rows rebuild the submission exactly as sent, as
`app.clickhouse.store.stored_test` does for hot rows (press times are the running sum of `iki_ms`, releases press +
`hold_ms`). On S3 the rename is a copy over the key, which S3 replaces atomically.

`ColdArchive` is the cold store's side of a user's data export and deletion; `cold_query` runs SQL over the
files with chDB.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client

from app.clickhouse.client import clickhouse_client
from app.config import Settings
from app.faults import failpoint
from app.schemas import KEYSTROKE_SCHEMA

# The columns of a cold file: exactly what `keystrokes` stores (app/clickhouse/migrations/0006).
ARCHIVE_SCHEMA = KEYSTROKE_SCHEMA
SORT_KEYS = [("user_id", "ascending"), ("started_at", "ascending"), ("test_id", "ascending"), ("seq", "ascending")]
# The same columns as ClickHouse types, for the `file()`/`s3()` table functions of cold queries.
CLICKHOUSE_STRUCTURE = (
    "user_id UInt64, test_id String, started_at DateTime64(3, 'UTC'), seq UInt16, key String, target String, "
    "hold_ms Int32, iki_ms Int32, correct UInt8, clean_transition UInt8"
)

BUCKET_BITS = 6
USER_BUCKETS = 1 << BUCKET_BITS  # 64: two digits in the path, 1/64 of a day's rows per file
_FIBONACCI = 11400714819323198485  # 2^64 / golden ratio: Knuth's multiplicative hash, same in Python and ClickHouse
_MASK64 = (1 << 64) - 1

PREFIX = "keystrokes"
STAGING = "_staging"
FILE_NAME = "part-0.parquet"
GLOB = f"{PREFIX}/day=*/user_bucket=*/*.parquet"
_FILE = re.compile(rf"{PREFIX}/day=(\d{{4}}-\d{{2}}-\d{{2}})/user_bucket=(\d{{2}})/[^/]+\.parquet")
_DAY_DIR = re.compile(rf"{PREFIX}/day=(\d{{4}}-\d{{2}}-\d{{2}})")
ZSTD_LEVEL = 6
ROW_GROUP_ROWS = 1 << 20
# Staged files older than this are leftovers of a crashed writer (a write takes seconds to minutes).
STAGING_MAX_AGE = timedelta(hours=6)

# The table a month of hot keystrokes passes through on its way out (migration 0008).
ARCHIVING_TABLE = "keystrokes_archiving"
MANIFEST_COLUMNS = ["day", "bucket", "path", "rows", "bytes", "sha256", "deleted", "archived_at"]


class ColdStoreError(RuntimeError):
    """A cold file did not read back as written, or the cold store does not match ClickHouse."""


def user_bucket(user_id: int) -> int:
    """The cold-store bucket (0..63) of a user: the top 6 bits of user_id × 2^64/φ, modulo 2^64."""
    return ((int(user_id) * _FIBONACCI) & _MASK64) >> (64 - BUCKET_BITS)


def user_buckets(user_ids: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    """`user_bucket` of every user id, vectorized."""
    if isinstance(user_ids, pa.ChunkedArray):
        user_ids = user_ids.combine_chunks()
    ids = np.asarray(user_ids, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return ((ids * np.uint64(_FIBONACCI)) >> np.uint64(64 - BUCKET_BITS)).astype(np.uint8)


def bucket_sql(column: str = "user_id") -> str:
    """`user_bucket` as a ClickHouse expression (UInt64 multiplication wraps as in Python's `& 2^64-1`)."""
    return f"bitShiftRight({column} * {_FIBONACCI}, {64 - BUCKET_BITS})"


def file_path(day: date, bucket: int) -> str:
    """The path of a day and bucket's file, relative to the cold root."""
    return f"{PREFIX}/day={day.isoformat()}/user_bucket={bucket:02d}/{FILE_NAME}"


def normalize(table: pa.Table) -> pa.Table:
    """Keystroke rows as a cold file holds them: `ARCHIVE_SCHEMA`'s columns and types (from any reader's Arrow)."""
    columns = []
    for field in ARCHIVE_SCHEMA:
        column = table.column(field.name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=ARCHIVE_SCHEMA).combine_chunks()


def row_keys(table: pa.Table) -> pa.Array:
    """One string per row naming it as ClickHouse's ReplacingMergeTree key does: (user_id, started_at, test_id, seq)."""
    started = pc.cast(pc.cast(table.column("started_at"), pa.int64()), pa.string())
    parts = [
        pc.cast(table.column("user_id"), pa.string()),
        started,
        table.column("test_id"),
        pc.cast(table.column("seq"), pa.string()),
    ]
    keys = pc.binary_join_element_wise(*parts, "\x1f")
    return keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys


def merge_rows(old: pa.Table | None, new: pa.Table) -> pa.Table:
    """`old` ∪ `new` with one row per key (a key in both keeps `new`'s row), sorted by the key. `new` must hold
    each key once (ClickHouse FINAL rows do)."""
    new = normalize(new)
    if old is not None and old.num_rows:
        old = normalize(old)
        only_old = pc.invert(pc.is_in(row_keys(old), value_set=row_keys(new)))
        new = pa.concat_tables([old.filter(only_old), new])
    return new.sort_by(SORT_KEYS).combine_chunks()


def cold_uri(settings: Settings) -> str:
    """Where the cold store lives: `KEYSCOPE_COLD_URI`, else `<data_dir>/cold`."""
    return settings.cold_uri or str(Path(settings.data_dir) / "cold")


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def open_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the root path inside it of a directory or filesystem URI."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).resolve())
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path.rstrip("/")


@dataclass(frozen=True)
class ColdFile:
    """One file of the cold store, as the manifest records it."""

    day: date
    bucket: int
    path: str  # relative to the cold root
    rows: int
    bytes: int
    sha256: str


class ColdStore:
    """The cold root on its filesystem: verified writes, reads and listings of the day/bucket files."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.fs, self.root = open_filesystem(uri)

    def _abs(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self._abs(rel)).type == pafs.FileType.File

    def read_bytes(self, rel: str) -> bytes | None:
        """A file's content, or None if there is no such file."""
        try:
            with self.fs.open_input_file(self._abs(rel)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def read(self, rel: str, user_id: int | None = None) -> pa.Table | None:
        """A file's rows (only `user_id`'s when given: row groups of other users are skipped), or None."""
        if not self.exists(rel):
            return None
        filters = None if user_id is None else [("user_id", "=", int(user_id))]
        return normalize(pq.read_table(self._abs(rel), filesystem=self.fs, filters=filters))

    def size(self, rel: str) -> int:
        """A file's size in bytes."""
        return int(self.fs.get_file_info(self._abs(rel)).size or 0)

    def row_count(self, rel: str) -> int:
        """A file's row count from its Parquet footer."""
        with self.fs.open_input_file(self._abs(rel)) as f:
            return pq.ParquetFile(f).metadata.num_rows

    def write_verified(self, day: date, bucket: int, table: pa.Table) -> ColdFile:
        """Replace the day and bucket's file with `table` (sorted, `ARCHIVE_SCHEMA`): written under a temporary
        name, read back and compared row for row, then renamed over the file (readers see old or new content,
        never a mix). Raises ColdStoreError, leaving the old file as it was, when the read-back differs."""
        rel = file_path(day, bucket)
        table = normalize(table)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd", compression_level=ZSTD_LEVEL, row_group_size=ROW_GROUP_ROWS)
        data = sink.getvalue().to_pybytes()
        digest = hashlib.sha256(data).hexdigest()
        staged = f"{STAGING}/{uuid.uuid4().hex}.parquet"
        self.fs.create_dir(self._abs(STAGING), recursive=True)
        with self.fs.open_output_stream(self._abs(staged)) as out:
            out.write(data)
        written = self.read_bytes(staged) or b""
        if hashlib.sha256(written).hexdigest() != digest:
            raise ColdStoreError(f"{staged} read back {len(written)} bytes, not the {len(data)} written")
        back = normalize(pq.read_table(pa.BufferReader(written)))
        if back.num_rows != table.num_rows or not back.equals(table):
            raise ColdStoreError(
                f"{staged} read back {back.num_rows} rows that differ from the {table.num_rows} written"
            )
        failpoint(None, "cold_after_stage")  # staged and verified, not yet renamed over the file
        self.fs.create_dir(self._abs(rel.rsplit("/", 1)[0]), recursive=True)
        self.fs.move(self._abs(staged), self._abs(rel))
        size = self.fs.get_file_info(self._abs(rel)).size
        if size != len(data):
            raise ColdStoreError(f"{rel} is {size} bytes after the rename, not {len(data)}")
        return ColdFile(day, bucket, rel, table.num_rows, len(data), digest)

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self._abs(rel))
        except FileNotFoundError:
            pass

    def files(self, bucket: int | None = None, day: date | None = None) -> list[tuple[date, int, str]]:
        """(day, bucket, relative path) of every data file in the store (of one bucket, of one day when given), by
        day. A listing, not the manifest: a file renamed into place just before a crash is found too."""
        where = PREFIX if day is None else f"{PREFIX}/day={day.isoformat()}"
        selector = pafs.FileSelector(self._abs(where), recursive=True, allow_not_found=True)
        found = []
        for info in self.fs.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            rel = info.path[len(self.root) + 1 :]
            match = _FILE.fullmatch(rel)
            if match and (bucket is None or int(match.group(2)) == bucket):
                found.append((date.fromisoformat(match.group(1)), int(match.group(2)), rel))
        return sorted(found)

    def days(self) -> list[date]:
        """The days that have a directory in the store."""
        selector = pafs.FileSelector(self._abs(PREFIX), recursive=False, allow_not_found=True)
        days = []
        for info in self.fs.get_file_info(selector):
            match = _DAY_DIR.fullmatch(info.path[len(self.root) + 1 :])
            if match and info.type == pafs.FileType.Directory:
                days.append(date.fromisoformat(match.group(1)))
        return sorted(days)

    def delete_day(self, day: date) -> None:
        """Remove a day's directory and every file in it."""
        try:
            self.fs.delete_dir(self._abs(f"{PREFIX}/day={day.isoformat()}"))
        except FileNotFoundError:
            pass

    def sweep_staging(self, older_than: timedelta = STAGING_MAX_AGE) -> int:
        """Delete staged files left by writers that crashed (older than `older_than`, so a write in flight in another
        process is left alone); returns how many. A staged file is never the only copy of anything."""
        selector = pafs.FileSelector(self._abs(STAGING), recursive=True, allow_not_found=True)
        limit = time.time() - older_than.total_seconds()
        removed = 0
        for info in self.fs.get_file_info(selector):
            if info.type == pafs.FileType.File and (info.mtime is None or info.mtime.timestamp() < limit):
                self.delete(info.path[len(self.root) + 1 :])
                removed += 1
        return removed


def record_files(client: Client, files: list[ColdFile], *, deleted: bool = False) -> None:
    """Write the manifest rows of these files (a new version of each day and bucket's row)."""
    if not files:
        return
    now = datetime.now(UTC)
    rows = [[f.day, f.bucket, f.path, f.rows, f.bytes, f.sha256, int(deleted), now] for f in files]
    client.insert("archive_manifest", rows, column_names=MANIFEST_COLUMNS)


def manifest(client: Client, bucket: int | None = None) -> dict[tuple[date, int], ColdFile]:
    """The manifest's live files by (day, bucket)."""
    where = "deleted = 0" + ("" if bucket is None else " AND bucket = {b:UInt8}")
    rows = client.query(
        f"SELECT day, bucket, path, rows, bytes, sha256 FROM archive_manifest FINAL WHERE {where} ORDER BY day, bucket",
        parameters={} if bucket is None else {"b": bucket},
    ).result_rows
    return {(r[0], int(r[1])): ColdFile(r[0], int(r[1]), r[2], int(r[3]), int(r[4]), r[5]) for r in rows}


def local_table(client: Client, table: str) -> str:
    """The table that holds `table`'s parts: itself on one server; `<table>_local` on a cluster, where `table` is a
    Distributed table over it (cluster/clickhouse/)."""
    engine = client.query(
        "SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
        parameters={"t": table},
    ).result_rows
    return f"{table}_local" if engine and engine[0][0] == "Distributed" else table


def reconcile_manifest(client: Client, store: ColdStore, days: list[date], known: list[ColdFile] | None = None) -> int:
    """Make the manifest rows of these days match the files on disk (a writer that crashed, or two writers that
    overlapped, can leave a row behind its file): a row for every file (from `known` when it matches the file's size
    and row count, else read from the file) and `deleted` for rows without a file. Returns the rows corrected."""
    if not days:
        return 0
    listed = {
        (r[0], int(r[1])): (int(r[2]), int(r[3]))
        for r in client.query(
            "SELECT day, bucket, rows, bytes FROM archive_manifest FINAL WHERE deleted = 0 AND day IN {d:Array(Date)}",
            parameters={"d": days},
        ).result_rows
    }
    by_key = {(f.day, f.bucket): f for f in known or [] if f.rows}
    live, gone = [], []
    on_disk = set()
    for day in days:
        for _, bucket, rel in store.files(day=day):
            on_disk.add((day, bucket))
            size, rows = store.size(rel), store.row_count(rel)
            if listed.get((day, bucket)) == (rows, size):
                continue
            entry = by_key.get((day, bucket))
            if entry is None or (entry.rows, entry.bytes) != (rows, size):
                data = store.read_bytes(rel) or b""
                entry = ColdFile(day, bucket, rel, rows, len(data), hashlib.sha256(data).hexdigest())
            live.append(entry)
    for day, bucket in set(listed) - on_disk:
        gone.append(ColdFile(day, bucket, file_path(day, bucket), 0, 0, ""))
    record_files(client, live)
    record_files(client, gone, deleted=True)
    return len(live) + len(gone)


def alter_target(client: Client, table: str) -> str:
    """What an ALTER of `table`'s data names: the table on one server, its local tables on every node of a cluster."""
    local = local_table(client, table)
    return table if local == table else f"{local} ON CLUSTER '{{cluster}}'"


def load_tombstones(client: Client) -> dict[int, int]:
    """User id → when the user's latest deletion was recorded (ms since the epoch), from `user_tombstones`
    (app/user_data.py); {} where that table does not exist. Rows of a user started at or before that time are
    erased data: the archive job writes none of them."""
    exists = client.query(
        "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'user_tombstones'"
    ).result_rows[0][0]
    if not exists:
        return {}
    rows = client.query(
        "SELECT user_id, toUnixTimestamp64Milli(max(deleted_at)) FROM user_tombstones GROUP BY user_id"
    ).result_rows
    return {int(u): int(t) for u, t in rows}


def without_deleted(table: pa.Table, tombstones: dict[int, int]) -> pa.Table:
    """`table` without the rows of deleted users that started at or before their deletion."""
    if not tombstones or table.num_rows == 0:
        return table
    users = pa.array(list(tombstones), pa.uint64())
    index = pc.index_in(table.column("user_id"), value_set=users)
    limit = pc.take(pa.array(list(tombstones.values()), pa.int64()), index)  # null for users without a tombstone
    started = pc.cast(table.column("started_at"), pa.int64())
    erased = pc.fill_null(pc.less_equal(started, limit), False)
    return table.filter(pc.invert(erased)) if pc.any(erased).as_py() else table


def _day_of(table: pa.Table) -> np.ndarray:
    millis = pc.cast(table.column("started_at"), pa.int64()).to_numpy(zero_copy_only=False)
    return millis // 86_400_000


class ColdArchive:
    """A user's keystrokes in the cold store: the Parquet files of the user's bucket.

    For the export and deletion registry (app/user_data.py): `name`, `count(user_id)`, `export(user_id)` and
    `delete(user_id)`. Rows of a month on its way out (`keystrokes_archiving`, between the job's MOVE and its DROP)
    are ClickHouse rows: the registry's ClickHouse store covers them like every table with a `user_id`. The archive
    job honours `user_tombstones`: rows of a deleted user that it read before the deletion are not written back
    (it re-reads the tombstones after renaming each day's files into place and rewrites what they cover).
    """

    name = "cold_keystrokes"

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.settings = settings
        self.store = ColdStore(cold_uri(settings))
        self._client = client
        self._own_client = client is None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = clickhouse_client(self.settings.clickhouse_url)
        return self._client

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> ColdArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rows(self, user_id: int) -> pa.Table:
        """All of the user's cold rows, one per key, sorted (`ARCHIVE_SCHEMA`)."""
        bucket = user_bucket(user_id)
        parts = [self.store.read(rel, user_id) for _, _, rel in self.store.files(bucket)]
        return pa.concat_tables([p for p in parts if p is not None] or [ARCHIVE_SCHEMA.empty_table()])

    def count(self, user_id: int) -> int:
        """How many keystrokes of the user the cold store holds."""
        return self.rows(user_id).num_rows

    def export(self, user_id: int) -> Iterator[tuple[str, bytes]]:
        """The user's cold keystrokes as Parquet files, one per UTC day: (`cold_keystrokes/day=YYYY-MM-DD.parquet`,
        content). Columns as in `keystrokes` (press time = running sum of `iki_ms` over a test; the tests'
        texts are in the per-test results). Nothing for a user without cold rows."""
        rows = self.rows(user_id)
        if rows.num_rows == 0:
            return
        days = _day_of(rows)
        for day in np.unique(days):
            sink = pa.BufferOutputStream()
            pq.write_table(rows.filter(pa.array(days == day)), sink, compression="zstd")
            name = (date(1970, 1, 1) + timedelta(days=int(day))).isoformat()
            yield f"{self.name}/day={name}.parquet", sink.getvalue().to_pybytes()

    def delete(self, user_id: int) -> int:
        """Remove the user's rows from the cold store; returns how many there were. Only the files of the user's
        bucket are read, and only those holding the user's rows are rewritten (verified, renamed into place;
        a file left empty is deleted) and their manifest rows updated. A repeat finds nothing and returns 0."""
        user_id = int(user_id)
        bucket = user_bucket(user_id)
        recorded = manifest(self.client, bucket)
        removed = 0
        changed, emptied = [], []
        for day, _, rel in self.store.files(bucket):
            data = self.store.read_bytes(rel)
            if data is None:
                continue
            table = normalize(pq.read_table(pa.BufferReader(data)))
            mine = pc.equal(table.column("user_id"), pa.scalar(user_id, pa.uint64()))
            if not pc.any(mine).as_py():
                entry, digest = recorded.get((day, bucket)), hashlib.sha256(data).hexdigest()
                if entry is None or (entry.rows, entry.sha256) != (table.num_rows, digest):
                    # renamed into place by a writer that crashed before its manifest row: record it now
                    changed.append(ColdFile(day, bucket, rel, table.num_rows, len(data), digest))
                continue
            removed += int(pc.sum(mine).as_py())
            kept = table.filter(pc.invert(mine))
            if kept.num_rows:
                changed.append(self.store.write_verified(day, bucket, kept))
            else:
                self.store.delete(rel)
                emptied.append(ColdFile(day, bucket, rel, 0, 0, ""))
        record_files(self.client, changed)
        record_files(self.client, emptied, deleted=True)
        return removed


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _s3_url(uri: str) -> str:
    """An s3:// URI (pyarrow's form, with `region`/`endpoint_override`/`scheme` options) as the HTTP(S) URL
    ClickHouse's s3() table function takes."""
    from urllib.parse import parse_qs, urlparse

    parsed = urlparse(uri)
    options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    bucket, prefix = parsed.netloc, parsed.path.strip("/")
    if endpoint := options.get("endpoint_override"):
        if "://" not in endpoint:
            endpoint = f"{options.get('scheme', 'https')}://{endpoint}"
        base = f"{endpoint.rstrip('/')}/{bucket}"
    elif region := options.get("region"):
        base = f"https://{bucket}.s3.{region}.amazonaws.com"
    else:
        base = f"https://{bucket}.s3.amazonaws.com"
    return f"{base}/{prefix}" if prefix else base


def cold_table_function(settings: Settings) -> str:
    """The ClickHouse table function reading every cold file: `file(...)` for a local root, `s3(...)` for s3://.
    Its columns are the keystroke columns plus `day` (Date) and `user_bucket` from the paths (filters on them
    skip whole files). S3 credentials come from ClickHouse's usual sources (environment, instance role)."""
    uri = cold_uri(settings)
    if _is_local(uri):
        root = str(Path(uri.removeprefix("file://")).resolve())
        return f"file({_literal(f'{root}/{GLOB}')}, Parquet, {_literal(CLICKHOUSE_STRUCTURE)})"
    if uri.startswith("s3://"):
        return f"s3({_literal(f'{_s3_url(uri)}/{GLOB}')}, 'Parquet', {_literal(CLICKHOUSE_STRUCTURE)})"
    raise ValueError(f"cold queries read local and s3:// cold stores, not {uri!r}")


_COLD_TABLE = re.compile(r"(?<![\w.`\"'])cold_keystrokes(?![\w`\"'])")


def cold_query(settings: Settings, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
    """Run a ClickHouse SELECT over the cold store and return its result as Arrow. The name `cold_keystrokes` in
    `sql` stands for every cold file (`cold_table_function`), e.g.

        cold_query(settings, "SELECT user_id, count() FROM cold_keystrokes GROUP BY user_id ORDER BY user_id")
        cold_query(settings, "SELECT count() FROM cold_keystrokes WHERE day >= '2027-01-01' AND user_bucket = 3")

    It runs in chDB in this process (the ClickHouse engine; with a `chdb://` CLICKHOUSE_URL, in that same engine,
    which one process cannot open twice), so it needs no server and reads the files where they are.
    """
    query = _COLD_TABLE.sub(lambda _: cold_table_function(settings), sql)
    url = settings.clickhouse_url if settings.clickhouse_url.startswith("chdb://") else "chdb://"
    client = clickhouse_client(url)
    try:
        return client.query_arrow(query, parameters=parameters or {}, settings={"use_hive_partitioning": 1})
    finally:
        client.close()
