"""Step 1 of a pass, the plan: what this pass reads. From the offsets and write marks as stored (offsets below a
partition's low watermark moved up to it) and the topic's end offsets now, the range [begin, stop) per partition,
capped at a number of messages per partition; and, before anything is written, the write marks that say where this
pass will stop (see recover.py for what a later pass makes of them)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from app.clickhouse.store import load_offsets, load_write_marks, store_write_marks
from app.config import Settings
from app.kafka import beginning_offsets
from pipelines.ingest.retry import with_retry

log = logging.getLogger("keyscope.ingest")


@dataclass(frozen=True)
class PassPlan:
    """The ranges one pass reads, and the stored positions it starts from."""

    stored: dict[int, int]  # next offset to read per partition, as stored (moved up to the low watermarks)
    marks: dict[int, int]  # write marks as stored: the end of the furthest range a pass began writing
    begin: dict[int, int]  # per partition of the topic now
    stop: dict[int, int]

    @property
    def pending(self) -> dict[int, int]:
        """Messages to read per partition, for the partitions with any."""
        return {p: self.stop[p] - self.begin[p] for p in self.stop if self.stop[p] > self.begin[p]}

    @property
    def ranges(self) -> dict[int, tuple[int, int]]:
        """[begin, stop) of the partitions with messages to read."""
        return {p: (self.begin[p], self.stop[p]) for p in self.pending}

    @property
    def new_marks(self) -> dict[int, int]:
        """The write marks this pass stores before writing (never moved back)."""
        return {p: max(self.stop[p], self.marks.get(p, 0)) for p in self.pending}

    def committed(self) -> tuple[dict[int, int], dict[int, int]]:
        """(offsets, write marks) as stored once this pass has stored its offsets."""
        return {**self.stored, **self.stop}, {**self.marks, **self.new_marks}

    def lag(self, ends: dict[int, int]) -> int:
        """Messages beyond this pass's stop offsets, given the topic's end offsets after it."""
        return sum(max(0, end - self.stop.get(p, self.begin.get(p, 0))) for p, end in ends.items())


def past_low_watermarks(stored: dict[int, int], lows: dict[int, int], topic: str) -> dict[int, int]:
    """The stored offsets, moved up to each partition's low watermark where messages below it are gone from the
    broker (deleted by retention, or the store was reset after a trim): a pass cannot read them."""
    moved = {p: low for p, low in lows.items() if low > stored.get(p, 0)}
    for p, low in sorted(moved.items()):
        log.warning(
            "%s partition %d: the messages at offsets %d to %d are no longer on the broker; starting at %d",
            topic, p, stored.get(p, 0), low - 1, low,
        )
    return {**stored, **moved}


def load_stored(settings: Settings, client: Client) -> tuple[dict[int, int], dict[int, int]]:
    """(stored offsets moved up to the low watermarks, write marks), as in ClickHouse and on the broker now."""
    group, topic = settings.consumer_group, settings.keystroke_topic
    start = with_retry(lambda: load_offsets(client, group, topic), "loading offsets", settings)
    marks = with_retry(lambda: load_write_marks(client, group, topic), "loading write marks", settings)
    return past_low_watermarks(start, asyncio.run(beginning_offsets(settings, topic)), topic), marks


def plan_pass(
    stored: dict[int, int], marks: dict[int, int], ends: dict[int, int], max_messages_per_partition: int | None
) -> PassPlan:
    """Everything between the stored offsets and the end offsets, at most `max_messages_per_partition` of each
    partition (None: no cap)."""
    begin = {p: stored.get(p, 0) for p in ends}
    stop = {
        p: ends[p] if max_messages_per_partition is None else min(ends[p], begin[p] + max_messages_per_partition)
        for p in ends
    }
    return PassPlan(stored, marks, begin, stop)


def mark_writes(settings: Settings, client: Client, plan: PassPlan) -> None:
    """Store the write marks before the pass writes anything: a pass that stops before storing its offsets leaves
    marks beyond them, and the next one knows a write may have stopped part-way."""
    group, topic, marks = settings.consumer_group, settings.keystroke_topic, plan.new_marks
    with_retry(lambda: store_write_marks(client, group, topic, marks), "storing write marks", settings)
