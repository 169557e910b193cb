"""Step 4 of a pass, the write: each analysed batch's first copies of tests, gathered into inserts of at least
`WRITE_MIN_KEYSTROKES`, written to ClickHouse a few at a time with bounded back-pressure, each batch's tables at once
and its result rows last (app/clickhouse/store.py `pending_tests`), with retries; then the dead letters, with their
reasons, to the dead-letter topic. Each batch's tests are folded into their typists' online features
(app/features/online.py) just before its result rows go in, so a stored result means the features hold the test.
The drift check (drift.py) reads its sampled typists' features before that fold and checks the tests once stored."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis
from clickhouse_connect.driver.client import Client

from app.cache import cached_first_pages, invalidate_users
from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import pending_tests, written_test_rows
from app.config import Settings
from app.faults import failpoint
from app.features import test_deltas
from app.features.online import FeatureStore
from app.kafka import DeadLetter, produce_dead_letters
from app.result_pages import carry_first_pages
from app.tables import TestTables, test_keys
from pipelines.ingest.analyse import unpack
from pipelines.ingest.drift import DriftMonitor
from pipelines.ingest.report import IngestReport
from pipelines.ingest.retry import with_retry

# Analysed batches are written together until they hold this many keystrokes: larger inserts make fewer parts
# for ClickHouse to merge (inserting and merging 2 M keystrokes: 3.7 CPU s at 275 k a part, 3.3 at 550 k).
WRITE_MIN_KEYSTROKES = 500_000
# Batches written at once, each on its own ClickHouse connection: ClickHouse inserts one while the next is
# analysed or written, so the two cores stay busy.
WRITE_THREADS = 2
# A batch's raw keystrokes, per-test key and pair stats and confusions go in at the same time, each insert on a
# connection of its own (its result rows follow once all are in): one insert keeps about one core busy.
TABLE_INSERT_THREADS = 4


def first_copies(tables: TestTables, seen: set[str]) -> TestTables:
    """The tests in `tables` not already met in an earlier batch of this pass (a re-sent test's first copy
    wins; copies within one batch were dropped by the worker)."""
    keep = np.zeros(tables.results.num_rows, dtype=bool)
    for i, key in enumerate(test_keys(tables.results).to_pylist()):
        keep[i] = key not in seen
        seen.add(key)
    return tables.only(keep)


class BatchWriter:
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
        self._features = FeatureStore(settings, client=self._redis)
        # An update reads, folds and writes each typist: two batches of one typist must not interleave.
        self._features_lock = threading.Lock()
        self.drift = DriftMonitor(settings, self._redis) if settings.drift_sample_share > 0 else None

    def write(self, batches: Iterable[pa.Table], partial_possible: bool, report: IngestReport) -> list[DeadLetter]:
        """Write every analysed batch's first copies of tests and count them in `report` (messages, tests and
        keystrokes written, duplicates skipped, messages of deleted users dropped, oldest message); returns the
        dead letters. Returns once every write is done; the first failure is raised once none is running."""
        dead_letters = self._submit_all(batches, partial_possible, report)
        for written in self.results():
            report.users.update(written.results.column("user_id").to_pylist())
            report.tests_written += written.results.num_rows
            report.keystrokes_written += written.keystrokes.num_rows
            report.duplicates_skipped -= written.results.num_rows
        return dead_letters

    def _submit_all(self, batches: Iterable[pa.Table], partial: bool, report: IngestReport) -> list[DeadLetter]:
        """Hand each analysed batch's first copies of tests to the writer threads; returns the dead letters. Counts
        every message, and every test not handed over, as skipped (`write` subtracts the ones written)."""
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
            failpoint(self._settings, "after_read")
            dead_letters.extend(dead)
            for tables in parts:
                report.messages += tables.results.num_rows
                report.duplicates_skipped += tables.results.num_rows
                waiting.append(first_copies(tables, seen))
                if sum(t.keystrokes.num_rows for t in waiting) >= WRITE_MIN_KEYSTROKES:
                    self.submit(TestTables.concat(waiting), partial)
                    waiting = []
        if waiting:
            self.submit(TestTables.concat(waiting), partial)
        return dead_letters

    def submit(self, tables: TestTables, partial_possible: bool) -> None:
        """Queue one batch; waits while more than `2 * WRITE_THREADS` are queued or being written."""
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
        if self.drift is not None:
            self.drift.close()
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
        # The features the drift check predicts with are the typists' before this batch: read before the fold.
        drift_sample = self.drift.before_write(tables) if self.drift is not None else None

        def attempt() -> TestTables:
            nonlocal attempts
            attempts += 1
            # A failed attempt may have written some tables: a retry checks every table.
            pending, details = pending_tests(client, tables, partial_possible=partial_possible or attempts > 1)
            if pending.results.num_rows:
                self._insert_concurrently(details)
                self._fold_features(pending)
                failpoint(self._settings, "after_features")
                client.insert_arrow("test_results", pending.results)  # last: a stored result is a complete test
            return pending

        written = with_retry(attempt, "writing to ClickHouse", self._settings)
        self._invalidate(written.results)
        if self.drift is not None:
            self.drift.after_write(drift_sample, written)  # never raises: a failed check is logged and counted
        return written

    def _invalidate(self, results: pa.Table) -> None:
        """Drop the written users' cached reads, except their cached first test pages, which get the new tests
        (app/result_pages.py): a typist polling for a test just stored then reads Redis, not ClickHouse."""
        users = results.column("user_id").to_pylist()
        pages = cached_first_pages(self._redis, users)
        carried = {}
        if pages:
            paged = results.filter(pc.is_in(results.column("user_id"), pa.array(list(pages), pa.uint64())))
            carried = carry_first_pages(pages, written_test_rows(paged))
        invalidate_users(self._settings, users, self._redis, carried, self._settings.insights_ttl_s)

    def _fold_features(self, tables: TestTables) -> None:
        """Fold the tests into their typists' online features. Before the result rows: a pass that stops in
        between rewrites these tests next time and folding one again changes nothing (UserFeatures.add), whereas
        after them a stop would leave stored tests the next pass skips and the features never hold. Redis errors
        raise, as the cache invalidation's do: the pass fails and the next one redoes it."""
        deltas = test_deltas(tables.keys, tables.pairs, tables.results)
        with self._features_lock:
            self._features.update(deltas)

    def _insert_concurrently(self, rows_by_table: list[tuple[str, pa.Table]]) -> None:
        """Each table's rows on a connection of its own, at once; returns once all are in (the first failure raised
        once none is still running)."""

        def insert(table: str, rows: pa.Table) -> None:
            self._client().insert_arrow(table, rows)
            if table == "keystrokes":
                failpoint(self._settings, "mid_write")

        futures = [self._table_pool.submit(insert, table, rows) for table, rows in rows_by_table]
        wait(futures)
        for future in futures:
            future.result()


def dead_letter(settings: Settings, dead_letters: list[DeadLetter], report: IngestReport) -> None:
    """Send the messages that could not become tests to the dead-letter topic, each with its reason."""
    report.messages += len(dead_letters)
    asyncio.run(produce_dead_letters(settings, dead_letters))
    report.dead_lettered = len(dead_letters)
