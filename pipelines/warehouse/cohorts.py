"""The cohort example over the exported files: weekly retention and WPM gain by signup week, the query of
pipelines/warehouse/cohorts.sql (which also says how to run it in BigQuery / Snowflake) run on ClickHouse or an
in-process chDB over the `user_daily` Parquet (`keyscope warehouse cohorts`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
from clickhouse_connect.driver.client import Client

from app.clickhouse.client import clickhouse_client
from pipelines.warehouse.files import list_files, open_root

COHORT_SQL_PATH = Path(__file__).with_name("cohorts.sql")


def cohort_sql(user_daily: str) -> str:
    """The cohort query (pipelines/warehouse/cohorts.sql) with `{user_daily}` replaced by a table expression."""
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

