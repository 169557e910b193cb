"""Archive job: retention of raw keystrokes and per-test results.

    python -m pipelines.archive [--now 2027-06-01T00:00:00Z]   # daily as a RayCronJob (cluster/jobs.py)
    keyscope archive run [--now ...]                          # the same from the CLI

Each run does three things, each safe to repeat after a crash at any point:

1. Hot → cold. Every month partition of `keystrokes` whose last day is older than `hot_days` (90) is MOVEd into
   `keystrokes_archiving` (atomic: tests arriving late for that month land in `keystrokes` again and wait for a later
   run). Each of its days is read from ClickHouse (FINAL), split by user bucket, merged with the cold file already
   there (late data, or a repeat after a crash), written to a temporary name, read back and compared, and renamed
   into place (app/cold.py); then the manifest rows are written (and reconciled with the files of the month's
   days), the ClickHouse counts per day and bucket are checked against the files, and only then is the month
   dropped from `keystrokes_archiving`. Rows of users deleted meanwhile (`user_tombstones`, app/user_data.py) are
   not written, also when the deletion comes while the day's files are being written. With a ClickHouse server the
   days run as Ray tasks, each on its own connection; with `chdb://` (one process per data directory) they run in
   this process.
2. Cold retention. Cold days older than `cold_days` (730) are deleted, directory by directory, then marked
   deleted in the manifest. Hot days already past it (a job that did not run for years) are dropped without
   being written.
3. Anonymization. Per-test results (`test_results`, kept hot for the same `cold_days`, so every cold test keeps
   its text) that started before that same cut-off lose what is personal: the user id becomes a per-test
   pseudonym above every real id (2^63 + a salted hash; real ids end at 2^63 − 1), the test id a salted hash,
   `text` and `transcribed` are emptied, the start is truncated to the day, the Kafka position is zeroed. The
   metrics stay, so aggregates over tests (by day, layout, language) keep their numbers. `user_id` is in the
   table's ORDER BY, which ALTER UPDATE cannot change, so anonymized copies are inserted, counted, and only then
   are the originals deleted; the ids are deterministic (salt kept in `archive_state`), so a repeat after a crash
   between the two replaces its copies instead of adding more. The same tests' rows in the per-test detail tables
   (`test_keys`, `test_pairs`, `test_confusions`) go first, the same way, with the same pseudonyms and day, so
   an anonymized test's keys and pairs still belong to its result and to no one. Each typist's first test time is
   kept first (`user_first_tests`), so the warehouse's signup day does not move forward.

`--now` (or `now=`) moves the clock for tests. Faults (app/faults.py): the steps reach named points
(`archive_after_move`, … `anonymize_after_delete`), where a crash test arms a fault.
"""

from __future__ import annotations

import argparse
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations
from app.cold import (
    ARCHIVE_SCHEMA,
    ARCHIVING_TABLE,
    ColdFile,
    ColdStore,
    ColdStoreError,
    alter_target,
    bucket_sql,
    cold_uri,
    file_path,
    load_tombstones,
    local_table,
    merge_rows,
    normalize,
    reconcile_manifest,
    record_files,
    row_keys,
    user_buckets,
    without_deleted,
)
from app.config import Settings
from app.faults import failpoint
from app.schemas import MAX_USER_ID
from pipelines.entry import job_main, job_parser

log = logging.getLogger("keyscope.archive")

HOT_TABLE = "keystrokes"
RESULTS_TABLE = "test_results"
# Anonymized per-test results: user ids from here up (no real user id reaches it).
ANONYMOUS_USER_BASE = MAX_USER_ID + 1
# What anonymization replaces; every other column of test_results (metrics, counts, layout, language) is kept.
ANONYMIZED = {
    "user_id": "a_user",
    "test_id": "a_test",
    "started_at": "a_started_at",
    "text": "''",
    "transcribed": "''",
    "kafka_partition": "0",
    "kafka_offset": "0",
}
# The per-test detail tables: the test's pseudonyms and day, as in its result; their statistics are kept.
DETAIL_TABLES = ("test_keys", "test_pairs", "test_confusions")
DETAIL_ANONYMIZED = {"user_id": "a_user", "test_id": "a_test", "started_at": "a_started_at"}
# Deterministic per test (salt kept in archive_state): a repeat after a crash replaces its copies.
PSEUDONYMS = (
    "bitOr(sipHash64({salt:String}, user_id, test_id), {base:UInt64}) AS a_user, "
    "lower(hex(sipHash128({salt:String}, user_id, test_id))) AS a_test"
)
SALT_NAME = "anonymization_salt"
# Tests ingested this recently are left to the next run: an insert becomes visible a little after its ingested_at,
# and the copy-then-delete must see every row it deletes.
INGEST_SETTLE = timedelta(hours=1)
_MONTH = re.compile(r"^\d{6}$")

@dataclass
class ArchiveReport:
    """What one run did."""

    months_archived: list[str] = field(default_factory=list)
    files_written: int = 0
    rows_archived: int = 0  # hot rows now in cold files
    rows_expired: int = 0  # hot rows already past cold retention: dropped, not written
    rows_erased: int = 0  # hot rows of users deleted (user_tombstones) before they were written: dropped
    cold_days_deleted: int = 0
    tests_anonymized: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        months = ", ".join(self.months_archived) or "no month"
        return (
            f"archived {months}: {self.rows_archived} keystrokes in {self.files_written} files"
            + (f" ({self.rows_expired} past cold retention dropped)" if self.rows_expired else "")
            + (f" ({self.rows_erased} of deleted users dropped)" if self.rows_erased else "")
            + f"; {self.cold_days_deleted} cold days deleted; {self.tests_anonymized} test results anonymized"
            + f" in {self.seconds:.1f} s"
        )


def cutoffs(settings: Settings, now: datetime) -> tuple[date, date]:
    """(hot cut-off, cold cut-off): keystrokes of days before the first leave ClickHouse, cold data and personal
    fields of days before the second go."""
    if settings.cold_days < settings.hot_days or settings.hot_days < 1:
        raise ValueError(
            f"need 1 <= KEYSCOPE_HOT_DAYS ({settings.hot_days}) <= KEYSCOPE_COLD_DAYS ({settings.cold_days})"
        )
    now = now.astimezone(UTC)
    return (now - timedelta(days=settings.hot_days)).date(), (now - timedelta(days=settings.cold_days)).date()


def _next_month(month: str) -> date:
    year, mon = int(month[:4]), int(month[4:])
    return date(year + mon // 12, mon % 12 + 1, 1)


def _days_of(month: str) -> list[date]:
    first = date(int(month[:4]), int(month[4:]), 1)
    return [first + timedelta(days=i) for i in range((_next_month(month) - first).days)]


def _partitions(client: Client, table: str) -> list[str]:
    """The month partitions (YYYYMM) `table` has parts in, on this server or on every node of a cluster."""
    local = local_table(client, table)
    source = "system.parts" if local == table else "clusterAllReplicas('{cluster}', system.parts)"
    rows = client.query(
        f"SELECT DISTINCT partition_id FROM {source} "
        "WHERE database = currentDatabase() AND table = {t:String} AND active AND rows > 0 ORDER BY partition_id",
        parameters={"t": local},
    ).result_rows
    months = [str(r[0]) for r in rows]
    for month in months:
        if not _MONTH.match(month):
            raise RuntimeError(f"{table} has partition {month!r}, not a YYYYMM month")
    return months


def _counts(client: Client, month: str) -> dict[tuple[date, int], int]:
    """Rows per (day, bucket) of one month in `keystrokes_archiving` (FINAL: one per key)."""
    rows = client.query(
        f"SELECT toDate(started_at) AS day, {bucket_sql()} AS bucket, count() FROM {ARCHIVING_TABLE} FINAL "
        "WHERE toYYYYMM(started_at) = {m:UInt32} GROUP BY day, bucket",
        parameters={"m": int(month)},
    ).result_rows
    return {(r[0], int(r[1])): int(r[2]) for r in rows}


@dataclass(frozen=True)
class DayFile:
    """One day and bucket's file after an archive run wrote it: `cold` as written (rows 0 and no file when nothing
    is left), the hot rows read from ClickHouse for it, and how many of them are in the file (the others were rows
    of deleted users, erased)."""

    cold: ColdFile
    hot_rows: int
    hot_written: int


def archive_day(client: Client, store: ColdStore, month: str, day: date) -> list[DayFile]:
    """Write one day of the month being archived into its bucket files. A file already there (late data, or this day
    done before a crash) is merged with, not added to. Rows of users deleted meanwhile (`user_tombstones`) are left
    out, also when their deletion is recorded while the files are written: the tombstones are read again once the
    day's files are in place, and a file they cover is rewritten."""
    rows = client.query_arrow(
        f"SELECT {', '.join(ARCHIVE_SCHEMA.names)} FROM {ARCHIVING_TABLE} FINAL "
        "WHERE toYYYYMM(started_at) = {m:UInt32} AND toDate(started_at) = {d:Date} "
        "ORDER BY user_id, started_at, test_id, seq",
        parameters={"m": int(month), "d": day},
    )
    rows = normalize(rows)
    tombstones = load_tombstones(client)
    buckets = user_buckets(rows.column("user_id"))
    contents: dict[int, tuple[pa.Table, pa.Table, ColdFile]] = {}
    for bucket in (int(b) for b in np.unique(buckets)):
        hot = rows.filter(pa.array(buckets == bucket))
        merged = without_deleted(merge_rows(store.read(file_path(day, bucket)), hot), tombstones)
        contents[bucket] = (hot, merged, _write(store, day, bucket, merged))
        failpoint(None, "archive_after_file")
    if (again := load_tombstones(client)) != tombstones:  # deletions recorded while this day was written
        for bucket, (hot, merged, _) in contents.items():
            kept = without_deleted(merged, again)
            if kept.num_rows != merged.num_rows:
                contents[bucket] = (hot, kept, _write(store, day, bucket, kept))
    return [
        DayFile(cold, hot.num_rows, int(pc.sum(pc.is_in(row_keys(hot), value_set=row_keys(merged))).as_py() or 0))
        for hot, merged, cold in contents.values()
    ]


def _write(store: ColdStore, day: date, bucket: int, table: pa.Table) -> ColdFile:
    if table.num_rows:
        return store.write_verified(day, bucket, table)
    store.delete(file_path(day, bucket))  # every row was a deleted user's
    return ColdFile(day, bucket, file_path(day, bucket), 0, 0, "")


def _archive_day_task(settings: Settings, month: str, day: date) -> list[DayFile]:
    """`archive_day` as a Ray task: its own ClickHouse connection and cold filesystem."""
    client = clickhouse_client(settings.clickhouse_url, background=True)
    try:
        return archive_day(client, ColdStore(cold_uri(settings)), month, day)
    finally:
        client.close()


def _verify(
    client: Client,
    store: ColdStore,
    month: str,
    counts: dict[tuple[date, int], int],
    written: list[DayFile],
    cold_cutoff: date,
) -> None:
    """Raise unless every (day, bucket) of the month was written from all of its rows in ClickHouse (counted again
    now: equal to the counts the run started from) and the file holds what was written (its Parquet footer's row
    count; no file where nothing was left)."""
    if _counts(client, month) != counts:
        raise ColdStoreError(f"{ARCHIVING_TABLE} changed while month {month} was archived; nothing dropped")
    files = {(f.cold.day, f.cold.bucket): f for f in written}
    for (day, bucket), count in sorted(counts.items()):
        if day < cold_cutoff:
            continue  # past cold retention: dropped without a copy on purpose
        if (day, bucket) not in files:
            raise ColdStoreError(f"no cold file for {day} bucket {bucket} ({count} rows in ClickHouse)")
        f = files[(day, bucket)]
        on_disk = store.row_count(f.cold.path) if store.exists(f.cold.path) else 0
        if f.hot_rows != count or on_disk != f.cold.rows or f.cold.rows < f.hot_written:
            raise ColdStoreError(
                f"{f.cold.path}: {on_disk} rows on disk, {f.cold.rows} written ({f.hot_written} of {f.hot_rows} hot "
                f"rows); ClickHouse has {count}"
            )


def archive_hot(
    settings: Settings,
    client: Client,
    store: ColdStore,
    hot_cutoff: date,
    cold_cutoff: date,
    report: ArchiveReport,
    use_ray: bool,
) -> None:
    """Step 1: months older than the hot window into the cold store, then out of ClickHouse."""
    for month in _partitions(client, HOT_TABLE):
        if _next_month(month) <= hot_cutoff:
            client.command(
                f"ALTER TABLE {alter_target(client, HOT_TABLE)} MOVE PARTITION ID '{month}' "
                f"TO TABLE {local_table(client, ARCHIVING_TABLE)}"
            )
            log.info("month %s moved to %s", month, ARCHIVING_TABLE)
            failpoint(None, "archive_after_move")
    for month in _partitions(client, ARCHIVING_TABLE):  # this run's months and any a crashed run left
        counts = _counts(client, month)
        days = sorted({day for day, _ in counts if day >= cold_cutoff})
        if use_ray:
            import ray

            task = ray.remote(max_retries=2)(_archive_day_task)
            results = ray.get([task.remote(settings, month, day) for day in days])
        else:
            results = [archive_day(client, store, month, day) for day in days]
        written = [item for result in results for item in result]
        failpoint(None, "archive_after_files")
        record_files(client, [f.cold for f in written if f.cold.rows])
        record_files(client, [f.cold for f in written if not f.cold.rows], deleted=True)
        month_days = [d for d in _days_of(month) if d >= cold_cutoff]
        reconcile_manifest(client, store, month_days, [f.cold for f in written])
        failpoint(None, "archive_after_manifest")
        _verify(client, store, month, counts, written, cold_cutoff)
        client.command(f"ALTER TABLE {alter_target(client, ARCHIVING_TABLE)} DROP PARTITION ID '{month}'")
        failpoint(None, "archive_after_drop")
        report.months_archived.append(month)
        report.files_written += sum(1 for f in written if f.cold.rows)
        report.rows_archived += sum(f.hot_written for f in written)
        report.rows_erased += sum(f.hot_rows - f.hot_written for f in written)
        report.rows_expired += sum(n for (day, _), n in counts.items() if day < cold_cutoff)
        log.info("month %s archived: %d files", month, len(written))


def expire_cold(client: Client, store: ColdStore, cold_cutoff: date, report: ArchiveReport) -> None:
    """Step 2: delete cold days older than the cold retention, files first, then their manifest rows."""
    old = [day for day in store.days() if day < cold_cutoff]
    for day in old:
        store.delete_day(day)
    report.cold_days_deleted = len(old)
    failpoint(None, "expire_after_files")
    client.command(
        "INSERT INTO archive_manifest (day, bucket, path, rows, bytes, sha256, deleted, archived_at) "
        "SELECT day, bucket, path, 0, 0, '', 1, {t:DateTime64(6, 'UTC')} FROM archive_manifest FINAL "
        "WHERE day < {c:Date} AND deleted = 0",
        parameters={"c": cold_cutoff, "t": datetime.now(UTC)},
    )


def _salt(client: Client) -> str:
    """The anonymization salt, created on first use (random, kept in ClickHouse)."""
    query = "SELECT value FROM archive_state FINAL WHERE name = {n:String}"
    rows = client.query(query, parameters={"n": SALT_NAME}).result_rows
    if not rows:
        client.insert(
            "archive_state",
            [[SALT_NAME, secrets.token_hex(32), datetime.now(UTC)]],
            column_names=["name", "value", "updated_at"],
            settings={"distributed_foreground_insert": 1},  # on a cluster: readable right below
        )
        rows = client.query(query, parameters={"n": SALT_NAME}).result_rows
    return str(rows[0][0])


def _columns(client: Client, table: str) -> list[str]:
    return [
        str(r[0])
        for r in client.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String} "
            "ORDER BY position",
            parameters={"t": table},
        ).result_rows
    ]


def _anonymize_table(
    client: Client, table: str, where: str, parameters: dict, point: str, in_mutation: str = ""
) -> int:
    """Anonymized copies of `table`'s rows matching `where` inserted, counted against the originals, and only then
    the originals deleted (`in_mutation`: the same condition as the DELETE can state it). Returns the originals."""
    count = f"SELECT count() FROM {table} FINAL WHERE {where}"
    originals = int(client.query(count, parameters=parameters).result_rows[0][0])
    if originals == 0:
        return 0
    replaced = ANONYMIZED if table == RESULTS_TABLE else DETAIL_ANONYMIZED
    columns = _columns(client, table)
    select = ", ".join(replaced.get(name, f"`{name}`") for name in columns)
    client.command(
        f"INSERT INTO {table} ({', '.join(f'`{c}`' for c in columns)}) "
        f"SELECT {select} FROM (SELECT *, {PSEUDONYMS}, "
        "toDateTime64(toStartOfDay(started_at), 3, 'UTC') AS a_started_at "
        f"FROM {table} FINAL WHERE {where})",
        parameters=parameters,
        settings={"distributed_foreground_insert": 1},  # on a cluster: on the shards before the count below
    )
    failpoint(None, f"{point}_after_insert")
    copies = int(
        client.query(
            f"SELECT count() FROM {table} FINAL WHERE (user_id, test_id) GLOBAL IN "
            f"(SELECT a_user, a_test FROM (SELECT {PSEUDONYMS} FROM {table} FINAL WHERE {where}))",
            parameters=parameters,
        ).result_rows[0][0]
    )
    if copies != originals:
        raise ColdStoreError(f"{copies} anonymized copies for {originals} rows of {table}; originals kept")
    client.command(
        f"ALTER TABLE {alter_target(client, table)} DELETE WHERE {in_mutation or where}",
        parameters=parameters,
        # The detail tables' condition reads test_results: a subquery, which replicated tables refuse by default
        # (replicas could see different rows). Here they cannot: those results stay until the step after.
        settings={"mutations_sync": 2, "allow_nondeterministic_mutations": 1},
    )
    failpoint(None, f"{point}_after_delete")
    return originals


def anonymize_results(client: Client, cold_cutoff: date, settle: timedelta = INGEST_SETTLE) -> int:
    """Step 3: tests that started before the cut-off, anonymized: first their rows in the detail tables, then
    their results (copies in, counted, originals out; a crash leaves the results, so a rerun finds the same tests).
    Returns how many tests were anonymized."""
    parameters = {
        "salt": _salt(client),
        "max_user": MAX_USER_ID,
        "base": ANONYMOUS_USER_BASE,
        "cut": datetime.combine(cold_cutoff, datetime.min.time(), tzinfo=UTC),
    }
    # ingested_at is the server's clock: take "settled" from it too.
    parameters["settled"] = client.query(
        "SELECT now64(3) - toIntervalMillisecond({s:Int64})", parameters={"s": int(settle.total_seconds() * 1000)}
    ).result_rows[0][0]
    where = (
        "user_id <= {max_user:UInt64} AND started_at < {cut:DateTime64(3, 'UTC')} "
        "AND ingested_at < {settled:DateTime64(3, 'UTC')}"
    )
    count = f"SELECT count() FROM {RESULTS_TABLE} FINAL WHERE {where}"
    if not int(client.query(count, parameters=parameters).result_rows[0][0]):
        return 0  # the detail tables go before the results, so theirs are done too
    # A test's detail rows go with its result: the detail tables have no ingested_at, and a test's rows are all
    # written within the settle time of its result's.
    tests = f"(SELECT user_id, test_id FROM {RESULTS_TABLE} FINAL WHERE {where})"
    # The typists' first tests, before they lose their ids: the warehouse's signup day (migration 0013).
    client.command(
        f"INSERT INTO user_first_tests (user_id, first_test_at) SELECT user_id, min(started_at) "
        f"FROM {RESULTS_TABLE} FINAL WHERE {where} GROUP BY user_id",
        parameters=parameters,
        settings={"distributed_foreground_insert": 1},
    )
    for table in DETAIL_TABLES:
        _anonymize_table(
            client,
            table,
            f"(user_id, test_id) GLOBAL IN {tests}",
            parameters,
            "anonymize_details",
            in_mutation=f"(user_id, test_id) IN {tests}",
        )
    return _anonymize_table(client, RESULTS_TABLE, where, parameters, "anonymize")


def run_archive(
    settings: Settings,
    now: datetime | None = None,
    *,
    use_ray: bool | None = None,
    settle: timedelta = INGEST_SETTLE,
) -> ArchiveReport:
    """One run of the three steps (module docstring) as of `now` (default: the clock). `use_ray` (default: with a
    ClickHouse server, not with chdb://) runs the days of a month as Ray tasks. Test results ingested within
    `settle` of the server's clock wait for the next run's anonymization."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    hot_cutoff, cold_cutoff = cutoffs(settings, now)
    if use_ray is None:
        use_ray = not settings.clickhouse_url.startswith("chdb://")
    if use_ray:
        import ray

        if not ray.is_initialized():
            ray.init(address=settings.ray_address, log_to_driver=False)
    report = ArchiveReport()
    store = ColdStore(cold_uri(settings))
    client = clickhouse_client(settings.clickhouse_url, background=True)
    try:
        apply_migrations(client)
        store.sweep_staging()
        log.info("archiving keystrokes before %s to %s; cold retention from %s", hot_cutoff, store.uri, cold_cutoff)
        archive_hot(settings, client, store, hot_cutoff, cold_cutoff, report, use_ray)
        expire_cold(client, store, cold_cutoff, report)
        report.tests_anonymized = anonymize_results(client, cold_cutoff, settle)
    finally:
        client.close()
    report.seconds = time.perf_counter() - started
    log.info("archive: %s", report.line())
    return report


def parse_now(text: str) -> datetime:
    """An ISO-8601 time for --now (UTC when no zone is given)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _now_argument(text: str) -> datetime:
    try:
        return parse_now(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc


DESCRIPTION = (
    "Move keystrokes older than KEYSCOPE_HOT_DAYS to the cold store (KEYSCOPE_COLD_URI), delete cold data older "
    "than KEYSCOPE_COLD_DAYS and anonymize per-test results as old."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The job's flags, for `python -m pipelines.archive` and `keyscope archive run` alike."""
    parser.add_argument(
        "--now", type=_now_argument, metavar="ISO", help="run as of this ISO-8601 time instead of the clock (tests)"
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    """One archive run as the flags ask; prints its report line."""
    print(run_archive(settings, args.now).line())
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main(job_parser("python -m pipelines.archive", DESCRIPTION, add_arguments), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
