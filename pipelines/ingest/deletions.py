"""Deleted users during a pass (app/user_data.py): the tombstones a pass drops messages by, and after its writes the
recheck that deletes again each user whose deletion raced the pass.

A pass loads the tombstones once, after snapshotting the end offsets, and the workers drop every message of a deleted
user timestamped (Kafka time) at or before the end of the deletion. A deletion recorded after that load can finish
before the pass's writes land: so after writing, before storing its offsets, the pass reloads the tombstones of the
users it wrote and deletes again (ClickHouse, the online features, Redis) each user whose deletion appeared
meanwhile — everything it wrote for them predates the deletion."""

from __future__ import annotations

import logging

from clickhouse_connect.driver.client import Client

from app.config import Settings
from app.user_data import erase_user, load_tombstones
from pipelines.ingest.report import IngestReport
from pipelines.ingest.retry import with_retry

log = logging.getLogger("keyscope.ingest")

# The stores a pass writes to: what a user whose deletion raced a pass is deleted from again.
WRITTEN_STORES = ("clickhouse", "features", "redis")


def load_pass_tombstones(settings: Settings, client: Client) -> dict[int, int]:
    """Every deleted user → the end of their deletion (epoch ms). Loaded after the end offsets were taken: a deletion
    missing here finished after every message the pass reads."""
    return with_retry(lambda: load_tombstones(client), "loading tombstones", settings)


def erase_again(settings: Settings, users: list[int], why: str, report: IngestReport) -> None:
    """Delete these deleted users again from what the job writes."""
    for user_id in users:
        log.warning("user %d was deleted while %s: deleting what the job wrote for them again", user_id, why)
        with_retry(lambda u=user_id: erase_user(settings, u, WRITTEN_STORES), "deleting a deleted user", settings)
    report.erased_users += len(users)
    report.users.difference_update(users)


def recheck_deletions(settings: Settings, client: Client, tombstones: dict[int, int], report: IngestReport) -> None:
    """After the writes: delete again each user the pass wrote whose deletion is not the one in `tombstones` (the
    pass's own load), and take them out of `report.users`."""
    if not report.users:
        return
    fresh = with_retry(lambda: load_tombstones(client, report.users), "loading tombstones", settings)
    raced = sorted(u for u, deleted_at in fresh.items() if tombstones.get(u) != deleted_at)
    erase_again(settings, raced, "this pass ran", report)
