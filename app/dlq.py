"""The dead-letter topic: list what the ingest job could not accept, and replay it after a fix.

Replay re-produces dead letters to the keystroke topic (same key, so the same partition) from a replay
position stored in ClickHouse beside the ingest offsets; a letter is replayed once, and one that is still
bad is dead-lettered again by the next ingest pass, with its reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import load_offsets, store_offsets
from app.config import Settings
from app.kafka import StoredDeadLetter, TestProducer, read_dead_letters


def replay_group(settings: Settings) -> str:
    return f"{settings.consumer_group}-dlq-replay"


def list_dead_letters(settings: Settings, limit: int = 100) -> list[StoredDeadLetter]:
    """The oldest `limit` dead letters on the topic."""
    return asyncio.run(read_dead_letters(settings, limit))


@dataclass(frozen=True)
class ReplayReport:
    replayed: int
    remaining: int


def replay_dead_letters(settings: Settings, limit: int = 10_000) -> ReplayReport:
    """Re-produce up to `limit` dead letters not replayed before; the replay position is stored only after
    Kafka acknowledged them (a crash replays a letter twice at worst, which ingest de-duplicates)."""
    client = clickhouse_client(settings.clickhouse_url)
    try:
        group = replay_group(settings)
        start = load_offsets(client, group, settings.dlq_topic)
        letters = asyncio.run(read_dead_letters(settings, limit + 1, start))
        batch, more = letters[:limit], len(letters) > limit

        async def produce() -> None:
            producer = TestProducer(settings)
            try:
                for item in batch:
                    await producer.send_raw(item.letter.key, item.letter.value)
            finally:
                await producer.close()

        asyncio.run(produce())
        positions = dict(start)
        for item in batch:
            positions[item.dlq_partition] = max(positions.get(item.dlq_partition, 0), item.dlq_offset + 1)
        store_offsets(client, group, settings.dlq_topic, positions)
        return ReplayReport(replayed=len(batch), remaining=1 if more else 0)
    finally:
        client.close()
