"""Exported days follow the two-year anonymization: a day exported while its tests were still the typists' is exported
again once the archive job has anonymized them (pipelines/archive.py, step 3).

The archive job gives every test older than `cold_days` (730) a pseudonym instead of its user, in ClickHouse; the
warehouse's Parquet was written before that and would keep the user ids for good. Each export run therefore looks at
the exported days of the last `WINDOW_DAYS` before the cut-off: a day whose `per_test` still has a typist's id (every
anonymized id is negative there) is exported again from ClickHouse, where it is anonymized by now, or is not yet if
the archive job has not run since the day crossed the cut-off: such a day is reported as pending and tried again by
the next run. Days further back are not looked at: after the archive job was down for longer than the window, export
them again by hand (`keyscope warehouse export --day D --days N`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client

from pipelines.warehouse.export import SETTLE_S, export_day
from pipelines.warehouse.files import open_root, parquet_parts

log = logging.getLogger("keyscope.warehouse")

# Days before the cut-off looked at by each run: the archive job runs daily, so normally one day is new here.
WINDOW_DAYS = 14


@dataclass
class RetentionReport:
    """What one look at the days past the cut-off did."""

    reexported: list[date] = field(default_factory=list)  # now anonymized in the warehouse
    pending: list[date] = field(default_factory=list)  # exported again, ClickHouse not anonymized yet

    def line(self) -> str:
        done = ", ".join(d.isoformat() for d in self.reexported) or "none"
        waiting = ", ".join(d.isoformat() for d in self.pending) or "none"
        return f"warehouse retention: days exported again anonymized: {done}; still awaiting the archive job: {waiting}"


def _holds_typists(fs: pafs.FileSystem, directory: str) -> bool:
    """Whether a day's per_test parts have a row of a typist (a non-negative user id)."""
    for info in parquet_parts(fs, directory):
        ids = pq.read_table(info.path, columns=["user_id"], filesystem=fs).column("user_id")
        if len(ids) and pc.max(ids).as_py() >= 0:
            return True
    return False


def reexport_anonymized_days(
    client: Client,
    uri: str,
    cold_cutoff: date,
    *,
    ingest_offsets: dict[str, Any] | None = None,
    filesystem: pafs.FileSystem | None = None,
    settle_s: float = SETTLE_S,
) -> RetentionReport:
    """Export again each exported day of the window before `cold_cutoff` whose files still hold typists' ids."""
    fs, root = open_root(uri, filesystem)
    report = RetentionReport()
    for back in range(WINDOW_DAYS, 0, -1):
        day = cold_cutoff - timedelta(days=back)
        directory = f"{root}/per_test/day={day.isoformat()}"
        if fs.get_file_info(directory).type != pafs.FileType.Directory or not _holds_typists(fs, directory):
            continue
        export_day(client, day, uri, ingest_offsets=ingest_offsets, filesystem=filesystem, settle_s=settle_s)
        (report.pending if _holds_typists(fs, directory) else report.reexported).append(day)
    if report.reexported or report.pending:
        log.info(report.line())
    return report
