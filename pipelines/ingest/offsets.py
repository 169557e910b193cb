"""The last step of a pass: store its offsets, only once everything it read is written (or dead-lettered), and trim
the topic below the stored offsets (Kafka DeleteRecords, at most every `topic_trim_interval_s`), so the broker holds
only what is still to be ingested."""

from __future__ import annotations

import asyncio
import logging
import time

from clickhouse_connect.driver.client import Client

from app.clickhouse.store import store_offsets
from app.config import Settings
from app.kafka import delete_records_before
from pipelines.ingest.plan import PassPlan
from pipelines.ingest.retry import with_retry

log = logging.getLogger("keyscope.ingest")


def commit_offsets(settings: Settings, client: Client, plan: PassPlan) -> None:
    """Record that everything before the plan's stop offsets is stored."""
    group, topic = settings.consumer_group, settings.keystroke_topic
    with_retry(lambda: store_offsets(client, group, topic, plan.stop), "storing offsets", settings)


class TopicTrimmer:
    """Deletes the topic's records below the stored offsets, at most every `topic_trim_interval_s` (a job's first
    pass trims at once), remembering the low watermarks its trims left."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._trimmed: dict[int, int] = {}  # the low watermarks this job's trims left
        self._last_trim = -float("inf")  # monotonic time of the last trim

    def trim(self, stored: dict[int, int]) -> None:
        """Delete the topic's records below the stored offsets, when the interval has passed: they are in
        ClickHouse. A failed trim only waits for the next one: the offsets are stored, nothing depends on it."""
        settings = self._settings
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
