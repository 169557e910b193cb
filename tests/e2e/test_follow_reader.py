"""The follow mode's long-lived Kafka readers (pipelines/ingest/readers.py) on the real broker and Ray cluster: exact
offset ranges, the same analysis as Ray Data's read_kafka, and a job that keeps its offsets between passes but
reloads them after a failed pass."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka import Consumer

import pipelines.ingest.read as ingest_read
from app import faults
from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import load_offsets
from app.codec import encode_test
from app.kafka import end_offsets as kafka_end_offsets
from app.kafka import user_key
from app.schemas import parse_submission
from devstack.simulate import simulate_tests
from pipelines.ingest import Ingestor, run_ingest
from pipelines.ingest.analyse import unpack
from pipelines.ingest.readers import ReaderPool, consumer_config, end_offsets, read_partition
from tests.e2e.test_faults import assert_stored_exactly_once, post, produce

pytestmark = pytest.mark.stack

STAMP = 1_780_000_000_000  # Kafka time of the range test's first message (ms)


def make_topic(settings, topic: str, partitions: int) -> None:
    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        finally:
            await admin.close()

    async def fill() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            for i in range(30):
                await producer.send_and_wait(topic, f"m{i}".encode(), partition=0, timestamp_ms=STAMP + i)
            for i in range(5):
                await producer.send_and_wait(topic, f"n{i}".encode(), key=b"k", partition=1, timestamp_ms=STAMP)
        finally:
            await producer.stop()

    asyncio.run(create())
    asyncio.run(fill())


def test_a_partition_is_read_exactly_between_the_offsets_given(stack, stack_settings):
    topic = "follow-reader-range"
    make_topic(stack_settings, topic, 2)
    consumer = Consumer(consumer_config(stack_settings.kafka_bootstrap))
    try:
        assert end_offsets(consumer, topic) == {0: 30, 1: 5}
        middle = read_partition(consumer, topic, 0, 5, 17)
        assert middle.column("offset").to_pylist() == list(range(5, 17))
        assert middle.column("value").to_pylist() == [f"m{i}".encode() for i in range(5, 17)]
        assert middle.column("timestamp").to_pylist() == [STAMP + i for i in range(5, 17)]
        assert set(middle.column("partition").to_pylist()) == {0}
        whole = read_partition(consumer, topic, 1, 0, 5)
        assert whole.column("key").to_pylist() == [b"k"] * 5
        assert read_partition(consumer, topic, 1, 3, 3).num_rows == 0
        # The same consumer goes back to an earlier offset: nothing of the last read carries over.
        assert read_partition(consumer, topic, 0, 0, 2).column("offset").to_pylist() == [0, 1]
    finally:
        consumer.close()


def analysed(batches: list[pa.Table]) -> tuple[list, list, list]:
    """What a list of analysed batches holds, in an order-free form: results, keystrokes and dead letters."""
    results, keystrokes, dead = [], [], []
    for batch in batches:
        parts, letters, *_ = unpack(batch)
        for tables in parts:
            results.extend(tables.results.to_pylist())
            keystrokes.extend(tables.keystrokes.to_pylist())
        dead.extend((d.partition, d.offset, d.reason) for d in letters)

    def key(row: dict) -> tuple:
        return tuple(str(v) for v in row.values())

    return sorted(results, key=key), sorted(keystrokes, key=key), sorted(dead)


def test_the_readers_analyse_a_range_exactly_as_ray_data_does(stack, ray_driver, stack_settings):
    run_ingest(stack_settings)  # start from a drained topic
    tests = [parse_submission(t) for t in simulate_tests(6, 2, seed=61, first_user_id=44_000)]
    big = max(tests, key=lambda t: len(encode_test(t)))
    messages = [(user_key(t.user_id), encode_test(t)) for t in tests]
    messages.append((user_key(44_000), b"\x00 not a typing test at all, but long enough for a header"))
    produce(stack_settings, messages)
    limited = stack_settings.with_overrides(max_message_bytes=len(encode_test(big)) - 1)  # one test is oversize
    client = clickhouse_client(stack_settings.clickhouse_url)
    try:
        begin = load_offsets(client, stack_settings.consumer_group, stack_settings.keystroke_topic)
    finally:
        client.close()
    stop = asyncio.run(kafka_end_offsets(stack_settings, stack_settings.keystroke_topic))
    begin = {p: begin.get(p, 0) for p in stop}
    pool = ReaderPool(limited, 2)
    try:
        by_readers = list(pool.batches({p: (begin[p], stop[p]) for p in stop if stop[p] > begin[p]}, {}))
    finally:
        pool.close()
    by_ray_data = list(
        ingest_read.read_and_analyse(limited, begin, stop, {}).iter_batches(batch_format="pyarrow", batch_size=None)
    )
    results, keystrokes, dead = analysed(by_readers)
    assert (results, keystrokes, dead) == analysed(by_ray_data)
    assert len(results) == len(tests) - 1
    assert len(keystrokes) == sum(t.keystroke_count for t in tests) - big.keystroke_count
    assert len(dead) == 2 and any("exceeds the limit" in reason for *_, reason in dead)
    run_ingest(stack_settings)  # leave the topic drained (both poison messages go to the dead-letter topic)


def test_a_follow_job_keeps_its_offsets_between_passes_and_reloads_them_after_a_failed_pass(
    stack, ray_driver, api_url, stack_settings
):
    run_ingest(stack_settings)
    first = simulate_tests(3, 2, seed=62, first_user_id=44_100)
    later = simulate_tests(2, 1, seed=63, first_user_id=44_200)
    with Ingestor(stack_settings, readers=2) as job:
        assert all(r.status_code == 202 for r in post(api_url, first))
        with faults.armed("after_write"), pytest.raises(faults.SimulatedCrash):
            job.run_pass()
        again = job.run_pass()  # reloads the stored offsets: re-reads the range and finds every test stored
        assert (again.tests_written, again.duplicates_skipped) == (0, len(first))
        assert all(r.status_code == 202 for r in post(api_url, later))
        report = job.run_pass()  # from the offsets it stored itself
        assert (report.messages, report.tests_written, report.duplicates_skipped) == (len(later), len(later), 0)
        assert job.run_pass().messages == 0
    assert_stored_exactly_once(stack_settings, [*first, *later])


def test_a_follow_pass_over_a_backlog_goes_through_ray_data(stack, ray_driver, api_url, stack_settings, monkeypatch):
    run_ingest(stack_settings)
    datasets = []
    real = ingest_read.read_and_analyse
    monkeypatch.setattr(ingest_read, "read_and_analyse", lambda *a, **k: datasets.append(a[1:3]) or real(*a, **k))
    backlog = simulate_tests(4, 1, seed=64, first_user_id=44_300)
    trickle = simulate_tests(1, 1, seed=65, first_user_id=44_400)
    with Ingestor(stack_settings, readers=1) as job:
        job.reader_max_messages = 3
        assert all(r.status_code == 202 for r in post(api_url, backlog))
        assert job.run_pass().tests_written == len(backlog)
        assert len(datasets) == 1  # four messages: over the readers' share
        assert all(r.status_code == 202 for r in post(api_url, trickle))
        assert job.run_pass().tests_written == 1
        assert len(datasets) == 1  # one message: the long-lived reader
    assert_stored_exactly_once(stack_settings, [*backlog, *trickle])


def test_the_passes_benchmark_times_both_ways_of_reading_over_the_tests_it_produces(stack, ray_driver, stack_settings):
    from bench.passes import print_table, run

    timings = run(stack_settings, tests_per_pass=3, repeats=1, first_user_id=44_500)
    assert len(timings.dataset_s) == len(timings.readers_s) == 1 and len(timings.idle_s) == 2
    assert all(s > 0 for s in [*timings.dataset_s, *timings.readers_s, *timings.idle_s])
    assert ingest_read.FOLLOW_READER_MAX_MESSAGES == 20_000  # restored after the Ray Data passes
    client = clickhouse_client(stack_settings.clickhouse_url)
    try:  # 2 rounds × 2 kinds × 3 new typists, each stored once
        stored = client.command("SELECT count() FROM test_results WHERE user_id BETWEEN 44500 AND 44511")
    finally:
        client.close()
    assert stored == 12
    print_table(timings)
