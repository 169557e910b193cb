"""Ingest job: keystroke-analytics topic → decode → per-test metrics → ClickHouse, then store offsets.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m pipelines.ingest [--follow]

Each pass snapshots the topic's end offsets, reads exactly [stored offset, end) per partition with a
bounded `ray.data.read_kafka`, decodes and analyses the messages in `map_batches` (pyarrow batches),
and the driver writes what the workers return. Offsets are stored only after the data is durable,
and tests whose result row already exists are skipped, so a crash at any point loses nothing and
duplicates nothing on the next pass. Undecodable messages go to the dead-letter topic with a reason.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pyarrow as pa
import ray
from clickhouse_connect.driver.exceptions import OperationalError

from app.cache import invalidate_users
from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations
from app.clickhouse.store import load_offsets, store_offsets, write_tables
from app.codec import DecodeError, decode_test
from app.config import Settings
from app.kafka import DeadLetter, end_offsets, produce_dead_letters
from app.schemas import TypingTest
from app.test_tables import TestTables, build_tables, test_keys

log = logging.getLogger("keyscope.ingest")
T = TypeVar("T")

# What a worker returns for one input batch: one row holding each output table as an Arrow IPC stream
# (one row, so Ray can split or merge blocks without separating a batch's tables).
_PARTS = ("keystrokes", "key_stats", "pair_stats", "confusions", "results", "dead")
_PART_SCHEMA = pa.schema([*((name, pa.large_binary()) for name in _PARTS), ("duplicates", pa.int64())])
_DEAD_SCHEMA = pa.schema(
    [
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("key", pa.binary()),
        ("value", pa.binary()),
        ("reason", pa.string()),
    ]
)


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

    def add(self, other: IngestReport) -> None:
        self.passes += other.passes
        self.messages += other.messages
        self.tests_written += other.tests_written
        self.duplicates_skipped += other.duplicates_skipped
        self.dead_lettered += other.dead_lettered
        self.keystrokes_written += other.keystrokes_written
        self.seconds += other.seconds
        self.offsets.update(other.offsets)

    def line(self) -> str:
        rate = self.keystrokes_written / self.seconds if self.seconds else 0.0
        return (
            f"{self.messages} messages → {self.tests_written} tests ({self.keystrokes_written} keystrokes) stored, "
            f"{self.duplicates_skipped} duplicates skipped, {self.dead_lettered} dead-lettered "
            f"in {self.seconds:.1f} s ({rate:,.0f} keystrokes/s)"
        )


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def _analysable(tests: list[TypingTest], origin: list[int]) -> tuple[list[TypingTest], list[int], dict[int, str]]:
    """The tests that analyse without error; a test that makes the analytics fail is singled out (by bisection,
    so a healthy batch costs one call) and returned with the reason, to be dead-lettered instead of failing
    the batch and blocking its partition."""
    try:
        build_tables(tests, np.zeros(len(tests), np.int64), np.zeros(len(tests), np.int64))
        return tests, origin, {}
    except Exception as exc:  # a poison test: find it rather than fail every test beside it
        if len(tests) == 1:
            return [], [], {origin[0]: f"analysis failed: {type(exc).__name__}: {exc}"}
    middle = len(tests) // 2
    left = _analysable(tests[:middle], origin[:middle])
    right = _analysable(tests[middle:], origin[middle:])
    return left[0] + right[0], left[1] + right[1], {**left[2], **right[2]}


def analyse_messages(messages: pa.Table, max_keystrokes: int = 20_000, max_message_bytes: int = 4 << 20) -> pa.Table:
    """Decode and analyse a batch of Kafka records; returns the storage tables and dead letters as IPC parts."""
    values = messages.column("value").to_pylist()
    keys = messages.column("key").to_pylist()
    partitions = messages.column("partition").to_numpy()
    offsets = messages.column("offset").to_numpy()
    tests: list[TypingTest] = []
    origin: list[int] = []
    reasons: dict[int, str] = {}
    met: set[tuple[int, str]] = set()
    duplicates = 0
    for i, value in enumerate(values):
        try:
            if not value:
                raise DecodeError("empty message")
            if len(value) > max_message_bytes:
                raise DecodeError(f"message of {len(value)} bytes exceeds the limit of {max_message_bytes}")
            test = decode_test(value, max_keystrokes)
        except DecodeError as exc:
            reasons[i] = str(exc)
            continue
        # A re-sent test (a client retry, a producer retry) keeps its first copy: the tables of one batch
        # must never hold two copies of a test, or the materialized views would count it twice.
        if (test.user_id, test.test_id) in met:
            duplicates += 1
            continue
        met.add((test.user_id, test.test_id))
        tests.append(test)
        origin.append(i)
    try:
        tables = build_tables(tests, partitions[np.array(origin, dtype=np.int64)], offsets[origin])
    except Exception:
        tests, origin, failed = _analysable(tests, origin)
        reasons.update(failed)
        tables = build_tables(tests, partitions[np.array(origin, dtype=np.int64)], offsets[origin])
    dead_rows = sorted(reasons)
    dead = pa.table(
        {
            "partition": pa.array([int(partitions[i]) for i in dead_rows], pa.int32()),
            "offset": pa.array([int(offsets[i]) for i in dead_rows], pa.int64()),
            "key": pa.array([keys[i] for i in dead_rows], pa.binary()),
            "value": pa.array([values[i] or b"" for i in dead_rows], pa.binary()),
            "reason": pa.array([reasons[i] for i in dead_rows], pa.string()),
        },
        schema=_DEAD_SCHEMA,
    )
    parts = (*(getattr(tables, name) for name in _PARTS[:-1]), dead)
    return pa.table(
        {**{name: [_to_ipc(t)] for name, t in zip(_PARTS, parts)}, "duplicates": [duplicates]}, schema=_PART_SCHEMA
    )


def _unpack(batch: pa.Table) -> tuple[list[TestTables], list[DeadLetter], int]:
    tables: list[TestTables] = []
    dead: list[DeadLetter] = []
    for row in batch.to_pylist():
        group = {name: _from_ipc(row[name]) for name in _PARTS}
        tables.append(TestTables(*(group[name] for name in _PARTS[:-1])))
        for letter in group["dead"].to_pylist():
            dead.append(
                DeadLetter(letter["partition"], letter["offset"], letter["key"], letter["value"], letter["reason"])
            )
    return tables, dead, sum(batch.column("duplicates").to_pylist())


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


def ingest_once(
    settings: Settings,
    *,
    max_messages_per_partition: int | None = None,
    crash_after_write: bool = False,
) -> IngestReport:
    """One bounded pass over everything between the stored offsets and the topic's end offsets now."""
    started = time.perf_counter()
    report = IngestReport(passes=1)
    client = with_retry(lambda: clickhouse_client(settings.clickhouse_url), "connecting to ClickHouse", settings)
    try:
        with_retry(lambda: apply_migrations(client), "applying migrations", settings)
        start = with_retry(
            lambda: load_offsets(client, settings.consumer_group, settings.keystroke_topic), "loading offsets", settings
        )
        ends = asyncio.run(end_offsets(settings, settings.keystroke_topic))
        begin = {p: start.get(p, 0) for p in ends}
        stop = {
            p: ends[p] if max_messages_per_partition is None else min(ends[p], begin[p] + max_messages_per_partition)
            for p in ends
        }
        pending = {p: stop[p] - begin[p] for p in ends if stop[p] > begin[p]}
        if not pending:
            report.seconds = time.perf_counter() - started
            return report
        log.info(
            "reading %d messages from %d partitions of %s",
            sum(pending.values()),
            len(pending),
            settings.keystroke_topic,
        )
        dataset = ray.data.read_kafka(
            settings.keystroke_topic,
            bootstrap_servers=settings.kafka_bootstrap,
            start_offset={settings.keystroke_topic: begin},
            end_offset={settings.keystroke_topic: stop},
        ).map_batches(
            analyse_messages,
            batch_format="pyarrow",
            batch_size=2048,
            fn_kwargs={"max_keystrokes": settings.max_keystrokes, "max_message_bytes": settings.max_message_bytes},
        )
        seen: set[str] = set()
        dead_letters: list[DeadLetter] = []
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            parts, dead, duplicates = _unpack(batch)
            report.messages += duplicates
            report.duplicates_skipped += duplicates
            _failpoint(settings, "after_read")
            dead_letters.extend(dead)
            for tables in parts:
                report.messages += tables.results.num_rows
                fresh = _first_copies(tables, seen)
                written = with_retry(lambda f=fresh: write_tables(client, f), "writing to ClickHouse", settings)
                report.duplicates_skipped += tables.results.num_rows - written.results.num_rows
                invalidate_users(settings, written.results.column("user_id").to_pylist())
                report.tests_written += written.results.num_rows
                report.keystrokes_written += written.keystrokes.num_rows
        report.messages += len(dead_letters)
        asyncio.run(produce_dead_letters(settings, dead_letters))
        report.dead_lettered = len(dead_letters)
        _failpoint(settings, "after_write")
        if crash_after_write:
            raise SimulatedCrash("stopped between the ClickHouse write and the offset store")
        with_retry(
            lambda: store_offsets(client, settings.consumer_group, settings.keystroke_topic, stop),
            "storing offsets",
            settings,
        )
        report.offsets = stop
    finally:
        client.close()
    report.seconds = time.perf_counter() - started
    log.info("ingest pass: %s", report.line())
    return report


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
    total = IngestReport()
    while not stop.event.is_set():
        report = ingest_once(settings, max_messages_per_partition=cap)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.ingest",
        description="Move typing tests from Kafka into ClickHouse with their metrics. Without --follow, "
        "drain what is on the topic now and exit (for `ray job submit` and RayJob).",
    )
    parser.add_argument("--follow", action="store_true", help="keep running micro-batches until interrupted")
    parser.add_argument(
        "--max-messages",
        type=int,
        help="at most this many messages per partition in one pass (default: KEYSCOPE_INGEST_MAX_MESSAGES, "
        "0 = no limit)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings.from_env()
    if args.max_messages is not None:
        if args.max_messages < 0:
            parser.error("--max-messages must be ≥ 0")
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


if __name__ == "__main__":
    raise SystemExit(main())
