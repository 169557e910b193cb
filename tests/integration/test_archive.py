"""Retention: the archive job (pipelines/archive.py) and the cold store (app/cold.py) on chDB in process and a local
cold directory. Simulated tests are stored as the ingest job stores them, then the job runs with `now` moved."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app import faults
from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations
from app.clickhouse.store import write_tables
from app.cold import (
    ARCHIVE_SCHEMA,
    ColdArchive,
    ColdStore,
    ColdStoreError,
    cold_query,
    cold_uri,
    manifest,
    merge_rows,
    normalize,
    user_bucket,
)
from app.config import Settings
from app.schemas import MAX_USER_ID, NAMED_KEY_CODES, parse_submission
from app.tables import build_tables
from devstack.simulate import simulate_tests
from pipelines.archive import ANONYMOUS_USER_BASE, run_archive

COLUMNS = ", ".join(ARCHIVE_SCHEMA.names)
ORDER = "ORDER BY user_id, started_at, test_id, seq"
# Stored tests: 12 days from 25 January 2027 (months 202701 and 202702) and 3 from 10 March (202703).
OLD_START = datetime(2027, 1, 25, tzinfo=UTC)
NEW_START = datetime(2027, 3, 10, tzinfo=UTC)
# 90 days before: 12 March 2027. January and February are wholly older, March is not (its 10th and 11th are, but
# months leave whole).
NOW = datetime(2027, 6, 10, 12, tzinfo=UTC)
# 730 days before: 1 February 2027, so January's cold days and test results expire, February's stay.
LATER = datetime(2029, 1, 31, 12, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings().with_overrides(
        data_dir=tmp_path / "data", clickhouse_url=f"chdb://{tmp_path / 'ch'}", cold_uri=str(tmp_path / "cold")
    )


@pytest.fixture
def client(settings):
    ch = clickhouse_client(settings.clickhouse_url)
    apply_migrations(ch)
    try:
        yield ch
    finally:
        ch.close()


def store_tests(client, users: int, tests: int, start: datetime, first_user_id: int = 1, seed: int = 5) -> list:
    subs = simulate_tests(users, tests, seed=seed, first_user_id=first_user_id, start=start)
    parsed = [parse_submission(s) for s in subs]
    write_tables(client, build_tables(parsed, np.zeros(len(parsed), np.int64), np.arange(len(parsed), dtype=np.int64)))
    return parsed


def hot_rows(client, where: str = "1") -> pa.Table:
    return normalize(client.query_arrow(f"SELECT {COLUMNS} FROM keystrokes FINAL WHERE {where} {ORDER}"))


def cold_rows(settings) -> pa.Table:
    return normalize(cold_query(settings, f"SELECT {COLUMNS} FROM cold_keystrokes {ORDER}"))


def count(client, sql: str) -> int:
    return int(client.query(sql).result_rows[0][0])


def file_digests(settings) -> dict[str, str]:
    store = ColdStore(cold_uri(settings))
    return {rel: hashlib.sha256(store.read_bytes(rel)).hexdigest() for _, _, rel in store.files()}


def assert_cold_consistent(settings, client) -> None:
    """Every file holds only its day's rows of its bucket's users, and the manifest lists exactly the files."""
    store = ColdStore(cold_uri(settings))
    listed = manifest(client)
    files = store.files()
    assert {(d, b): rel for d, b, rel in files} == {key: f.path for key, f in listed.items()}
    for day, bucket, rel in files:
        table = store.read(rel)
        assert table.num_rows == listed[(day, bucket)].rows > 0
        assert hashlib.sha256(store.read_bytes(rel)).hexdigest() == listed[(day, bucket)].sha256
        assert {user_bucket(u) for u in set(table.column("user_id").to_pylist())} == {bucket}
        days = {t.date() for t in table.column("started_at").to_pylist()}
        assert days == {day}
        assert table.equals(table.sort_by([(c, "ascending") for c in ("user_id", "started_at", "test_id", "seq")]))


@pytest.fixture
def stored(client):
    """Old tests (to be archived) and recent ones (to stay) of users 1-3, and their keystrokes as stored."""
    old = store_tests(client, 3, 12, OLD_START)
    new = store_tests(client, 3, 3, NEW_START, seed=6)
    assert len({t.test_id for t in old + new}) == len(old) + len(new)
    return {
        "old": old,
        "new": new,
        "old_rows": hot_rows(client, "started_at < '2027-03-01'"),
        "new_rows": hot_rows(client, "started_at >= '2027-03-01'"),
    }


def test_archiving_tables_match_keystrokes(client):
    def columns(table):
        return client.query(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {t:String} "
            "ORDER BY position",
            parameters={"t": table},
        ).result_rows

    assert columns("keystrokes_archiving") == columns("keystrokes")  # MOVE PARTITION needs the same structure


def test_old_months_move_to_cold_and_leave_clickhouse(settings, client, stored):
    report = run_archive(settings, NOW)

    assert report.months_archived == ["202701", "202702"]
    assert report.rows_archived == stored["old_rows"].num_rows > 0
    # Hot: the archived months are gone, March (partly older than 90 days, but not wholly) is untouched.
    assert count(client, "SELECT count() FROM keystrokes WHERE started_at < '2027-03-01'") == 0
    assert hot_rows(client).equals(stored["new_rows"])
    assert count(client, "SELECT count() FROM keystrokes_archiving") == 0
    # Cold: exactly the rows ClickHouse had, every value the same.
    assert cold_rows(settings).equals(stored["old_rows"])
    assert_cold_consistent(settings, client)
    assert {d for d, _, _ in ColdStore(cold_uri(settings)).files()} == {
        date(2027, 1, 25) + timedelta(days=i) for i in range(12)
    }
    # Test results stay hot: with them, the cold keystrokes rebuild each test exactly as submitted.
    assert count(client, "SELECT count() FROM test_results FINAL") == len(stored["old"]) + len(stored["new"])
    test = stored["old"][4]
    rows = normalize(
        cold_query(
            settings,
            "SELECT * FROM cold_keystrokes WHERE user_id = {u:UInt64} AND test_id = {t:String} ORDER BY seq",
            {"u": test.user_id, "t": test.test_id},
        )
    )
    text = client.query(
        "SELECT text FROM test_results FINAL WHERE user_id = {u:UInt64} AND test_id = {t:String}",
        parameters={"u": test.user_id, "t": test.test_id},
    ).result_rows[0][0]
    down = np.cumsum(rows.column("iki_ms").to_numpy())
    hold = rows.column("hold_ms").to_numpy()
    keys = [NAMED_KEY_CODES[k] if len(k) != 1 else ord(k) for k in rows.column("key").to_pylist()]
    assert text == test.text
    assert keys == test.key_codes.tolist()
    assert down.tolist() == test.down_ms.tolist()
    assert np.where(hold >= 0, down + hold, -1).tolist() == test.up_ms.tolist()


def test_a_rerun_changes_nothing(settings, client, stored):
    run_archive(settings, NOW)
    before = file_digests(settings)
    report = run_archive(settings, NOW)
    assert report.months_archived == [] and report.files_written == 0
    assert file_digests(settings) == before
    assert cold_rows(settings).equals(stored["old_rows"])
    assert hot_rows(client).equals(stored["new_rows"])


def test_late_tests_for_an_archived_month_are_added_to_its_files(settings, client, stored):
    run_archive(settings, NOW)
    late = store_tests(client, 2, 2, datetime(2027, 1, 26, tzinfo=UTC), seed=99)  # users 1-2, new test ids
    late_rows = hot_rows(client, "started_at < '2027-03-01'")
    assert late_rows.num_rows > 0

    report = run_archive(settings, NOW)

    assert report.months_archived == ["202701"] and report.rows_archived == late_rows.num_rows
    assert len(late) == 4
    assert cold_rows(settings).equals(merge_rows(stored["old_rows"], late_rows))
    assert count(client, "SELECT count() FROM keystrokes WHERE started_at < '2027-03-01'") == 0
    assert_cold_consistent(settings, client)


CRASH_POINTS = [
    "archive_after_move",  # the month is in keystrokes_archiving, nothing written
    "cold_after_stage",  # a file is written under its temporary name, not renamed
    "archive_after_file",  # one file in place, no manifest row
    "archive_after_files",  # every file of the month in place, no manifest row
    "archive_after_manifest",  # files and manifest written, the month not dropped from ClickHouse
    "archive_after_drop",  # the first month done, the second not started
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_anywhere_then_a_rerun_loses_nothing_and_doubles_nothing(settings, client, stored, point):
    with faults.armed(point), pytest.raises(faults.SimulatedCrash):
        run_archive(settings, NOW)
    # Until the rerun, no row is anywhere but in ClickHouse or in a cold file that holds it.
    in_clickhouse = normalize(
        client.query_arrow(
            f"SELECT {COLUMNS} FROM (SELECT * FROM keystrokes FINAL UNION ALL SELECT * FROM keystrokes_archiving "
            f"FINAL) WHERE started_at < '2027-03-01' {ORDER}"
        )
    )
    assert merge_rows(cold_rows(settings), in_clickhouse).equals(stored["old_rows"])

    report = run_archive(settings, NOW)

    assert report.months_archived  # what the crashed run left is finished now
    assert cold_rows(settings).equals(stored["old_rows"])
    assert hot_rows(client).equals(stored["new_rows"])
    assert count(client, "SELECT count() FROM keystrokes_archiving") == 0
    assert_cold_consistent(settings, client)
    store = ColdStore(cold_uri(settings))
    store.sweep_staging(older_than=timedelta(0))
    assert store.fs.get_file_info(f"{store.root}/_staging").type.name in ("Directory", "NotFound")


# What the detail tables' rows sum to, per table: anonymization must keep every figure.
DETAIL_TOTALS = {
    "test_keys": "SELECT count(), sum(arraySum(presses)), sum(arraySum(errors)), sum(arraySum(hold_sum_ms)) "
    "FROM test_keys FINAL",
    "test_pairs": "SELECT count(), sum(arraySum(presses)), sum(arraySum(time_to_type_sum_ms)), "
    "sum(length(arrayFlatten(time_to_type_ms))) FROM test_pairs FINAL",
    "test_confusions": "SELECT count(), sum(count) FROM test_confusions FINAL",
}


def detail_totals(client) -> dict[str, list]:
    return {table: client.query(sql).result_rows for table, sql in DETAIL_TOTALS.items()}


def assert_details_follow_results(client, january: list) -> None:
    """January's tests have no detail row under their user any more, and every anonymized detail row belongs to an
    anonymized result, with its day."""
    old = {t.test_id for t in january}
    results = {
        (u, t): s
        for u, t, s in client.query(
            "SELECT user_id, test_id, started_at FROM test_results FINAL WHERE user_id > {m:UInt64}",
            parameters={"m": MAX_USER_ID},
        ).result_rows
    }
    for table in DETAIL_TOTALS:
        kept = client.query(f"SELECT DISTINCT test_id FROM {table} FINAL WHERE user_id <= {MAX_USER_ID}").result_rows
        assert old.isdisjoint(t for (t,) in kept), table
        anonymous = client.query(
            f"SELECT DISTINCT user_id, test_id, started_at FROM {table} FINAL WHERE user_id > {MAX_USER_ID}"
        ).result_rows
        assert anonymous and all(results.get((u, t)) == s for u, t, s in anonymous), table


def test_after_two_years_cold_days_go_and_results_are_anonymized(settings, client, stored):
    run_archive(settings, NOW)
    totals = "SELECT count(), round(sum(wpm), 6), sum(keystroke_count), sum(chars_incorrect) FROM test_results FINAL"
    by_day = "SELECT toDate(started_at) AS d, count(), round(sum(wpm), 6) FROM test_results FINAL GROUP BY d ORDER BY d"
    before_totals, before_by_day = client.query(totals).result_rows, client.query(by_day).result_rows
    before_details = detail_totals(client)
    january = [t for t in stored["old"] if t.started_at_ms < datetime(2027, 2, 1, tzinfo=UTC).timestamp() * 1000]

    report = run_archive(settings, LATER, settle=timedelta(0))

    # Cold: January's days deleted (files, then manifest), February's kept.
    assert report.cold_days_deleted == 7
    left = {d for d, _, _ in ColdStore(cold_uri(settings)).files()}
    assert left and min(left) == date(2027, 2, 1)
    february = stored["old_rows"].filter(
        pa.compute.greater_equal(stored["old_rows"].column("started_at"), pa.scalar(datetime(2027, 2, 1, tzinfo=UTC)))
    )
    assert cold_rows(settings).equals(merge_rows(february, stored["new_rows"]))  # March moved to cold meanwhile
    assert_cold_consistent(settings, client)
    assert report.months_archived == ["202703"]
    # Results: January's tests anonymized, the numbers over tests unchanged (per day too).
    assert report.tests_anonymized == len(january) > 0
    assert client.query(totals).result_rows == before_totals
    assert client.query(by_day).result_rows == before_by_day
    anonymous = client.query(
        "SELECT user_id, test_id, started_at, text, transcribed, kafka_offset FROM test_results FINAL "
        "WHERE user_id > {m:UInt64}",
        parameters={"m": MAX_USER_ID},
    ).result_rows
    assert len(anonymous) == len(january)
    assert all(
        u >= ANONYMOUS_USER_BASE and (text, typed, offset) == ("", "", 0) for u, _, _, text, typed, offset in anonymous
    )
    assert all(s.hour == s.minute == s.second == 0 for _, _, s, _, _, _ in anonymous)
    assert {t for _, t, _, _, _, _ in anonymous}.isdisjoint({t.test_id for t in january})
    assert len({u for u, _, _, _, _, _ in anonymous}) == len(january)  # no link between one user's tests
    assert count(client, "SELECT count() FROM test_results FINAL WHERE user_id <= 3 AND started_at < '2027-02-01'") == 0
    assert count(client, "SELECT count() FROM test_results FINAL WHERE user_id <= 3") == (
        len(stored["old"]) + len(stored["new"]) - len(january)
    )
    # Their keys, pairs and confusions too, under the same pseudonyms, every figure kept.
    assert_details_follow_results(client, january)
    assert detail_totals(client) == before_details
    # A rerun finds nothing more to do and duplicates nothing.
    again = run_archive(settings, LATER, settle=timedelta(0))
    assert (again.cold_days_deleted, again.tests_anonymized) == (0, 0)
    assert client.query(totals).result_rows == before_totals
    assert detail_totals(client) == before_details


@pytest.mark.parametrize(
    "point",
    [
        "expire_after_files",
        "anonymize_details_after_insert",
        "anonymize_details_after_delete",
        "anonymize_after_insert",
    ],
)
def test_a_crash_during_expiry_or_anonymization_then_a_rerun(settings, client, stored, point):
    run_archive(settings, NOW)
    totals = "SELECT count(), round(sum(wpm), 6) FROM test_results FINAL"
    before, before_details = client.query(totals).result_rows, detail_totals(client)
    january = [t for t in stored["old"] if t.started_at_ms < datetime(2027, 2, 1, tzinfo=UTC).timestamp() * 1000]

    with faults.armed(point), pytest.raises(faults.SimulatedCrash):
        run_archive(settings, LATER, settle=timedelta(0))
    run_archive(settings, LATER, settle=timedelta(0))

    assert client.query(totals).result_rows == before
    assert count(client, "SELECT count() FROM test_results FINAL WHERE user_id <= 3 AND started_at < '2027-02-01'") == 0
    assert detail_totals(client) == before_details
    assert_details_follow_results(client, january)
    assert_cold_consistent(settings, client)
    assert count(client, "SELECT count() FROM archive_manifest FINAL WHERE day < '2027-02-01' AND deleted = 0") == 0


def test_hot_rows_past_cold_retention_are_dropped_without_a_copy(settings, client, stored):
    report = run_archive(
        settings, LATER, settle=timedelta(0)
    )  # the job never ran before: January is already past two years
    assert (
        report.rows_expired
        == stored["old_rows"]
        .filter(pa.compute.less(stored["old_rows"].column("started_at"), pa.scalar(datetime(2027, 2, 1, tzinfo=UTC))))
        .num_rows
    )
    assert count(client, "SELECT count() FROM keystrokes") == 0
    assert min(d for d, _, _ in ColdStore(cold_uri(settings)).files()) == date(2027, 2, 1)


def test_cold_query_and_the_cli(settings, client, stored, monkeypatch, capsys):
    from cli.main import main

    assert cold_query(settings, "SELECT count() FROM cold_keystrokes").column(0).to_pylist() == [0]  # empty store
    monkeypatch.setenv("CLICKHOUSE_URL", settings.clickhouse_url)
    monkeypatch.setenv("KEYSCOPE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("KEYSCOPE_COLD_URI", settings.cold_uri)
    assert main(["archive", "run", "--now", NOW.isoformat()]) == 0
    assert "archived 202701, 202702" in capsys.readouterr().out

    per_user = cold_query(
        settings, "SELECT user_id, count() AS n FROM cold_keystrokes GROUP BY user_id ORDER BY user_id"
    )
    expected = stored["old_rows"].group_by("user_id").aggregate([("seq", "count")]).sort_by("user_id")
    assert per_user.column("user_id").to_pylist() == expected.column("user_id").to_pylist()
    assert per_user.column("n").to_pylist() == expected.column("seq_count").to_pylist()
    # The paths' day and bucket are columns too.
    pruned = cold_query(
        settings,
        "SELECT count() FROM cold_keystrokes WHERE day = '2027-01-30' AND user_bucket = {b:UInt8}",
        {"b": user_bucket(2)},
    )
    in_bucket = [
        u
        for u, t in zip(
            stored["old_rows"].column("user_id").to_pylist(), stored["old_rows"].column("started_at").to_pylist()
        )
        if t.date() == date(2027, 1, 30) and user_bucket(u) == user_bucket(2)
    ]
    assert pruned.column(0).to_pylist() == [len(in_bucket)] and in_bucket

    assert (
        main(["cold", "query", "SELECT user_id, count() AS n FROM cold_keystrokes GROUP BY user_id ORDER BY user_id"])
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split("\t") == ["user_id", "n"]
    assert [line.split("\t") for line in lines[1:]] == [
        [str(u), str(n)] for u, n in zip(*per_user.to_pydict().values())
    ]


def same_bucket_user(user_id: int) -> int:
    return next(u for u in range(100, 10_000) if user_bucket(u) == user_bucket(user_id))


def test_cold_archive_export_count_and_delete_touch_only_the_users_bucket(settings, client, stored):
    neighbour = same_bucket_user(1)
    store_tests(client, 1, 12, OLD_START, first_user_id=neighbour, seed=7)
    old = hot_rows(client, "started_at < '2027-03-01'")
    run_archive(settings, NOW)
    store = ColdStore(cold_uri(settings))
    before = file_digests(settings)
    bucket = user_bucket(1)

    def rows_of(user):
        return old.filter(pa.compute.equal(old.column("user_id"), pa.scalar(user, pa.uint64()))).combine_chunks()

    with ColdArchive(settings, client) as archive:
        assert archive.name == "cold_keystrokes"
        assert archive.count(1) == rows_of(1).num_rows > 0
        assert archive.count(neighbour) == rows_of(neighbour).num_rows > 0
        files = list(archive.export(1))
        assert [name for name, _ in files] == [
            f"cold_keystrokes/day={d.isoformat()}.parquet"
            for d in sorted({t.date() for t in rows_of(1).column("started_at").to_pylist()})
        ]
        exported = pa.concat_tables([normalize(pq.read_table(pa.BufferReader(data))) for _, data in files])
        assert exported.equals(rows_of(1))

        assert archive.delete(1) == rows_of(1).num_rows
        assert archive.count(1) == 0 and list(archive.export(1)) == []
        assert archive.count(neighbour) == rows_of(neighbour).num_rows
        assert archive.delete(1) == 0
        assert archive.count(987_654_321) == 0 and archive.delete(987_654_321) == 0

    after = file_digests(settings)
    changed = {rel for rel in before if before[rel] != after.get(rel)}
    assert changed and all(f"/user_bucket={bucket:02d}/" in rel for rel in changed)
    assert all(before[rel] == after[rel] for rel in before if f"/user_bucket={bucket:02d}/" not in rel)
    others = old.filter(pa.compute.not_equal(old.column("user_id"), pa.scalar(1, pa.uint64()))).combine_chunks()
    assert cold_rows(settings).equals(others)
    assert_cold_consistent(settings, client)
    assert {d for d, b, _ in store.files(bucket)}  # the neighbour's files stay


def delete_user(settings, client, user_id: int) -> int:
    """What app/user_data.py's deletion does, in its order: a tombstone, the user's rows out of every ClickHouse table
    (among them keystrokes_archiving), then the registered stores such as the cold archive."""
    # (at the tests' clock: the simulated tests lie after the machine's)
    client.insert("user_tombstones", [[user_id, NOW]], column_names=["user_id", "deleted_at"])
    for table in ("keystrokes", "keystrokes_archiving"):
        client.command(
            f"ALTER TABLE {table} DELETE WHERE user_id = {{u:UInt64}}",
            parameters={"u": user_id},
            settings={"mutations_sync": 2},
        )
    with ColdArchive(settings, client) as archive:
        return archive.delete(user_id)


@pytest.mark.parametrize("point", ["archive_after_move", "cold_after_stage", "archive_after_files"])
def test_a_user_deleted_while_a_month_is_archived_stays_deleted(settings, client, stored, point):
    """The deletion lands in the middle of a run: after the month left `keystrokes`, after a file with the user's
    rows was written under its temporary name (renamed after the deletion), or after the files are in place."""
    deleted = []

    def delete_during_the_run() -> None:
        if not deleted:
            deleted.append(delete_user(settings, client, 2))

    try:
        with faults.armed(point, delete_during_the_run):
            run_archive(settings, NOW)
    except ColdStoreError:
        pass  # the month changed under the run (the deletion's mutation): it is left for the next run
    run_archive(settings, NOW)

    rows = stored["old_rows"]
    others = rows.filter(pa.compute.not_equal(rows.column("user_id"), pa.scalar(2, pa.uint64())))
    assert cold_rows(settings).equals(others)
    assert count(client, "SELECT count() FROM keystrokes WHERE user_id = 2") == 0
    assert count(client, "SELECT count() FROM keystrokes_archiving") == 0
    assert_cold_consistent(settings, client)
    with ColdArchive(settings, client) as archive:
        assert archive.count(2) == 0


def test_rows_of_a_deleted_user_are_not_archived_and_a_returning_user_is(settings, client, stored):
    client.insert("user_tombstones", [[3, datetime(2027, 1, 31, tzinfo=UTC)]], column_names=["user_id", "deleted_at"])
    report = run_archive(settings, NOW)
    rows = stored["old_rows"]
    erased = pa.compute.and_(
        pa.compute.equal(rows.column("user_id"), pa.scalar(3, pa.uint64())),
        pa.compute.less_equal(rows.column("started_at"), pa.scalar(datetime(2027, 1, 31, tzinfo=UTC))),
    )
    assert report.rows_erased == pa.compute.sum(erased).as_py() > 0
    assert cold_rows(settings).equals(rows.filter(pa.compute.invert(erased)))  # user 3's later tests are kept
    assert count(client, "SELECT count() FROM keystrokes WHERE started_at < '2027-03-01'") == 0


def test_with_a_clickhouse_server_the_days_run_as_ray_tasks(tmp_path):
    """The job as it runs on a cluster: ClickHouse over HTTP (the chDB endpoint, in this process) and each day of a
    month archived by a Ray task on its own connection."""
    import ray

    from devstack.clickhouse_http import ClickHouseEndpoint

    endpoint = ClickHouseEndpoint(tmp_path / "ch", port=0).start()
    started_ray = not ray.is_initialized()
    try:
        settings = Settings().with_overrides(
            data_dir=tmp_path / "data",
            clickhouse_url=f"http://127.0.0.1:{endpoint.port}/default",
            cold_uri=str(tmp_path / "cold"),
        )
        ch = clickhouse_client(settings.clickhouse_url)
        try:
            apply_migrations(ch)
            store_tests(ch, 3, 4, OLD_START)
            old = hot_rows(ch)
            if started_ray:
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            report = run_archive(settings, NOW)
            assert report.months_archived == ["202701"] and report.files_written > 3
            assert count(ch, "SELECT count() FROM keystrokes") == 0
            store = ColdStore(cold_uri(settings))  # (chDB is the endpoint's in this process: no cold_query here)
            files = pa.concat_tables([store.read(rel) for _, _, rel in store.files()])
            assert files.sort_by([(c, "ascending") for c in ("user_id", "started_at", "test_id", "seq")]).equals(old)
            assert_cold_consistent(settings, ch)
        finally:
            ch.close()
    finally:
        if started_ray:
            ray.shutdown()
        endpoint.stop()
