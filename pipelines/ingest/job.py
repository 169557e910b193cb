"""Ingest job: keystroke-analytics topic → decode → per-test metrics → ClickHouse, then store offsets.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m pipelines.ingest [--follow]

A pass is a fixed sequence of steps, each in the module named after it: plan (what this pass reads) → recover (from
an interrupted pass) → read and analyse → write → recheck deletions → commit offsets (and trim the topic);
`Ingestor` runs passes, `run_ingest` drains or follows. Each pass snapshots the topic's end offsets, reads exactly
[stored offset, end) per partition with a bounded `ray.data.read_kafka` (one read task per partition, fused with the
analysis), decodes and analyses the messages in `map_batches` (pyarrow batches), and the driver writes what the
workers return, a few batches at a time on their own ClickHouse connections. Offsets are stored only after the data
is durable, and tests whose result row already exists are skipped, so a crash at any point loses nothing and
duplicates nothing on the next pass. Before writing, a pass records where it will stop (write marks): a pass that
finds a mark beyond the stored offsets checks each table for rows of a half-written test, any other pass skips those
checks. Undecodable messages go to the dead-letter topic with a reason. Once offsets are stored, the job deletes the
topic's records below them (Kafka DeleteRecords, at most every `topic_trim_interval_s`), so the broker holds only
what is still to be ingested; stored offsets below a partition's low watermark (records gone by retention) move up
to it.

Deleted users (app/user_data.py; deletions.py, recover.py): each pass loads the tombstones once, after snapshotting
the end offsets, and the workers drop every message of a deleted user timestamped (Kafka time) at or before the end
of the deletion; a message timestamped later is a new start and is stored. A deletion can race a pass that loaded
the tombstones before it was recorded, and that pass's writes can land after the deletion's mutations: so after its
writes, before storing its offsets, a pass reloads the tombstones of the users it wrote and deletes again
(ClickHouse and Redis) each user whose deletion appeared meanwhile — everything it wrote for them predates the
deletion. If a pass stops between its writes and that check, its offsets are not stored, and the next pass (which
finds its write marks) first deletes again every user whose deletion finished after the last stored offsets, then
re-reads the range and drops the messages. One ingest job per consumer group, as always.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time

import ray

from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations
from app.config import Settings
from app.faults import failpoint
from app.kafka import end_offsets
from pipelines.ingest.deletions import load_pass_tombstones, recheck_deletions
from pipelines.ingest.drift import DriftSnapshot
from pipelines.ingest.metrics import DriftMetrics, IngestMetrics
from pipelines.ingest.offsets import TopicTrimmer, commit_offsets
from pipelines.ingest.plan import load_stored, mark_writes, plan_pass
from pipelines.ingest.read import FOLLOW_READER_MAX_MESSAGES, read
from pipelines.ingest.readers import ReaderPool
from pipelines.ingest.recover import recover
from pipelines.ingest.report import IngestReport
from pipelines.ingest.retry import with_retry
from pipelines.ingest.write import BatchWriter, dead_letter
from pipelines.insights import refresh_in_background

log = logging.getLogger("keyscope.ingest")


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
        self._writer = BatchWriter(settings)
        self._readers = ReaderPool(settings, readers) if readers else None
        self._known: tuple[dict[int, int], dict[int, int]] | None = None  # (stored offsets, write marks)
        self._trimmer = TopicTrimmer(settings)

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._writer.close()
        if self._readers is not None:
            self._readers.close()
        self._client.close()

    def drift(self) -> DriftSnapshot | None:
        """The drift check so far (pipelines/ingest/drift.py); None when it is off (drift_sample_share 0)."""
        return self._writer.drift.snapshot() if self._writer.drift is not None else None

    def run_pass(self, *, max_messages_per_partition: int | None = None) -> IngestReport:
        """One bounded pass over everything between the stored offsets and the topic's end offsets now."""
        try:
            return self._pass(max_messages_per_partition)
        except BaseException:
            self._known = None  # whatever happened, the next pass starts from what is stored
            self._writer.cancel()
            raise

    def _end_offsets(self) -> dict[int, int]:
        if self._readers is not None:
            return self._readers.end_offsets()
        return asyncio.run(end_offsets(self.settings, self.settings.keystroke_topic))

    def _stored(self) -> tuple[dict[int, int], dict[int, int]]:
        return self._known if self._known is not None else load_stored(self.settings, self._client)

    def _pass(self, max_messages_per_partition: int | None) -> IngestReport:
        started = time.perf_counter()
        settings, client = self.settings, self._client
        report = IngestReport(passes=1)
        plan = plan_pass(*self._stored(), self._end_offsets(), max_messages_per_partition)
        if not plan.pending:
            self._known = (plan.stored, plan.marks)
            self._trimmer.trim(plan.stored)
            report.seconds = time.perf_counter() - started
            return report
        pending, topic = plan.pending, settings.keystroke_topic
        log.debug("reading %d messages from %d partitions of %s", sum(pending.values()), len(pending), topic)
        tombstones = load_pass_tombstones(settings, client)
        partial = recover(settings, client, plan, report)
        mark_writes(settings, client, plan)  # before anything is written
        batches = read(settings, plan, tombstones, self._readers, self.reader_max_messages)
        dead_letters = self._writer.write(batches, partial, report)
        recheck_deletions(settings, client, tombstones, report)
        dead_letter(settings, dead_letters, report)
        failpoint(settings, "after_write")
        commit_offsets(settings, client, plan)  # only after everything read is written
        self._known = plan.committed()
        self._trimmer.trim(self._known[0])
        report.offsets = plan.stop
        report.lag = plan.lag(self._end_offsets())
        report.seconds = time.perf_counter() - started
        log.info("ingest pass: %s", report.line())
        return report


def ingest_once(settings: Settings, *, max_messages_per_partition: int | None = None) -> IngestReport:
    """One bounded pass with a fresh job (what a drain or a test runs)."""
    with Ingestor(settings) as job:
        return job.run_pass(max_messages_per_partition=max_messages_per_partition)


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
    drift_metrics = DriftMetrics()
    total = IngestReport()
    with Ingestor(settings, readers=settings.ingest_readers if follow else 0) as job:
        while not stop.event.is_set():
            pass_started = time.monotonic()
            report = job.run_pass(max_messages_per_partition=cap)
            metrics.record_pass(report.lag, report.oldest_message_ms, report.tests_written, report.dead_lettered)
            if (drift := job.drift()) is not None:
                drift_metrics.record(drift)
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
            elif follow and (rest := settings.ingest_min_pass_s - (time.monotonic() - pass_started)) > 0:
                stop.event.wait(rest)  # under load: fewer, larger passes
    return total
