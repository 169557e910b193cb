"""Deleted typists out of the warehouse: every exported day's Parquet rewritten without the rows of the users deleted
since the last sweep (`user_tombstones`, app/user_data.py).

    python -m pipelines.warehouse export       # each export run sweeps after exporting (pipelines/warehouse/job.py)
    keyscope warehouse erase [--out URI]       # on demand

The warehouse files are read by BigQuery / Snowflake, outside keyscope's stores, so deleting a user (`keyscope user
delete`, the API's DELETE) does not reach them, and a day is exported once. Looking for each deleted user in every
file would read the whole warehouse per deletion; the sweep batches them instead: the users whose deletion finished
since the last sweep (its start, kept in `job_watermarks` as 'warehouse_erasure', minus a margin for tombstones still
becoming visible) are looked for in the `user_id` column of every part, and only the parts holding them are
rewritten: staged under `_staging/`, moved over the old part, and then the day's manifest with the new row counts
(moved over the old one; a run stopped in between leaves counts that the next run finds wrong and rewrites). A day's
rows of a user go when the day is not after the day the deletion finished; a later day holds the user's new start (a
deleted typist may type again). The watermark moves only after every day is swept, so a crash leaves it for the next
run, which looks for the same users again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client

from app.clickhouse.store import load_job_watermark, store_job_watermark
from app.faults import failpoint
from app.user_data import load_tombstones, tombstoned_since
from pipelines.warehouse.datasets import DATASETS, ROW_GROUP_ROWS
from pipelines.warehouse.files import MANIFEST, STAGING, delete_dir, open_root, parquet_parts, write_json

log = logging.getLogger("keyscope.warehouse")

JOB = "warehouse_erasure"
# Tombstones finished this long before the last sweep started are looked for again: one recorded just before it may
# have become visible just after (on a cluster), and looking again for a user already gone finds nothing.
MARGIN = timedelta(hours=1)



@dataclass
class ErasureReport:
    """What one sweep did."""

    users: int = 0  # deleted users looked for
    rows: dict[str, int] = field(default_factory=dict)  # rows removed per dataset
    files: int = 0  # parts rewritten
    seconds: float = 0.0

    def line(self) -> str:
        removed = ", ".join(f"{name} {rows:,}" for name, rows in self.rows.items()) or "nothing"
        return (
            f"warehouse erasure: {self.users} deleted users looked for; rows removed: {removed}; "
            f"{self.files} files rewritten in {self.seconds:.1f} s"
        )


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _day_of(directory: str) -> date | None:
    name = directory.rstrip("/").rsplit("/", 1)[-1]
    try:
        return date.fromisoformat(name.removeprefix("day=")) if name.startswith("day=") else None
    except ValueError:
        return None


def _read_manifest(fs: pafs.FileSystem, path: str) -> dict | None:
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None  # a day whose export stopped part-way: its next export writes one
    with fs.open_input_stream(path) as stream:
        return json.loads(stream.read())


def erase_day(
    fs: pafs.FileSystem, root: str, dataset: str, directory: str, users: list[int]
) -> tuple[int, int]:
    """The users' rows out of one dataset's day; returns (rows removed, parts rewritten). Each part holding them is
    staged without them and moved over the old one; the manifest is rewritten after the parts (moved over the old
    one) whenever its row counts differ from the parts', so a run that stopped between the two is set right by the
    next, which finds the users gone from the parts."""
    ids = pa.array(users, pa.int64())
    staged_dir = f"{root}/{STAGING}/erasure/{dataset}/{directory.rsplit('/', 1)[-1]}"
    rows: dict[str, int] = {}  # part name → rows once the users are out
    removed: dict[str, int] = {}
    for info in parquet_parts(fs, directory):
        user_ids = pq.read_table(info.path, columns=["user_id"], filesystem=fs).column("user_id")
        mine = pc.is_in(user_ids, value_set=ids)
        found = int(pc.sum(mine).as_py() or 0)
        rows[info.base_name] = len(user_ids) - found
        if not found:
            continue
        kept = pq.read_table(info.path, filesystem=fs).filter(pc.invert(mine))
        fs.create_dir(staged_dir, recursive=True)
        pq.write_table(
            kept, f"{staged_dir}/{info.base_name}", filesystem=fs, compression="zstd", row_group_size=ROW_GROUP_ROWS
        )
        removed[info.base_name] = found
    for name in removed:
        fs.move(f"{staged_dir}/{name}", f"{directory}/{name}")
    failpoint(None, "erasure_after_parts")
    manifest = _read_manifest(fs, f"{directory}/{MANIFEST}")
    if manifest is not None and (removed or any(p["rows"] != rows.get(p["name"]) for p in manifest["files"])):
        for part in manifest["files"]:
            part["rows"] = rows.get(part["name"], part["rows"])
            part["bytes"] = fs.get_file_info(f"{directory}/{part['name']}").size
        manifest["rows"] = sum(part["rows"] for part in manifest["files"])
        manifest["erased_at"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        fs.create_dir(staged_dir, recursive=True)
        write_json(fs, f"{staged_dir}/{MANIFEST}", manifest)
        fs.move(f"{staged_dir}/{MANIFEST}", f"{directory}/{MANIFEST}")
    return sum(removed.values()), len(removed)


def sweep_deleted_users(
    client: Client, uri: str, *, filesystem: pafs.FileSystem | None = None
) -> ErasureReport:
    """Remove from the warehouse at `uri` every row of the users deleted since the last sweep (module docstring)."""
    started = time.monotonic()
    fs, root = open_root(uri, filesystem)
    delete_dir(fs, f"{root}/{STAGING}/erasure")  # what a crashed sweep left
    sweep_start = client.query("SELECT now64(3)").result_rows[0][0]
    since = load_job_watermark(client, JOB)
    since_ms = 0 if since is None else int((_utc(since) - MARGIN).timestamp() * 1000)
    deleted = load_tombstones(client, tombstoned_since(client, since_ms))
    report = ErasureReport(users=len(deleted))
    deletion_day = {user: datetime.fromtimestamp(ms / 1000, UTC).date() for user, ms in deleted.items()}
    for dataset in DATASETS:
        removed = 0
        days = pafs.FileSelector(f"{root}/{dataset.name}", allow_not_found=True)
        for info in sorted(fs.get_file_info(days), key=lambda i: i.path) if deleted else []:
            day = _day_of(info.path)
            if info.type != pafs.FileType.Directory or day is None:
                continue
            users = sorted(user for user, last in deletion_day.items() if day <= last)
            if users:
                rows, files = erase_day(fs, root, dataset.name, info.path, users)
                removed += rows
                report.files += files
        report.rows[dataset.name] = removed
    delete_dir(fs, f"{root}/{STAGING}/erasure")
    store_job_watermark(client, JOB, sweep_start)
    report.seconds = time.monotonic() - started
    log.info(report.line())
    return report
