"""`keyscope bench storage` on 50 k keystrokes: real chDB in a temporary directory, the real MariaDB."""

from __future__ import annotations

from contextlib import closing

import pytest

from bench.storage import DEFAULT_MARIADB_URL, run, scratch_table_name
from pipelines.migrate_mysql import MySQLSource, parse_dsn


@pytest.fixture
def mariadb() -> MySQLSource:
    import pymysql

    target = parse_dsn(DEFAULT_MARIADB_URL)
    try:
        target.connect().close()
    except pymysql.err.OperationalError as exc:
        pytest.skip(f"no MariaDB at {target}: {exc}")
    return target


def table_exists(target: MySQLSource, table: str) -> bool:
    with closing(target.connect()) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE table_schema = DATABASE() AND table_name = %s",
            (table,),
        )
        return cursor.fetchone()[0] > 0


def test_clickhouse_stores_the_same_keystrokes_in_fewer_bytes_than_the_seeds_json(mariadb, tmp_path):
    table = scratch_table_name()
    result = run(
        keystrokes=50_000,
        clickhouse_dir=tmp_path / "chdb",
        mariadb_url=DEFAULT_MARIADB_URL,
        progress=False,
        table=table,
    )
    assert result.keystrokes >= 50_000
    # Both stores hold every keystroke and every test, as each counts them.
    assert result.clickhouse.rows == result.keystrokes == result.mariadb.keystrokes
    assert result.clickhouse.tests == result.tests == result.mariadb.rows
    assert 0 < result.clickhouse.bytes_per_keystroke < result.mariadb.bytes_per_keystroke
    assert result.ratio > 1
    assert not table_exists(mariadb, table)


def test_the_scratch_table_is_dropped_when_the_run_fails(mariadb, tmp_path):
    broken = tmp_path / "migrations"
    broken.mkdir()
    (broken / "0001_broken.sql").write_text("CREATE TABLE keystrokes (oops);\n")
    table = scratch_table_name()
    with pytest.raises(Exception, match="(?i)syntax"):
        run(keystrokes=1_000, clickhouse_dir=tmp_path / "chdb", migrations_dir=broken, progress=False, table=table)
    assert not table_exists(mariadb, table)


def test_a_mariadb_subset_holds_whole_tests_up_to_the_limit(mariadb, tmp_path):
    result = run(keystrokes=20_000, clickhouse_dir=tmp_path / "chdb", mariadb_keystrokes=5_000, progress=False)
    assert result.clickhouse.rows == result.keystrokes >= 20_000
    assert 5_000 <= result.mariadb.keystrokes < 5_000 + 1_000  # whole tests: the last one passes the limit
    assert 0 < result.mariadb.rows < result.tests
    assert 0 < result.clickhouse.bytes_per_keystroke < result.mariadb.bytes_per_keystroke
