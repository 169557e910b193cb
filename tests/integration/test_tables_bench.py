"""`keyscope bench tables` on 30 k keystrokes: real chDB in a temporary directory."""

from __future__ import annotations

import pytest

from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import STORED_TABLES
from bench.tables import run


def test_every_table_is_stored_and_costed(tmp_path):
    directory = tmp_path / "chdb"
    result = run(keystrokes=30_000, clickhouse_dir=directory, progress=False)

    assert result.keystrokes >= 30_000
    assert [t.table for t in result.tables] == list(STORED_TABLES)
    by_table = {t.table: t for t in result.tables}
    # One raw row per keystroke; one result row, one key row and one pair row per test (every simulated test has
    # keys and pairs).
    assert by_table["keystrokes"].rows == result.keystrokes
    for table in ("test_results", "test_keys", "test_pairs"):
        assert by_table[table].rows == result.tests, table
    for cost in result.tables:
        assert cost.insert_cpu_s > 0 and cost.merge_cpu_s >= 0 and cost.bytes_on_disk > 0, cost
    assert result.analysis_cpu_s > 0
    assert result.ceiling_keystrokes_per_s == pytest.approx(result.cores * 1e6 / result.least_cpu_s_per_million)

    # What the report counts is what the directory holds: every row, and one part per table after the final merge.
    client = clickhouse_client(f"chdb://{directory}")
    try:
        for table in STORED_TABLES:
            assert client.command(f"SELECT count() FROM {table}") == by_table[table].rows
            parts = client.command(
                "SELECT count() FROM system.parts WHERE active AND database = currentDatabase() AND table = {t:String}",
                parameters={"t": table},
            )
            assert parts == 1, table
    finally:
        client.close()


def test_a_non_empty_directory_is_refused_and_left_alone(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        run(keystrokes=1_000, clickhouse_dir=tmp_path, progress=False)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_no_keystrokes_is_refused():
    with pytest.raises(ValueError, match="keystrokes must be positive"):
        run(keystrokes=0, progress=False)


def test_the_command_names_a_bad_directory_and_writes_nothing(tmp_path, capsys):
    from cli.main import main

    (tmp_path / "keep.txt").write_text("mine")
    assert main(["bench", "tables", "--keystrokes", "1000", "--clickhouse-dir", str(tmp_path)]) == 1
    assert "is not empty; the benchmark needs a fresh chDB directory" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
