"""Kafka through aiokafka: topics, the typing-test producer, offsets, trimming and the dead-letter topic."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from app.config import Settings

log = logging.getLogger(__name__)


# How long an API request waits for Kafka's acknowledgement before answering 503: long enough for a leader
# election, short enough that a client retries instead of timing out.
PRODUCE_TIMEOUT_S = 8.0


class BrokerUnavailable(RuntimeError):
    """Kafka did not acknowledge a message; the caller should retry later."""


def user_key(user_id: int) -> bytes:
    """The partitioning key: all of a user's tests land on one partition, in order."""
    return str(user_id).encode()


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the keystroke and dead-letter topics if absent; returns the names created now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(settings.keystroke_topic, num_partitions=settings.topic_partitions, replication_factor=1),
            NewTopic(settings.dlq_topic, num_partitions=1, replication_factor=1),
        ]
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # created by a concurrent caller: the goal is met
        return [t.name for t in missing]
    finally:
        await admin.close()


class TestProducer:
    """Produces encoded typing tests keyed by user; `send` returns once Kafka has acknowledged."""

    __test__ = False  # a typing test, not a pytest test class

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._settings.kafka_bootstrap,
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=2,
                    request_timeout_ms=int(PRODUCE_TIMEOUT_S * 1000),
                    max_request_size=self._settings.max_message_bytes,
                )
                try:
                    await producer.start()
                except KafkaError as exc:
                    await producer.stop()
                    raise BrokerUnavailable(f"Kafka at {self._settings.kafka_bootstrap} is unavailable: {exc}") from exc
                self._producer = producer
            return self._producer

    async def send(self, user_id: int, payload: bytes) -> tuple[int, int]:
        """(partition, offset) of the acknowledged message, keyed by the user."""
        return await self.send_raw(user_key(user_id), payload)

    async def send_raw(self, key: bytes | None, payload: bytes) -> tuple[int, int]:
        """(partition, offset) of the acknowledged message with this key on the keystroke topic."""
        producer = await self._started()
        try:
            meta = await asyncio.wait_for(
                producer.send_and_wait(self._settings.keystroke_topic, payload, key=key),
                timeout=PRODUCE_TIMEOUT_S,
            )
        except (TimeoutError, KafkaError) as exc:
            raise BrokerUnavailable(f"Kafka did not acknowledge the test: {exc!r}") from exc
        return meta.partition, meta.offset

    async def ping(self) -> None:
        """Raise BrokerUnavailable unless the broker answers a metadata request listing the keystroke topic."""
        producer = await self._started()
        try:
            metadata = await producer.client.fetch_all_metadata()
        except KafkaError as exc:
            raise BrokerUnavailable(f"Kafka at {self._settings.kafka_bootstrap} did not answer: {exc!r}") from exc
        if self._settings.keystroke_topic not in metadata.topics():
            raise BrokerUnavailable(f"topic {self._settings.keystroke_topic!r} does not exist")

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


async def _topic_offsets(settings: Settings, topic: str, *, earliest: bool) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()  # first call may race the metadata fetch
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise RuntimeError(f"topic {topic!r} does not exist on {settings.kafka_bootstrap}")
        wanted = [TopicPartition(topic, p) for p in sorted(partitions)]
        offsets = await (consumer.beginning_offsets(wanted) if earliest else consumer.end_offsets(wanted))
        return {tp.partition: int(offset) for tp, offset in offsets.items()}
    finally:
        await consumer.stop()


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The next offset to be written, per partition of the topic."""
    return await _topic_offsets(settings, topic, earliest=False)


async def beginning_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The first offset still on the broker (the low watermark), per partition of the topic."""
    return await _topic_offsets(settings, topic, earliest=True)


async def delete_records_before(settings: Settings, topic: str, offsets: dict[int, int]) -> dict[int, int]:
    """Delete each partition's records below the given offset (Kafka DeleteRecords); returns the partitions' new
    low watermarks. The broker frees them at once, whatever the topic's retention."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        done = await admin.delete_records(
            {TopicPartition(topic, p): RecordsToDelete(offset) for p, offset in offsets.items()}, timeout_ms=10_000
        )
        return {tp.partition: int(low) for tp, low in done.items()}
    finally:
        await admin.close()


@dataclass(frozen=True)
class DeadLetter:
    """A message the pipeline could not accept, with where it came from and why."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str


async def produce_dead_letters(settings: Settings, letters: list[DeadLetter]) -> None:
    """Put the messages on the dead-letter topic with their origin and reason in headers."""
    if not letters:
        return
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=64 * 1024 * 1024
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                settings.dlq_topic,
                letter.value,
                key=letter.key,
                headers=[
                    ("reason", letter.reason.encode()[:1000]),
                    ("source_topic", settings.keystroke_topic.encode()),
                    ("source_partition", str(letter.partition).encode()),
                    ("source_offset", str(letter.offset).encode()),
                ],
            )
            for letter in letters
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@dataclass(frozen=True)
class StoredDeadLetter:
    """A dead letter and its own place on the dead-letter topic."""

    dlq_partition: int
    dlq_offset: int
    letter: DeadLetter


async def read_dead_letters(
    settings: Settings, limit: int = 100, start: dict[int, int] | None = None
) -> list[StoredDeadLetter]:
    """Up to `limit` dead letters, oldest first, from `start` (per partition; default the beginning)."""
    ends = await end_offsets(settings, settings.dlq_topic)
    begin = {p: (start or {}).get(p, 0) for p in ends}
    remaining = {p: end for p, end in ends.items() if end > begin[p]}
    if not remaining or limit <= 0:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    letters: list[StoredDeadLetter] = []
    try:
        parts = [TopicPartition(settings.dlq_topic, p) for p in remaining]
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, begin[tp.partition])
        while remaining and len(letters) < limit:
            batch = await consumer.getmany(timeout_ms=2000, max_records=limit)
            if not batch:
                break
            for tp, messages in batch.items():
                for message in messages:
                    if message.offset >= remaining.get(tp.partition, 0):
                        continue
                    headers = {k: v.decode(errors="replace") for k, v in message.headers}
                    letter = DeadLetter(
                        int(headers.get("source_partition", -1)),
                        int(headers.get("source_offset", -1)),
                        message.key,
                        message.value or b"",
                        headers.get("reason", ""),
                    )
                    letters.append(StoredDeadLetter(tp.partition, message.offset, letter))
                    if message.offset + 1 >= remaining.get(tp.partition, 0):
                        remaining.pop(tp.partition, None)
        letters.sort(key=lambda d: (d.dlq_partition, d.dlq_offset))
        return letters[:limit]
    finally:
        await consumer.stop()
