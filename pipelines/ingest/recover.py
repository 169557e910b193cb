"""Step 2 of a pass, recovery from an interrupted one: whether an earlier pass may have stopped part-way through its
writes (a write mark beyond the stored offsets), so that this pass's writes must check each table for rows of a
half-written test; and if so, the deletions that pass may have raced without deleting again.

A pass that stops between its writes and its deletion recheck (deletions.py) does not store its offsets; the next
pass finds its write marks, deletes again every user whose deletion finished after the last stored offsets, then
re-reads the range and drops those users' messages."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from app.clickhouse.store import last_offsets_stored_ms
from app.config import Settings
from app.user_data import tombstoned_since
from pipelines.ingest.deletions import erase_again
from pipelines.ingest.plan import PassPlan
from pipelines.ingest.report import IngestReport
from pipelines.ingest.retry import with_retry

# Margin for clock differences between the machines that stamp deletions and stored offsets. Kept small: a user
# deleted within it before the last stored offsets who came back meanwhile loses those new tests after a crash.
CLOCK_MARGIN_MS = 5_000


def partial_write_possible(stored: dict[int, int], marks: dict[int, int]) -> bool:
    """Whether an earlier pass may have stopped part-way through its writes, leaving tests with rows in some
    tables but no result row: a write mark beyond its partition's stored offset. Offsets stored without any
    marks come from a version that kept none, so that counts as possible too."""
    return any(mark > stored.get(p, 0) for p, mark in marks.items()) or (bool(stored) and not marks)


def recover(settings: Settings, client: Client, plan: PassPlan, report: IngestReport) -> bool:
    """Whether a partial write is possible (`partial_write_possible`); if it is, first delete again every user whose
    deletion finished after the last stored offsets (the interrupted pass may have raced it)."""
    if not partial_write_possible(plan.stored, plan.marks):
        return False
    group, topic = settings.consumer_group, settings.keystroke_topic
    since = with_retry(lambda: last_offsets_stored_ms(client, group, topic), "loading offsets", settings)
    users = with_retry(lambda: tombstoned_since(client, since - CLOCK_MARGIN_MS), "loading tombstones", settings)
    erase_again(settings, users, "an interrupted pass ran", report)
    return True
