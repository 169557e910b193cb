"""The warehouse job's runs, with the settings' ClickHouse: an export run (the days asked for, then the upkeep that
keeps what is already exported in line with the stores: days newly past the two-year cut-off exported again
anonymized, users deleted since the last sweep removed from every day), and the erasure sweep on its own. It is the
one step that calls the others, so the imports between the steps point one way: files and datasets ← export ←
retention ← job, files and datasets ← erasure ← job, and job ← command.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import load_offsets
from app.config import Settings
from pipelines.archive import cutoffs
from pipelines.warehouse.erasure import ErasureReport, sweep_deleted_users
from pipelines.warehouse.export import ExportReport, export_day, yesterday
from pipelines.warehouse.files import warehouse_uri
from pipelines.warehouse.retention import reexport_anonymized_days


def run_export(
    settings: Settings, day: date | None = None, out: str | None = None, days: int = 1, *, upkeep: bool = True
) -> list[ExportReport]:
    """Export `days` days ending with `day` (default yesterday, UTC), oldest first, with the settings' ClickHouse;
    then (`upkeep`) keep what is exported in line with the stores: days newly past the two-year cut-off exported
    again anonymized (pipelines/warehouse/retention.py), users deleted since the last sweep removed from every day
    (pipelines/warehouse/erasure.py)."""
    if days < 1:
        raise ValueError("days must be ≥ 1")
    last = day or yesterday()
    uri = warehouse_uri(settings, out)
    client = clickhouse_client(settings.clickhouse_url, background=True)
    try:
        offsets = load_offsets(client, settings.consumer_group, settings.keystroke_topic)
        lineage = {
            "consumer_group": settings.consumer_group,
            "topic": settings.keystroke_topic,
            "next_offsets": {str(partition): offset for partition, offset in sorted(offsets.items())},
        }
        reports = [
            export_day(client, last - timedelta(days=back), uri, ingest_offsets=lineage)
            for back in range(days - 1, -1, -1)
        ]
        if upkeep:
            cold_cutoff = cutoffs(settings, datetime.now(UTC))[1]
            reexport_anonymized_days(client, uri, cold_cutoff, ingest_offsets=lineage)
            sweep_deleted_users(client, uri)
        return reports
    finally:
        client.close()


def run_erasure(settings: Settings, out: str | None = None) -> ErasureReport:
    """The erasure sweep alone (`keyscope warehouse erase`) over the warehouse at `out` (default as for the export)."""
    client = clickhouse_client(settings.clickhouse_url, background=True)
    try:
        return sweep_deleted_users(client, warehouse_uri(settings, out))
    finally:
        client.close()
