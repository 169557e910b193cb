"""The follow mode's long-lived Kafka consumers: Ray actors that read each partition's messages in [begin, stop)
and analyse them where they were read, as a Ray Data read task fused with the analysis does, but without a new
Dataset per micro-batch.

Why not `read_kafka` for every micro-batch: on this stack starting a Dataset costs ≈ 0.45 s of a small pass's
≈ 0.85 s, and Ray 2.60 keeps per-dataset state that grows with every pass (the metrics agent exports Ray Data's
metrics tagged with the dataset id and never drops those series; `_StatsActor` keeps the last 1,000 datasets),
so a job that runs a pass every second grows without bound (README, "Latency and soak"). A backlog pass still
goes through Ray Data (read.py); these actors carry the steady trickle.

The consumers never join a consumer group or commit: they are assigned a partition at an offset, read up to the
end offset the pass snapshotted, and the ingest job stores offsets in ClickHouse after its writes, as always.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import ray
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from app.config import Settings
from pipelines.ingest.analyse import analyse_read_block

# The records as Ray Data's Kafka datasource gives them, restricted to what the analysis reads.
RECORD_SCHEMA = pa.schema(
    [
        ("offset", pa.int64()),
        ("key", pa.binary()),
        ("value", pa.binary()),
        ("partition", pa.int32()),
        ("timestamp", pa.int64()),  # Kafka time, epoch ms
    ]
)
CONSUME_BATCH = 1000  # messages asked of librdkafka at once
# One consume call waits at most this long for its batch: librdkafka returns once it has all it was asked for, so
# this only bounds the wait when fewer exist (the end of a partition with gaps in its offsets).
CONSUME_WAIT_S = 0.5
# How long a read waits for messages it knows exist (below the end offset it was given) before failing: a broker
# that stops answering mid-pass fails the pass (nothing is written, no offset moves) rather than hanging it.
READ_TIMEOUT_S = 60.0
METADATA_TIMEOUT_S = 10.0


def consumer_config(bootstrap: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": "keyscope-follow-reader",  # required by librdkafka; never joined (assign) nor committed
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,  # the end of a partition ends a read even across gaps in its offsets
        "fetch.wait.max.ms": 50,
        "socket.keepalive.enable": True,
    }


def end_offsets(consumer: Consumer, topic: str) -> dict[int, int]:
    """The next offset to be written, per partition of the topic (the broker's high watermarks now)."""
    metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise RuntimeError(f"topic {topic!r} does not exist ({metadata.error if metadata else 'no metadata'})")
    return {
        p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=METADATA_TIMEOUT_S, cached=False)[1])
        for p in sorted(metadata.partitions)
    }


def read_partition(consumer: Consumer, topic: str, partition: int, begin: int, stop: int) -> pa.Table:
    """The messages of one partition at offsets [begin, stop), as a table of RECORD_SCHEMA."""
    columns: dict[str, list] = {name: [] for name in RECORD_SCHEMA.names}
    if begin >= stop:
        return pa.table(columns, schema=RECORD_SCHEMA)
    consumer.assign([TopicPartition(topic, partition, begin)])
    try:
        next_offset = begin
        waited_since = time.monotonic()
        while next_offset < stop:
            messages = consumer.consume(num_messages=min(CONSUME_BATCH, stop - next_offset), timeout=CONSUME_WAIT_S)
            if messages:
                waited_since = time.monotonic()
            elif time.monotonic() - waited_since > READ_TIMEOUT_S:
                raise TimeoutError(
                    f"no message from {topic}[{partition}] within {READ_TIMEOUT_S:.0f} s at offset {next_offset} "
                    f"(reading up to {stop})"
                )
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        # The end of the partition as this fetch saw it. At or past `stop`, nothing is left below
                        # `stop` (offsets can skip, e.g. transaction markers). Below it, the fetch was older than the
                        # end offsets this pass snapshotted (seen on a partition just written): the messages exist,
                        # so keep reading; returning would store offsets past messages never read.
                        if message.offset() is None or message.offset() >= stop:
                            return pa.table(columns, schema=RECORD_SCHEMA)
                        continue
                    raise KafkaException(error)
                if message.offset() >= stop:
                    return pa.table(columns, schema=RECORD_SCHEMA)
                columns["offset"].append(message.offset())
                columns["key"].append(message.key())
                columns["value"].append(message.value())
                columns["partition"].append(partition)
                columns["timestamp"].append(message.timestamp()[1])
                next_offset = message.offset() + 1
        return pa.table(columns, schema=RECORD_SCHEMA)
    finally:
        consumer.unassign()


class PartitionReader:
    """One long-lived consumer: reads the ranges it is given and returns them analysed (analyse.py)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer = Consumer(consumer_config(settings.kafka_bootstrap))

    # A call per pass, every pass: no task events (GCS keeps up to 100,000 of them and would grow for hours).
    @ray.method(enable_task_events=False)
    def end_offsets(self) -> dict[int, int]:
        return end_offsets(self._consumer, self._settings.keystroke_topic)

    @ray.method(enable_task_events=False)
    def read(self, ranges: Mapping[int, tuple[int, int]], tombstones: Mapping[int, int]) -> list[pa.Table]:
        """The analysed batches of every partition's messages in [begin, stop)."""
        analysed: list[pa.Table] = []
        for partition, (begin, stop) in sorted(ranges.items()):
            messages = read_partition(self._consumer, self._settings.keystroke_topic, partition, begin, stop)
            analysed.extend(
                analyse_read_block(
                    messages, self._settings.max_keystrokes, self._settings.max_message_bytes, tombstones
                )
            )
        return analysed

    def close(self) -> None:
        self._consumer.close()


# A quarter CPU each: the readers hold their reservation for the job's life, and a trickle needs little. Spread over
# the cluster's nodes, so the passes read on more than one. A reader lost with its node comes back on another
# (max_restarts) and the calls it had in flight run again there (max_task_retries): a read of a fixed offset range is
# idempotent, so the pass waits for the restart instead of failing (tests/e2e/test_scale_out.py).
RemotePartitionReader = ray.remote(num_cpus=0.25, max_restarts=-1, max_task_retries=-1, scheduling_strategy="SPREAD")(
    PartitionReader
)


class ReaderPool:
    """The job's readers: each pass's partitions are spread over them and read in parallel."""

    def __init__(self, settings: Settings, size: int) -> None:
        if size < 1:
            raise ValueError(f"a reader pool needs at least one reader, not {size}")
        self._readers = [RemotePartitionReader.remote(settings) for _ in range(size)]

    def end_offsets(self) -> dict[int, int]:
        return ray.get(self._readers[0].end_offsets.remote())

    def batches(self, ranges: Mapping[int, tuple[int, int]], tombstones: Mapping[int, int]) -> Iterator[pa.Table]:
        """The analysed batches of every partition's messages in [begin, stop), each reader's as soon as it is done."""
        shares: list[dict[int, tuple[int, int]]] = [{} for _ in self._readers]
        for i, partition in enumerate(sorted(ranges)):
            shares[i % len(shares)][partition] = ranges[partition]
        tombstones_ref = ray.put(dict(tombstones))  # one copy in the object store, however many readers
        pending = [
            reader.read.remote(share, tombstones_ref)
            for reader, share in zip(self._readers, shares, strict=True)
            if share
        ]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield from ray.get(done[0])

    def close(self) -> None:
        for reader in self._readers:
            ray.kill(reader)
