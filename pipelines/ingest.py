"""Ingest job: keystroke-analytics topic → decode → per-test metrics → ClickHouse, then store offsets.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m pipelines.ingest [--follow]

Each pass snapshots the topic's end offsets, reads exactly [stored offset, end) per partition with a
bounded `ray.data.read_kafka` (one read task per partition, fused with the analysis), decodes and analyses
the messages in `map_batches` (pyarrow batches), and the driver writes what the workers return, a few batches
at a time on their own ClickHouse connections. Offsets are stored only after the data is durable, and tests
whose result row already exists are skipped, so a crash at any point loses nothing and duplicates nothing on
the next pass. Before writing, a pass records where it will stop (write marks): a pass that finds a mark beyond
the stored offsets checks each table for rows of a half-written test, any other pass skips those checks.
Undecodable messages go to the dead-letter topic with a reason. Once offsets are stored, the job deletes the topic's
records below them (Kafka DeleteRecords, at most every `topic_trim_interval_s`), so the broker holds only what is
still to be ingested; stored offsets below a partition's low watermark (records gone by retention) move up to it.

Deleted users (app/user_data.py): each pass loads the tombstones once, after snapshotting the end offsets, and the
workers drop every message of a deleted user timestamped (Kafka time) at or before the end of the deletion; a
message timestamped later is a new start and is stored. A deletion can race a pass that loaded the tombstones before
it was recorded, and that pass's writes can land after the deletion's mutations: so after its writes, before storing
its offsets, a pass reloads the tombstones of the users it wrote and deletes again (ClickHouse and Redis) each user
whose deletion appeared meanwhile — everything it wrote for them predates the deletion. If a pass stops between its
writes and that check, its offsets are not stored, and the next pass (which finds its write marks) first deletes
again every user whose deletion finished after the last stored offsets, then re-reads the range and drops the
messages. One ingest job per consumer group, as always.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pyarrow as pa
import ray
import redis
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from app.argtypes import non_negative_int
from app.cache import invalidate_users
from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations
from app.clickhouse.store import load_offsets, load_write_marks, store_offsets, store_write_marks, write_tables
from app.config import Settings
from app.kafka import DeadLetter, beginning_offsets, delete_records_before, end_offsets, produce_dead_letters
from app.tables import TestTables, test_keys
from app.user_data import erase_user, load_tombstones, tombstoned_since
from pipelines.analyse import analyse_read_block, unpack
from pipelines.ingest_metrics import IngestMetrics
from pipelines.insights import refresh_in_background
from pipelines.kafka_reader import ReaderPool

log = logging.getLogger("keyscope.ingest")
T = TypeVar("T")

# Analysed batches are written together until they hold this many keystrokes: larger inserts make fewer parts
# for ClickHouse to merge (inserting and merging 2 M keystrokes: 3.7 CPU s at 275 k a part, 3.3 at 550 k).
WRITE_MIN_KEYSTROKES = 500_000
# Batches written at once, each on its own ClickHouse connection: ClickHouse inserts one while the next is
# analysed or written, so the two cores stay busy.
WRITE_THREADS = 2
# A batch's raw keystrokes, per-test key and pair stats and confusions go in at the same time, each insert on a
# connection of its own (its result rows follow once all are in): one insert keeps about one core busy.
TABLE_INSERT_THREADS = 4


class SimulatedCrash(RuntimeError):
    """Raised by the crash hooks that the fault tests use to stop a pass at a chosen point."""


@dataclass
class IngestReport:
    """What one or more passes did."""

    passes: int = 0
    messages: int = 0
    tests_written: int = 0
    duplicates_skipped: int = 0
    dead_lettered: int = 0
    keystrokes_written: int = 0
    seconds: float = 0.0
    offsets: dict[int, int] = field(default_factory=dict)
    oldest_message_ms: int | None = None  # Kafka append time of the oldest message read
    lag: int = 0  # messages on the topic beyond the stored offsets when the (last) pass ended
    dropped_deleted: int = 0  # messages of deleted users timestamped before their deletion: dropped
    erased_users: int = 0  # deleted users whose data was deleted again because their deletion raced a pass
    users: set[int] = field(default_factory=set)  # users with tests stored (their insights get refreshed)

    def add(self, other: IngestReport) -> None:
        self.passes += other.passes
        self.messages += other.messages
        self.tests_written += other.tests_written
        self.duplicates_skipped += other.duplicates_skipped
        self.dead_lettered += other.dead_lettered
        self.keystrokes_written += other.keystrokes_written
        self.dropped_deleted += other.dropped_deleted
        self.erased_users += other.erased_users
        self.seconds += other.seconds
        self.offsets.update(other.offsets)
        self.lag = other.lag
        if other.oldest_message_ms is not None:
            self.oldest_message_ms = min(self.oldest_message_ms or other.oldest_message_ms, other.oldest_message_ms)

    def line(self) -> str:
        rate = self.keystrokes_written / self.seconds if self.seconds else 0.0
        deleted = f", {self.dropped_deleted} of deleted users dropped" if self.dropped_deleted else ""
        return (
            f"{self.messages} messages → {self.tests_written} tests ({self.keystrokes_written} keystrokes) stored, "
            f"{self.duplicates_skipped} duplicates skipped, {self.dead_lettered} dead-lettered{deleted} "
            f"in {self.seconds:.1f} s ({rate:,.0f} keystrokes/s)"
        )


def _first_copies(tables: TestTables, seen: set[str]) -> TestTables:
    """The tests in `tables` not already met in an earlier batch of this pass (a re-sent test's first copy
    wins; copies within one batch were dropped by the worker)."""
    keep = np.zeros(tables.results.num_rows, dtype=bool)
    for i, key in enumerate(test_keys(tables.results).to_pylist()):
        keep[i] = key not in seen
        seen.add(key)
    return tables.only(keep)


def _failpoint(settings: Settings, point: str) -> None:
    """Die here, as a crash would, when the fault tests ask for this point (KEYSCOPE_FAULT_INJECTION)."""
    if settings.fault_injection == point:
        log.warning("fault injection: SIGKILL at %s", point)
        os.kill(os.getpid(), signal.SIGKILL)


def with_retry(action: Callable[[], T], what: str, settings: Settings) -> T:
    """The action's result, retrying with exponential back-off (0.5 s doubling to 10 s) while ClickHouse is
    unreachable, for up to `settings.write_retry_s`; nothing after it (the offset store above all) runs
    until it succeeds."""
    deadline = time.monotonic() + settings.write_retry_s
    delay = 0.5
    while True:
        try:
            return action()
        except OperationalError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%s); retrying in %.1f s", what, exc.__class__.__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


class _BatchWriter:
    """Writes batches of tests on `WRITE_THREADS` threads, each with its own ClickHouse client (kept from pass to
    pass), and drops the written users' cached reads. At most a few batches wait, so memory stays bounded."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="ingest-write")
        self._table_pool = ThreadPoolExecutor(TABLE_INSERT_THREADS, thread_name_prefix="ingest-insert")
        self._local = threading.local()
        self._clients: list[Client] = []
        self._futures: list[Future[TestTables]] = []
        # One Redis connection for the job's life: every write drops its users' cached reads.
        self._redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)

    def submit(self, tables: TestTables, partial_possible: bool) -> None:
        self._futures.append(self._pool.submit(self._write, tables, partial_possible))
        while len(running := [f for f in self._futures if not f.done()]) > 2 * WRITE_THREADS:
            wait(running, return_when=FIRST_COMPLETED)

    def results(self) -> list[TestTables]:
        """What each batch submitted since the last call completed, once every write is done; the first failure
        is raised (after every write has stopped)."""
        futures, self._futures = self._futures, []
        wait(futures)
        return [future.result() for future in futures]

    def cancel(self) -> None:
        """Drop the batches not started, wait for those being written."""
        futures, self._futures = self._futures, []
        for future in futures:
            future.cancel()
        wait(futures)

    def close(self) -> None:
        self.cancel()
        self._pool.shutdown(wait=True)
        self._table_pool.shutdown(wait=True)
        for client in self._clients:
            client.close()
        self._redis.close()

    def _client(self) -> Client:
        if not hasattr(self._local, "client"):
            url = self._settings.clickhouse_url
            self._local.client = with_retry(lambda: clickhouse_client(url), "connecting to ClickHouse", self._settings)
            self._clients.append(self._local.client)
        return self._local.client

    def _write(self, tables: TestTables, partial_possible: bool) -> TestTables:
        client = self._client()
        attempts = 0

        def attempt() -> TestTables:
            nonlocal attempts
            attempts += 1
            # A failed attempt may have written some tables: a retry checks every table.
            return write_tables(
                client,
                tables,
                partial_possible=partial_possible or attempts > 1,
                after_insert=self._inserted,
                insert_tables=self._insert_concurrently,
            )

        written = with_retry(attempt, "writing to ClickHouse", self._settings)
        invalidate_users(self._settings, written.results.column("user_id").to_pylist(), self._redis)
        return written

    def _insert_concurrently(
        self, rows_by_table: list[tuple[str, pa.Table]], after_insert: Callable[[str], None]
    ) -> None:
        def insert(table: str, rows: pa.Table) -> None:
            self._client().insert_arrow(table, rows)
            after_insert(table)

        futures = [self._table_pool.submit(insert, table, rows) for table, rows in rows_by_table]
        wait(futures)
        for future in futures:
            future.result()  # the first failure, once none is still running

    def _inserted(self, table: str) -> None:
        if table == "keystrokes":
            _failpoint(self._settings, "mid_write")


def _read_and_analyse(
    settings: Settings, begin: dict[int, int], stop: dict[int, int], tombstones: dict[int, int] | None = None
) -> ray.data.Dataset:
    """The messages in [begin, stop) per partition, decoded and analysed by Ray Data workers."""
    return ray.data.read_kafka(
        settings.keystroke_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        start_offset={settings.keystroke_topic: begin},
        end_offset={settings.keystroke_topic: stop},
        # One read task per partition. Without this Ray Data splits each task's output into many small blocks
        # (to reach its default of 200) and will not fuse the read with the analysis: 2-3× slower here.
        override_num_blocks=len(begin),
    ).map_batches(
        analyse_read_block,
        batch_format="pyarrow",
        batch_size=None,  # whole read blocks: a batch size would bundle several partitions' reads into one task
        fn_kwargs={
            "max_keystrokes": settings.max_keystrokes,
            "max_message_bytes": settings.max_message_bytes,
            "tombstones": tombstones or {},
        },
    )


def partial_write_possible(stored: dict[int, int], marks: dict[int, int]) -> bool:
    """Whether an earlier pass may have stopped part-way through its writes, leaving tests with rows in some
    tables but no result row: a write mark beyond its partition's stored offset. Offsets stored without any
    marks come from a version that kept none, so that counts as possible too."""
    return any(mark > stored.get(p, 0) for p, mark in marks.items()) or (bool(stored) and not marks)


# The stores a pass writes to: what a user whose deletion raced a pass is deleted from again.
WRITTEN_STORES = ("clickhouse", "redis")
# Margin for clock differences between the machines that stamp deletions and stored offsets. Kept small: a user
# deleted within it before the last stored offsets who came back meanwhile loses those new tests after a crash.
CLOCK_MARGIN_MS = 5_000


def _erase_again(settings: Settings, users: list[int], why: str, report: IngestReport) -> None:
    """Delete these deleted users again from what the job writes (see the module docstring)."""
    for user_id in users:
        log.warning("user %d was deleted while %s: deleting what the job wrote for them again", user_id, why)
        with_retry(lambda u=user_id: erase_user(settings, u, WRITTEN_STORES), "deleting a deleted user", settings)
    report.erased_users += len(users)
    report.users.difference_update(users)


def _last_offsets_stored_ms(client: Client, group: str, topic: str) -> int:
    """When the last finished pass stored its offsets (epoch ms; 0 if none ever did)."""
    rows = client.query(
        "SELECT toUnixTimestamp64Milli(max(updated_at)) FROM ingest_offsets "
        "WHERE consumer_group = {g:String} AND topic = {t:String}",
        parameters={"g": group, "t": topic},
    ).result_rows
    return int(rows[0][0] or 0) if rows else 0


def _past_low_watermarks(stored: dict[int, int], lows: dict[int, int], topic: str) -> dict[int, int]:
    """The stored offsets, moved up to each partition's low watermark where messages below it are gone from the
    broker (deleted by retention, or the store was reset after a trim): a pass cannot read them."""
    moved = {p: low for p, low in lows.items() if low > stored.get(p, 0)}
    for p, low in sorted(moved.items()):
        log.warning(
            "%s partition %d: the messages at offsets %d to %d are no longer on the broker; starting at %d",
            topic, p, stored.get(p, 0), low - 1, low,
        )
    return {**stored, **moved}


# In follow mode, a pass of at most this many messages is read by the job's long-lived consumers
# (pipelines/kafka_reader.py); a larger backlog (catching up after downtime) goes through Ray Data.
FOLLOW_READER_MAX_MESSAGES = 20_000


class Ingestor:
    """The ingest job from pass to pass: one ClickHouse connection and the writer threads' own, migrations applied
    once, the offsets and write marks as this job last stored them (one job per consumer group, so they need no
    reload until a pass fails), and in follow mode its long-lived Kafka readers. `run_pass` is one bounded pass."""

    def __init__(self, settings: Settings, *, readers: int = 0) -> None:
        self.settings = settings
        # Passes of at most this many messages go to the readers (benchmarks set 0 to time the Ray Data path).
        self.reader_max_messages = FOLLOW_READER_MAX_MESSAGES
        self._client = with_retry(
            lambda: clickhouse_client(settings.clickhouse_url), "connecting to ClickHouse", settings
        )
        try:
            with_retry(lambda: apply_migrations(self._client), "applying migrations", settings)
        except BaseException:
            self._client.close()
            raise
        self._writer = _BatchWriter(settings)
        self._readers = ReaderPool(settings, readers) if readers else None
        self._known: tuple[dict[int, int], dict[int, int]] | None = None  # (stored offsets, write marks)
        self._trimmed: dict[int, int] = {}  # the low watermarks this job's trims left
        self._last_trim = -float("inf")  # monotonic time of the last trim (the first pass trims at once)

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._writer.close()
        if self._readers is not None:
            self._readers.close()
        self._client.close()

    def run_pass(
        self, *, max_messages_per_partition: int | None = None, crash_after_write: bool = False
    ) -> IngestReport:
        """One bounded pass over everything between the stored offsets and the topic's end offsets now."""
        try:
            return self._pass(max_messages_per_partition, crash_after_write)
        except BaseException:
            self._known = None  # whatever happened, the next pass starts from what is stored
            self._writer.cancel()
            raise

    def _end_offsets(self) -> dict[int, int]:
        if self._readers is not None:
            return self._readers.end_offsets()
        return asyncio.run(end_offsets(self.settings, self.settings.keystroke_topic))

    def _stored(self) -> tuple[dict[int, int], dict[int, int]]:
        if self._known is not None:
            return self._known
        settings, client = self.settings, self._client
        group, topic = settings.consumer_group, settings.keystroke_topic
        start = with_retry(lambda: load_offsets(client, group, topic), "loading offsets", settings)
        marks = with_retry(lambda: load_write_marks(client, group, topic), "loading write marks", settings)
        return _past_low_watermarks(start, asyncio.run(beginning_offsets(settings, topic)), topic), marks

    def _trim(self, stored: dict[int, int]) -> None:
        """Delete the topic's records below the stored offsets (at most every `topic_trim_interval_s`): they are in
        ClickHouse, and the broker then holds only what is still to be ingested. A failed trim only waits for the
        next one: the offsets are stored, nothing depends on it."""
        settings = self.settings
        now = time.monotonic()
        if settings.topic_trim_interval_s <= 0 or now - self._last_trim < settings.topic_trim_interval_s:
            return
        self._last_trim = now
        below = {p: offset for p, offset in stored.items() if offset > self._trimmed.get(p, 0)}
        if not below:
            return
        try:
            lows = asyncio.run(delete_records_before(settings, settings.keystroke_topic, below))
        except Exception as exc:  # noqa: BLE001 - any broker error; the messages merely stay until the next trim
            log.warning("could not trim %s below the stored offsets: %r", settings.keystroke_topic, exc)
            return
        self._trimmed.update(lows)
        log.info("trimmed %s below the stored offsets %s", settings.keystroke_topic, dict(sorted(lows.items())))

    def _pass(self, max_messages_per_partition: int | None, crash_after_write: bool) -> IngestReport:
        started = time.perf_counter()
        settings, client = self.settings, self._client
        report = IngestReport(passes=1)
        group, topic = settings.consumer_group, settings.keystroke_topic
        start, marks = self._stored()
        ends = self._end_offsets()
        begin = {p: start.get(p, 0) for p in ends}
        stop = {
            p: ends[p] if max_messages_per_partition is None else min(ends[p], begin[p] + max_messages_per_partition)
            for p in ends
        }
        pending = {p: stop[p] - begin[p] for p in ends if stop[p] > begin[p]}
        if not pending:
            self._known = (start, marks)
            self._trim(start)
            report.seconds = time.perf_counter() - started
            return report
        log.debug("reading %d messages from %d partitions of %s", sum(pending.values()), len(pending), topic)
        # Loaded after the end offsets were taken: a deletion missing here finished after every message read.
        tombstones = with_retry(lambda: load_tombstones(client), "loading tombstones", settings)
        partial = partial_write_possible(start, marks)
        if partial:
            # A pass stopped before storing its offsets, maybe before deleting again a user whose deletion it
            # raced: such a deletion finished after the last stored offsets.
            since = with_retry(lambda: _last_offsets_stored_ms(client, group, topic), "loading offsets", settings)
            users = with_retry(
                lambda: tombstoned_since(client, since - CLOCK_MARGIN_MS), "loading tombstones", settings
            )
            _erase_again(settings, users, "an interrupted pass ran", report)
        new_marks = {p: max(stop[p], marks.get(p, 0)) for p in pending}
        with_retry(lambda: store_write_marks(client, group, topic, new_marks), "storing write marks", settings)
        if self._readers is not None and sum(pending.values()) <= self.reader_max_messages:
            batches = self._readers.batches({p: (begin[p], stop[p]) for p in pending}, tombstones)
        else:
            batches = _read_and_analyse(settings, begin, stop, tombstones).iter_batches(
                batch_format="pyarrow", batch_size=None
            )
        dead_letters = self._submit_batches(batches, partial, report)
        for written in self._writer.results():
            report.users.update(written.results.column("user_id").to_pylist())
            report.tests_written += written.results.num_rows
            report.keystrokes_written += written.keystrokes.num_rows
            report.duplicates_skipped -= written.results.num_rows
        if report.users:
            fresh = with_retry(lambda: load_tombstones(client, report.users), "loading tombstones", settings)
            raced = sorted(u for u, deleted_at in fresh.items() if tombstones.get(u) != deleted_at)
            _erase_again(settings, raced, "this pass ran", report)
        report.messages += len(dead_letters)
        asyncio.run(produce_dead_letters(settings, dead_letters))
        report.dead_lettered = len(dead_letters)
        _failpoint(settings, "after_write")
        if crash_after_write:
            raise SimulatedCrash("stopped between the ClickHouse write and the offset store")
        with_retry(lambda: store_offsets(client, group, topic, stop), "storing offsets", settings)
        self._known = ({**start, **stop}, {**marks, **new_marks})
        self._trim(self._known[0])
        report.offsets = stop
        now_ends = self._end_offsets()
        report.lag = sum(max(0, end - stop.get(p, begin.get(p, 0))) for p, end in now_ends.items())
        report.seconds = time.perf_counter() - started
        log.info("ingest pass: %s", report.line())
        return report

    def _submit_batches(self, batches: Iterable[pa.Table], partial: bool, report: IngestReport) -> list[DeadLetter]:
        """Hand each analysed batch's first copies of tests to the writer; returns the dead letters. Counts every
        message, and every test not handed over, as skipped (the caller subtracts the ones written)."""
        settings = self.settings
        seen: set[str] = set()
        dead_letters: list[DeadLetter] = []
        waiting: list[TestTables] = []
        for batch in batches:
            parts, dead, duplicates, dropped, oldest = unpack(batch)
            if oldest is not None:
                report.oldest_message_ms = min(report.oldest_message_ms or oldest, oldest)
            report.messages += duplicates + dropped
            report.dropped_deleted += dropped
            report.duplicates_skipped += duplicates
            _failpoint(settings, "after_read")
            dead_letters.extend(dead)
            for tables in parts:
                report.messages += tables.results.num_rows
                report.duplicates_skipped += tables.results.num_rows
                waiting.append(_first_copies(tables, seen))
                if sum(t.keystrokes.num_rows for t in waiting) >= WRITE_MIN_KEYSTROKES:
                    self._writer.submit(TestTables.concat(waiting), partial)
                    waiting = []
        if waiting:
            self._writer.submit(TestTables.concat(waiting), partial)
        return dead_letters


def ingest_once(
    settings: Settings,
    *,
    max_messages_per_partition: int | None = None,
    crash_after_write: bool = False,
) -> IngestReport:
    """One bounded pass with a fresh job (what a drain or a test runs)."""
    with Ingestor(settings) as job:
        return job.run_pass(max_messages_per_partition=max_messages_per_partition, crash_after_write=crash_after_write)


class StopRequest:
    """Set by SIGINT/SIGTERM in follow mode: the pass in flight finishes and stores its offsets, then the job
    exits. A second signal interrupts at once."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, signum: int, frame: object) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        log.info("signal %d: stopping after the current pass", signum)
        self.event.set()

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self)


def run_ingest(
    settings: Settings, *, follow: bool = False, max_passes: int | None = None, stop: StopRequest | None = None
) -> IngestReport:
    """Drain the topic, or with `follow` keep running passes (pausing `ingest_interval_s` when idle) until
    `stop` is set.

    With `ingest_max_messages` set, each pass reads at most that many messages per partition, so a large
    backlog is stored (and its offsets committed) in bounded steps.
    """
    if not ray.is_initialized():
        ray.init(address=settings.ray_address, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    cap = settings.ingest_max_messages or None
    stop = stop or StopRequest()
    metrics = IngestMetrics(settings.keystroke_topic)
    total = IngestReport()
    with Ingestor(settings, readers=settings.ingest_readers if follow else 0) as job:
        while not stop.event.is_set():
            report = job.run_pass(max_messages_per_partition=cap)
            metrics.record_pass(report.lag, report.oldest_message_ms, report.tests_written, report.dead_lettered)
            refresh_in_background(settings, sorted(report.users))
            total.add(report)
            if max_passes is not None and total.passes >= max_passes:
                break
            if report.messages == 0:
                if not follow:
                    break
                stop.event.wait(settings.ingest_interval_s)
            elif not follow and cap is None:
                break  # one uncapped pass read everything up to the end offsets
    return total


DESCRIPTION = (
    "Move typing tests from Kafka into ClickHouse with their metrics. Without --follow, drain what is on the topic "
    "now and exit (for `ray job submit` and RayJob)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The job's flags, for `python -m pipelines.ingest` and `keyscope ingest` alike."""
    parser.add_argument("--follow", action="store_true", help="keep running micro-batches until interrupted")
    parser.add_argument(
        "--max-messages",
        type=non_negative_int,
        metavar="N",
        help="at most N messages per partition in one pass (0 = no limit; default: KEYSCOPE_INGEST_MAX_MESSAGES)",
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Drain the topic (or follow it) as the flags ask; prints the run's report line."""
    if args.max_messages is not None:
        settings = settings.with_overrides(ingest_max_messages=args.max_messages)
    stop = StopRequest()
    if args.follow:
        stop.install()
    try:
        report = run_ingest(settings, follow=args.follow, stop=stop)
    except KeyboardInterrupt:
        log.info("interrupted; offsets up to the last finished pass are stored")
        return 130
    print(report.line())
    if stop.event.is_set():
        print("stopped on request after a finished pass")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.ingest", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run(Settings.from_env(), args)


if __name__ == "__main__":
    raise SystemExit(main())
