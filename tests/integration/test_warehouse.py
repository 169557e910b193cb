"""The warehouse export (pipelines/warehouse/) and its cohort query, on chDB in process (`chdb://` in a tmp dir).

Simulated tests are stored as the ingest job stores them (build_tables + write_tables), exported day by day to
Parquet, and the files are checked against ClickHouse; the cohort query runs over exported files of a hand-made
history whose retention and WPM gains are worked out below.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations
from app.clickhouse.store import write_tables
from app.schemas import parse_submission
from app.tables import build_tables
from cli.main import main as cli_main
from devstack.simulate import simulate_tests
from pipelines.archive import anonymize_results
from pipelines.warehouse.__main__ import main as warehouse_main
from pipelines.warehouse.cohorts import cohort_report
from pipelines.warehouse.datasets import DATASETS, PER_TEST_SCHEMA, USER_DAILY_SCHEMA, USER_KEY_DAILY_SCHEMA
from pipelines.warehouse.export import export_day
from pipelines.warehouse.files import MANIFEST
from pipelines.warehouse.retention import reexport_anonymized_days
from tests.chdb_stores import chdb_databases

REPO = Path(__file__).resolve().parents[2]
DAY1, DAY2, DAY3 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("warehouse-chdb")


@pytest.fixture(scope="module")
def new_store(chdb_dir):
    """Opens a client on a new database of the module's chDB, with keyscope's migrations applied."""
    yield from chdb_databases(chdb_dir)


def store_simulated(client, n_users: int = 4, n_tests: int = 3, seed: int = 11, first_user_id: int = 1) -> None:
    """Simulated tests, test i of every user on day DAY1 + i."""
    tests = [parse_submission(s) for s in simulate_tests(n_users, n_tests, seed=seed, first_user_id=first_user_id)]
    write_tables(client, build_tables(tests, np.zeros(len(tests), np.int64), np.arange(len(tests), dtype=np.int64)))


@pytest.fixture(scope="module")
def simulated(new_store):
    client = new_store("wh_simulated")
    store_simulated(client)
    return client


def day_dir(root: Path, dataset: str, day: date) -> Path:
    return root / dataset / f"day={day.isoformat()}"


def read_day(root: Path, dataset: str, day: date) -> pa.Table:
    return pq.read_table(day_dir(root, dataset, day) / "part-0.parquet")


def manifest(root: Path, dataset: str, day: date) -> dict:
    return json.loads((day_dir(root, dataset, day) / MANIFEST).read_text())


def clickhouse_rows(client, sql: str, day: date) -> list[dict]:
    result = client.query(sql, parameters={"day": day})
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


def test_two_days_export_to_hive_partitions_that_match_clickhouse(simulated, tmp_path):
    root = tmp_path / "warehouse"
    reports = [export_day(simulated, day, str(root), settle_s=0) for day in (DAY1, DAY2)]
    assert [r.rows["per_test"] for r in reports] == [4, 4]

    for dataset in DATASETS:
        for day in (DAY1, DAY2):
            assert sorted(p.name for p in day_dir(root, dataset.name, day).iterdir()) == [MANIFEST, "part-0.parquet"]
            table = read_day(root, dataset.name, day)
            assert table.schema.equals(dataset.schema), dataset.name  # names, order, types, nullability
            assert "day" not in table.column_names  # the partition key lives in the path only
            meta = manifest(root, dataset.name, day)
            assert meta["rows"] == table.num_rows and meta["day"] == day.isoformat()
            assert [f["name"] for f in meta["files"]] == ["part-0.parquet"]
            assert [c["name"] for c in meta["columns"]] == dataset.schema.names
            assert meta["source"]["watermark"]["ingested_at_max"] == reports[0 if day == DAY1 else 1].watermark
            assert pq.ParquetFile(day_dir(root, dataset.name, day) / "part-0.parquet").metadata.row_group(
                0
            ).column(0).compression == "ZSTD"
    assert not [p for p in (root / "_staging").rglob("*") if p.is_file()], "staging files left behind"
    assert not (root / "per_test" / f"day={DAY3.isoformat()}").exists()

    # per_test: every test of the day, with ClickHouse's values.
    for day in (DAY1, DAY2):
        expected = clickhouse_rows(
            simulated,
            "SELECT user_id, test_id, started_at, keystroke_count, duration_ms, wpm, accuracy, health_score, "
            "chars_correct FROM test_results FINAL WHERE toDate(started_at) = {day:Date} ORDER BY user_id",
            day,
        )
        got = read_day(root, "per_test", day).to_pylist()
        assert len(got) == len(expected) == 4
        for row, want in zip(got, expected):
            for name, value in want.items():
                if name == "started_at":
                    assert row[name].replace(tzinfo=None) == value.replace(tzinfo=None)
                else:
                    assert row[name] == value, name
        assert len({(r["user_id"], r["test_id"]) for r in got}) == len(got)

    # user_daily: the day's tests per user, aggregated (checked against the per_test rows just read).
    for day in (DAY1, DAY2):
        tests = read_day(root, "per_test", day).to_pylist()
        for row in read_day(root, "user_daily", day).to_pylist():
            mine = [t for t in tests if t["user_id"] == row["user_id"]]
            wpms = [t["wpm"] for t in mine if t["wpm"] is not None]
            assert row["tests"] == len(mine) and row["wpm_tests"] == len(wpms)
            assert row["mean_wpm"] == pytest.approx(np.mean(wpms))
            assert row["median_wpm"] == pytest.approx(np.median(wpms))
            assert row["best_wpm"] == max(wpms)
            assert row["mean_accuracy"] == pytest.approx(np.mean([t["accuracy"] for t in mine]))
            assert row["keystrokes"] == sum(t["keystroke_count"] for t in mine)
            assert row["time_typed_ms"] == sum(t["duration_ms"] for t in mine)
            assert row["first_test_at"] == min(t["started_at"] for t in mine)
            assert row["first_test_day"] == DAY1  # every simulated user started on DAY1

    # user_key_daily: the key aggregates, against the per-test key rows they are built from.
    for day in (DAY1, DAY2):
        expected = clickhouse_rows(
            simulated,
            "SELECT user_id, key, sum(presses) AS presses, sum(errors) AS errors, "
            "sum(timed_presses) AS timed_presses, sum(time_to_type_sum_ms) AS time_to_type_sum_ms, "
            "sum(holds) AS holds, sum(hold_sum_ms) AS hold_sum_ms, "
            "quantilesTimingArray(0.5, 0.95)(time_to_type_ms) AS q "
            "FROM (SELECT * FROM test_keys FINAL ARRAY JOIN key, presses, errors, timed_presses, time_to_type_sum_ms, "
            "holds, hold_sum_ms, time_to_type_ms WHERE toDate(started_at) = {day:Date}) GROUP BY user_id, key "
            "ORDER BY user_id, key",
            day,
        )
        got = read_day(root, "user_key_daily", day).to_pylist()
        assert [(r["user_id"], r["key"]) for r in got] == [(r["user_id"], r["key"]) for r in expected]
        for row, want in zip(got, expected):
            for name in ("presses", "errors", "timed_presses", "time_to_type_sum_ms", "holds", "hold_sum_ms"):
                assert row[name] == want[name], name
            if want["timed_presses"]:
                assert row["mean_time_to_type_ms"] == pytest.approx(want["time_to_type_sum_ms"] / want["timed_presses"])
                assert [row["median_time_to_type_ms"], row["p95_time_to_type_ms"]] == pytest.approx(want["q"])
            else:
                assert row["median_time_to_type_ms"] is None and row["mean_time_to_type_ms"] is None

    # Read as one hive-partitioned table, the way an external table sees it.
    both = pads.dataset(root / "per_test", format="parquet", partitioning="hive").to_table()
    days = sorted(str(d) for d in set(both.column("day").to_pylist()))
    assert both.num_rows == 8 and days == [DAY1.isoformat(), DAY2.isoformat()]


def test_reexporting_a_day_replaces_its_files(new_store, tmp_path):
    client = new_store("wh_reexport")
    store_simulated(client, n_users=5, n_tests=2, seed=3)
    root = tmp_path / "warehouse"
    first = export_day(client, DAY1, str(root), settle_s=0)
    part = day_dir(root, "per_test", DAY1) / "part-0.parquet"
    original, original_bytes = pq.read_table(part), part.read_bytes()

    again = export_day(client, DAY1, str(root), settle_s=0)
    assert again.rows == first.rows
    assert part.read_bytes() == original_bytes  # the same data gives the same file
    for dataset in DATASETS:
        assert sorted(p.name for p in day_dir(root, dataset.name, DAY1).iterdir()) == [MANIFEST, "part-0.parquet"]

    # A run that split the day into one file per row, then a normal run: the extra parts of the first are gone.
    split = export_day(client, DAY1, str(root), settle_s=0, max_file_rows=1, row_group_rows=1)
    assert len(split.files["per_test"]) == 5
    assert manifest(root, "per_test", DAY1)["rows"] == 5
    pieces = pads.dataset(day_dir(root, "per_test", DAY1), format="parquet").to_table()
    assert pieces.sort_by([("user_id", "ascending")]).equals(original)
    export_day(client, DAY1, str(root), settle_s=0)
    assert sorted(p.name for p in day_dir(root, "per_test", DAY1).iterdir()) == [MANIFEST, "part-0.parquet"]
    assert pq.read_table(part).equals(original)

    # A test that arrives late for DAY1 is in the day's next export, once, beside the others (no duplicates).
    late = simulate_tests(1, 1, seed=99, first_user_id=77)
    tests = [parse_submission(s) for s in late]
    write_tables(client, build_tables(tests, np.zeros(1, np.int64), np.zeros(1, np.int64)))
    export_day(client, DAY1, str(root), settle_s=0)
    table = pq.read_table(part)
    assert table.num_rows == 6 and 77 in table.column("user_id").to_pylist()
    assert len(set(zip(table.column("user_id").to_pylist(), table.column("test_id").to_pylist()))) == 6
    assert manifest(root, "user_daily", DAY1)["rows"] == 6

    assert 77 in read_day(root, "user_key_daily", DAY1).column("user_id").to_pylist()

    # The watermark: rows ingested within settle_s of the export are left to the next run, in every dataset.
    export_day(client, DAY1, str(root), settle_s=3600)
    assert pq.read_table(part).num_rows == 0
    assert manifest(root, "user_daily", DAY1)["rows"] == manifest(root, "user_key_daily", DAY1)["rows"] == 0
    assert read_day(root, "per_test", DAY1).schema.equals(PER_TEST_SCHEMA)


def test_a_day_past_the_two_year_anonymization_exports_its_tests_under_no_typist(new_store, tmp_path):
    client = new_store("wh_anonymized")
    store_simulated(client, n_users=4, n_tests=2, seed=7)
    root = tmp_path / "warehouse"
    export_day(client, DAY1, str(root), settle_s=0)
    before = read_day(root, "per_test", DAY1)
    # The archive job's step 3 with its cut-off after DAY1: DAY1's tests lose their users, DAY2's keep them.
    assert anonymize_results(client, DAY2, settle=timedelta(0)) == 4

    report = export_day(client, DAY1, str(root), settle_s=0)  # a re-export of the day (a UInt64 id failed the cast)
    per_test = read_day(root, "per_test", DAY1)
    ids = per_test.column("user_id").to_pylist()
    assert len(ids) == len(set(ids)) == 4 and all(i < 0 for i in ids)  # one pseudonym per test, none a typist's
    for metric in ("wpm", "accuracy", "keystroke_count", "chars_incorrect"):
        assert sorted(per_test.column(metric).to_pylist()) == sorted(before.column(metric).to_pylist()), metric
    assert report.rows["user_daily"] == report.rows["user_key_daily"] == 0  # no typist to aggregate for
    export_day(client, DAY2, str(root), settle_s=0)
    assert sorted(read_day(root, "user_daily", DAY2).column("user_id").to_pylist()) == [1, 2, 3, 4]
    # The signup day stays DAY1, though DAY1's tests are no longer the typists'.
    assert read_day(root, "user_daily", DAY2).column("first_test_day").to_pylist() == [DAY1] * 4


def test_days_newly_past_the_cut_off_are_exported_again_once_anonymized(new_store, tmp_path):
    client = new_store("wh_retention")
    store_simulated(client, n_users=3, n_tests=3, seed=8)
    root = tmp_path / "warehouse"
    for day in (DAY1, DAY2, DAY3):
        export_day(client, day, str(root), settle_s=0)
    untouched = (day_dir(root, "per_test", DAY3) / "part-0.parquet").read_bytes()

    # DAY1 and DAY2 are past the cut-off, but the archive job has not anonymized them yet: exported again, pending.
    pending = reexport_anonymized_days(client, str(root), DAY3, settle_s=0)
    assert pending.reexported == [] and pending.pending == [DAY1, DAY2]
    assert 1 in read_day(root, "per_test", DAY1).column("user_id").to_pylist()

    assert anonymize_results(client, DAY3, settle=timedelta(0)) == 6
    done = reexport_anonymized_days(client, str(root), DAY3, settle_s=0)
    assert done.reexported == [DAY1, DAY2] and done.pending == []
    for day in (DAY1, DAY2):
        ids = read_day(root, "per_test", day).column("user_id").to_pylist()
        assert len(ids) == 3 and all(i < 0 for i in ids)
        assert read_day(root, "user_daily", day).num_rows == read_day(root, "user_key_daily", day).num_rows == 0
    assert (day_dir(root, "per_test", DAY3) / "part-0.parquet").read_bytes() == untouched  # not past the cut-off
    assert reexport_anonymized_days(client, str(root), DAY3, settle_s=0).reexported == []  # nothing left to do


def test_an_empty_day_still_has_a_readable_schema_and_a_manifest(new_store, tmp_path):
    client = new_store("wh_empty")
    export_day(client, DAY1, str(tmp_path), settle_s=0)
    for dataset, schema in (("per_test", PER_TEST_SCHEMA), ("user_daily", USER_DAILY_SCHEMA),
                            ("user_key_daily", USER_KEY_DAILY_SCHEMA)):
        table = read_day(tmp_path, dataset, DAY1)
        assert table.num_rows == 0 and table.schema.equals(schema)
        assert manifest(tmp_path, dataset, DAY1)["rows"] == 0


# --- the cohort query -------------------------------------------------------------------------------------------------

# (user, UTC day, WPM or None) per test. Signup = the user's first test; weeks count from the signup day.
HISTORY = [
    # cohort of Monday 2026-11-02
    (1, "2026-11-02", 40.0), (1, "2026-11-02", 50.0), (1, "2026-11-05", 60.0),  # week 0: WPM (40+50+60)/3 = 50
    (1, "2026-11-10", 50.0),                                                     # week 1 (day 8): +0
    (1, "2026-11-16", 60.0),                                                     # week 2 (day 14): +10
    (2, "2026-11-04", 30.0), (2, "2026-11-04", None), (2, "2026-11-06", 42.0),   # week 0: (30+42)/2 = 36
    (2, "2026-11-12", 45.0),                                                     # week 1: +9
    (3, "2026-11-08", 70.0),                                                     # a Sunday: still the 11-02 week
    # cohort of Monday 2026-11-09
    (4, "2026-11-09", 20.0), (4, "2026-11-17", 30.0), (4, "2026-11-24", 35.0),   # weeks 0, 1, 2: +10, +15
    (5, "2026-11-11", 50.0),
    # started before the exported days (2026-10-20, not exported); seen in week 2 only, so no WPM gain
    (6, "2026-10-20", 55.0), (6, "2026-11-03", 80.0),
]
# signup_week, week, cohort_users, active_users, retention, mean_wpm, wpm_gain
EXPECTED_COHORTS = [
    (date(2026, 10, 19), 2, 1, 1, 1.0, 80.0, None),
    (date(2026, 11, 2), 0, 3, 3, 1.0, (50 + 36 + 70) / 3, 0.0),
    (date(2026, 11, 2), 1, 3, 2, 2 / 3, (50 + 45) / 2, (0 + 9) / 2),
    (date(2026, 11, 2), 2, 3, 1, 1 / 3, 60.0, 10.0),
    (date(2026, 11, 9), 0, 2, 2, 1.0, (20 + 50) / 2, 0.0),
    (date(2026, 11, 9), 1, 2, 1, 0.5, 30.0, 10.0),
    (date(2026, 11, 9), 2, 2, 1, 0.5, 35.0, 15.0),
]
EXPORTED = [date(2026, 11, 1) + timedelta(days=i) for i in range(24)]  # 11-01 … 11-24


def store_history(client, ingested_at: str = "now64(3)") -> None:
    rows = []
    for i, (user, day, wpm) in enumerate(HISTORY):
        value = "NULL" if wpm is None else repr(wpm)
        rows.append(
            f"({user}, 'h{i}', '{day} 10:{i:02d}:00.000', 'qwerty', 'en', 100, 30000, {value}, 0.95, {ingested_at})"
        )
    client.command(
        "INSERT INTO test_results (user_id, test_id, started_at, layout, language, keystroke_count, duration_ms, "
        "wpm, accuracy, ingested_at) VALUES " + ", ".join(rows)
    )


def assert_cohorts(table: pa.Table) -> None:
    got = [tuple(row.values()) for row in table.to_pylist()]
    assert table.column_names == [
        "signup_week", "week", "cohort_users", "active_users", "retention", "mean_wpm", "wpm_gain"
    ]
    assert [row[:4] for row in got] == [row[:4] for row in EXPECTED_COHORTS]
    for row, want in zip(got, EXPECTED_COHORTS):
        assert row[4:6] == pytest.approx(want[4:6]), row
        assert (row[6] is None and want[6] is None) or row[6] == pytest.approx(want[6]), row


@pytest.fixture(scope="module")
def history(new_store):
    client = new_store("wh_history")
    store_history(client)
    return client


@pytest.fixture(scope="module")
def history_root(history, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort-warehouse")
    for day in EXPORTED:
        export_day(history, day, str(root), settle_s=0)
    return root


def test_user_daily_of_the_hand_made_history(history_root):
    rows = {r["user_id"]: r for r in read_day(history_root, "user_daily", date(2026, 11, 4)).to_pylist()}
    assert list(rows) == [2]
    assert (rows[2]["tests"], rows[2]["wpm_tests"], rows[2]["mean_wpm"], rows[2]["median_wpm"]) == (2, 1, 30.0, 30.0)
    two = read_day(history_root, "user_daily", date(2026, 11, 2)).to_pylist()
    assert [(r["user_id"], r["tests"], r["mean_wpm"], r["median_wpm"], r["best_wpm"]) for r in two] == [
        (1, 2, 45.0, 45.0, 50.0)
    ]
    late_starter = read_day(history_root, "user_daily", date(2026, 11, 3)).to_pylist()
    assert [(r["user_id"], r["first_test_day"]) for r in late_starter] == [(6, date(2026, 10, 20))]


def test_cohort_query_over_the_exported_files(new_store, history_root):
    client = new_store("wh_cohort_engine")
    assert_cohorts(cohort_report(str(history_root), client=client))
    # Through a filesystem URI: the files are copied from the pyarrow filesystem first (as from s3://).
    assert_cohorts(cohort_report(history_root.as_uri(), client=client))


def test_export_and_cohorts_on_an_object_store_like_filesystem(history, new_store, tmp_path):
    """An fsspec in-memory filesystem stands in for S3 / GCS: no directories to rename, moves are copies."""
    memory = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("memory")))
    root = f"/bucket-{tmp_path.name}/keyscope"  # fsspec memory paths are absolute
    for day in EXPORTED:
        export_day(history, day, root, settle_s=0, filesystem=memory)
    day_path = f"{root}/user_daily/day=2026-11-02"
    listed = sorted(i.base_name for i in memory.get_file_info(pafs.FileSelector(day_path)))
    assert listed == [MANIFEST, "part-0.parquet"]
    with memory.open_input_file(f"{day_path}/part-0.parquet") as f:
        assert pq.read_table(f).equals(read_day_any(history, date(2026, 11, 2), tmp_path))
    staged = memory.get_file_info(pafs.FileSelector(f"{root}/_staging", allow_not_found=True, recursive=True))
    assert not [i for i in staged if i.type == pafs.FileType.File]

    # A split run, then a normal one: the extra parts go.
    export_day(history, date(2026, 11, 2), root, settle_s=0, max_file_rows=1, filesystem=memory)
    assert len(memory.get_file_info(pafs.FileSelector(f"{root}/per_test/day=2026-11-02"))) == 3  # 2 parts + manifest
    export_day(history, date(2026, 11, 2), root, settle_s=0, filesystem=memory)
    listed = sorted(i.base_name for i in memory.get_file_info(pafs.FileSelector(f"{root}/per_test/day=2026-11-02")))
    assert listed == [MANIFEST, "part-0.parquet"]

    assert_cohorts(cohort_report(root, client=new_store("wh_cohort_engine_memory"), filesystem=memory))


def read_day_any(client, day: date, tmp_path: Path) -> pa.Table:
    """The day's user_daily as a local export writes it (to compare with another filesystem's)."""
    local = tmp_path / "local"
    export_day(client, day, str(local), settle_s=0)
    return read_day(local, "user_daily", day)


def test_cli_exports_and_runs_the_cohort_query(chdb_dir, new_store, history_root, tmp_path, monkeypatch, capsys):
    # Export with the CLI from the chDB's default database (same process, same chDB directory). The rows were
    # ingested an hour ago: the CLI's export leaves rows of the last SETTLE_S seconds to its next run.
    default = clickhouse_client(f"chdb://{chdb_dir}")
    try:
        apply_migrations(default)
        store_history(default, ingested_at="now64(3) - INTERVAL 1 HOUR")
    finally:
        default.close()
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{chdb_dir}")
    monkeypatch.setenv("KEYSCOPE_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "cli-warehouse"
    assert cli_main(["warehouse", "export", "--day", "2026-11-02", "--days", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "warehouse 2026-11-01: per_test 0 rows" in printed and "warehouse 2026-11-02: per_test 2 rows" in printed
    assert [r["mean_wpm"] for r in read_day(out, "user_daily", date(2026, 11, 2)).to_pylist()] == [45.0]
    assert manifest(out, "per_test", date(2026, 11, 2))["source"]["ingest_offsets"]["next_offsets"] == {}
    # The Ray job's entrypoint (`python -m pipelines.warehouse export`) does the same.
    assert warehouse_main(["export", "--day", "2026-11-02", "--out", str(tmp_path / "job-warehouse")]) == 0
    assert read_day(tmp_path / "job-warehouse", "user_daily", date(2026, 11, 2)).equals(
        read_day(out, "user_daily", date(2026, 11, 2))
    )

    # `keyscope warehouse cohorts` opens its own in-process chDB: run it in a process of its own.
    env = {**os.environ, "KEYSCOPE_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "warehouse", "cohorts", "--from", str(history_root)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert ["2026-11-02", "1", "3", "2", "66.7%", "47.5", "+4.5"] in lines
    assert ["2026-10-19", "2", "1", "1", "100.0%", "80.0"] in lines
