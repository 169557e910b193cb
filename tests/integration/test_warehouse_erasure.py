"""Deleted users leave the exported warehouse (pipelines/warehouse/erasure.py), on chDB in process and a local root:
three days of four typists exported, users deleted (tombstones), then the sweep."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from app import faults
from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations
from app.config import Settings
from app.user_data import record_tombstone
from cli.main import main as cli_main
from pipelines.warehouse.datasets import DATASETS
from pipelines.warehouse.erasure import sweep_deleted_users
from pipelines.warehouse.export import export_day
from pipelines.warehouse.files import MANIFEST
from pipelines.warehouse.job import run_export
from tests.integration.test_warehouse import DAY1, DAY2, DAY3, day_dir, read_day, store_simulated

DAYS = (DAY1, DAY2, DAY3)


@pytest.fixture
def exported(tmp_path):
    """A store with tests of users 1–4 on DAY1–DAY3, exported; yields (client, warehouse root)."""
    client = clickhouse_client(f"chdb://{tmp_path / 'ch'}")
    apply_migrations(client)
    store_simulated(client)
    root = tmp_path / "warehouse"
    for day in DAYS:
        export_day(client, day, str(root), settle_s=0)
    try:
        yield client, root
    finally:
        client.close()


def snapshot(root: Path) -> dict:
    return {(d.name, day): read_day(root, d.name, day) for d in DATASETS for day in DAYS}


def users_in(table) -> set[int]:
    return set(table.column("user_id").to_pylist())


def without(table, users: set[int]):
    return table.filter(pc.invert(pc.is_in(table.column("user_id"), value_set=pa.array(sorted(users), pa.int64()))))


def assert_manifests_match_files(root: Path) -> None:
    for dataset in DATASETS:
        for day in DAYS:
            folder = day_dir(root, dataset.name, day)
            meta = json.loads((folder / MANIFEST).read_text())
            for part in meta["files"]:
                assert part["rows"] == pq.ParquetFile(folder / part["name"]).metadata.num_rows
                assert part["bytes"] == (folder / part["name"]).stat().st_size
            assert meta["rows"] == sum(part["rows"] for part in meta["files"])


def test_deleted_users_leave_every_exported_day_and_a_later_start_stays(exported):
    client, root = exported
    before = snapshot(root)
    assert all(users_in(table) == {1, 2, 3, 4} for table in before.values())
    # User 2's deletion finished on DAY2: DAY3 is a new start. User 3's finished now: every day goes.
    record_tombstone(client, 2, datetime(2026, 11, 2, 12, tzinfo=UTC))
    record_tombstone(client, 3, datetime.now(UTC))

    report = sweep_deleted_users(client, str(root))

    after = snapshot(root)
    for (dataset, day), table in after.items():
        gone = {3} | ({2} if day <= DAY2 else set())
        assert users_in(table) == {1, 2, 3, 4} - gone, (dataset, day)
        assert table.equals(without(before[(dataset, day)], gone)), (dataset, day)  # the others' rows as they were
        assert table.schema.equals(before[(dataset, day)].schema)
    assert report.users == 2
    assert report.rows == {
        name: sum(before[(name, d)].num_rows - after[(name, d)].num_rows for d in DAYS) for name in report.rows
    }
    assert report.rows["per_test"] == 2 + 3  # user 2's tests of DAY1 and DAY2, user 3's of all three days
    assert report.files == 3 * 3  # every dataset's three days (user 3 in each)
    assert_manifests_match_files(root)
    assert not [p for p in (root / "_staging").rglob("*") if p.is_file()]

    # A second sweep finds nothing; a deletion after it is found by the next.
    again = sweep_deleted_users(client, str(root))
    assert sum(again.rows.values()) == 0 and again.files == 0
    record_tombstone(client, 4, datetime.now(UTC) + timedelta(seconds=1))
    later = sweep_deleted_users(client, str(root))
    assert later.rows["per_test"] == 3
    assert all(4 not in users_in(table) for table in snapshot(root).values())
    assert_manifests_match_files(root)


def test_a_sweep_stopped_between_parts_and_manifest_is_finished_by_the_next(exported):
    client, root = exported
    record_tombstone(client, 1, datetime.now(UTC))
    with faults.armed("erasure_after_parts"), pytest.raises(faults.SimulatedCrash):
        sweep_deleted_users(client, str(root))  # stops at the first day's parts
    stale = json.loads((day_dir(root, "per_test", DAY1) / MANIFEST).read_text())
    assert stale["rows"] == 4 and read_day(root, "per_test", DAY1).num_rows == 3  # parts moved, manifest not yet

    sweep_deleted_users(client, str(root))

    assert all(1 not in users_in(table) for table in snapshot(root).values())
    assert_manifests_match_files(root)


def test_the_cli_sweeps_alone_and_each_export_sweeps_after_exporting(exported, tmp_path, monkeypatch, capsys):
    client, root = exported
    record_tombstone(client, 4, datetime.now(UTC))
    settings = Settings().with_overrides(data_dir=tmp_path / "data", clickhouse_url=f"chdb://{tmp_path / 'ch'}")
    monkeypatch.setenv("CLICKHOUSE_URL", settings.clickhouse_url)
    monkeypatch.setenv("KEYSCOPE_DATA_DIR", str(settings.data_dir))
    assert cli_main(["warehouse", "erase", "--out", str(root)]) == 0
    assert "1 deleted users looked for" in capsys.readouterr().out
    assert all(4 not in users_in(table) for table in snapshot(root).values())

    # User 2 deleted after that sweep; ClickHouse still holds the user's tests here (only the tombstone is
    # recorded), so the export of DAY3 writes them, and its sweep removes them with the other days' rows.
    record_tombstone(client, 2, datetime.now(UTC) + timedelta(seconds=1))
    run_export(settings, DAY3, str(root), days=1)
    assert all(not {2, 4} & users_in(table) for table in snapshot(root).values())
    assert_manifests_match_files(root)


def test_each_export_also_exports_again_the_days_newly_past_the_cut_off(exported, tmp_path, monkeypatch):
    """The export run's upkeep hands the archive's cold cut-off to the retention step (tested on its own in
    test_warehouse.py), with the warehouse it exported to."""
    import pipelines.warehouse.job as job
    from pipelines.archive import cutoffs

    client, root = exported
    settings = Settings().with_overrides(
        data_dir=tmp_path / "data", clickhouse_url=f"chdb://{tmp_path / 'ch'}", hot_days=1, cold_days=20
    )
    seen = []
    monkeypatch.setattr(job, "reexport_anonymized_days", lambda c, uri, cut, **kw: seen.append((uri, cut)))
    run_export(settings, DAY3, str(root), days=1)
    assert seen == [(str(root), cutoffs(settings, datetime.now(UTC))[1])]
