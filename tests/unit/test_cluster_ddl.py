"""The cluster variant of the migrations: current with the migrations, every statement parses, it creates the
local schema's columns, and the schema job applies only what a cluster has not recorded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.clickhouse.client import clickhouse_client
from app.clickhouse.cluster_ddl import (
    CLUSTER,
    SCHEMA_MIGRATIONS_DDL,
    SYNC_SCHEMA_MIGRATIONS,
    cluster_statements,
    pending_cluster_statements,
    render,
)
from app.clickhouse.migrate import Migration, apply_migrations, load_migrations

CLUSTER_DIR = Path(__file__).resolve().parents[2] / "cluster" / "clickhouse"


def test_generated_files_are_current():
    for migration in load_migrations():
        path = CLUSTER_DIR / f"{migration.version:04d}_{migration.name}.sql"
        assert path.exists(), f"run `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse` ({path.name})"
        assert path.read_text() == render(migration), f"{path.name} is stale: regenerate it"


def test_every_table_is_replicated_and_distributed_by_user():
    text = "".join(render(m) for m in load_migrations())
    for table in ("keystrokes", "test_results", "test_keys", "test_pairs", "test_confusions", "user_insights"):
        assert f"CREATE TABLE IF NOT EXISTS {table}_local ON CLUSTER '{{cluster}}'" in text
        assert f"ENGINE = Distributed('{{cluster}}', currentDatabase(), {table}_local, cityHash64(user_id))" in text
    assert "TO key_daily_local AS" in text and "FROM keystrokes_local" in text  # 0003's view, dropped in 0011
    assert "DROP TABLE IF EXISTS test_key_stats_local ON CLUSTER '{cluster}'" in text
    assert "ENGINE = ReplacingMergeTree" not in text and "ENGINE = AggregatingMergeTree" not in text


def test_every_statement_parses_as_clickhouse_sql(tmp_path):
    client = clickhouse_client(f"chdb://{tmp_path / 'ch'}")
    try:
        for migration in load_migrations():
            for statement in cluster_statements(migration):
                formatted = client.query("SELECT formatQuery({sql:String})", parameters={"sql": statement})
                assert formatted.result_rows[0][0], statement[:80]
    finally:
        client.close()


def test_a_statement_without_a_cluster_form_is_an_error():
    with pytest.raises(ValueError, match="no cluster form"):
        cluster_statements(Migration(99, "drop", "DROP TABLE keystrokes;"))


def test_column_changes_reach_the_distributed_table_and_data_changes_do_not():
    statements = cluster_statements(
        Migration(
            99,
            "alter",
            "ALTER TABLE keystrokes\n    DROP COLUMN IF EXISTS a,\n    MODIFY COLUMN b CODEC(ZSTD(1)),\n"
            "    COMMENT COLUMN c 'why';\n"
            "ALTER TABLE keystrokes UPDATE c = 1 WHERE d = 0 SETTINGS mutations_sync = 2;\n",
        )
    )
    assert statements == [
        "ALTER TABLE keystrokes_local ON CLUSTER '{cluster}'\n    DROP COLUMN IF EXISTS a,\n"
        "    MODIFY COLUMN b CODEC(ZSTD(1)),\n    COMMENT COLUMN c 'why'",
        "ALTER TABLE keystrokes ON CLUSTER '{cluster}'\n    DROP COLUMN IF EXISTS a,\n    COMMENT COLUMN c 'why'",
        "ALTER TABLE keystrokes_local ON CLUSTER '{cluster}' UPDATE c = 1 WHERE d = 0 SETTINGS mutations_sync = 2",
    ]


def test_the_model_registry_tables_are_replicated_and_sharded_by_their_key():
    # No user_id (no user data): sharded by their sorting keys; the registry reads them through the Distributed
    # tables, which gather every shard.
    text = render(next(m for m in load_migrations() if m.name == "model_registry"))
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/model_versions_local'" in text
    assert "Distributed('{cluster}', currentDatabase(), model_versions_local, cityHash64(model, version))" in text
    assert "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/model_promotions_local'" in text
    assert "Distributed('{cluster}', currentDatabase(), model_promotions_local, cityHash64(model, promoted_at))" in text
    assert "user_id" not in text


def _one_server_form(statement: str) -> str:
    """A cluster statement as a single server without Keeper or a cluster runs it: no ON CLUSTER, each Replicated
    engine its plain form, each Distributed table a copy of its local table (`CREATE TABLE t AS t_local` without an
    engine takes the local table's), which the backfills can read with FINAL and insert into."""
    statement = statement.replace(f" ON CLUSTER {CLUSTER}", "")
    statement = re.sub(r"Replicated(\w*MergeTree)\('[^']*', '\{replica\}'(?:, )?", r"\1(", statement)
    return re.sub(r"\s*ENGINE = Distributed\(.*\)$", "", statement, flags=re.S)


def _tables(client, database: str) -> dict[str, list[tuple]]:
    rows = client.query(
        "SELECT c.table, c.name, c.type, c.default_kind, c.default_expression, c.compression_codec "
        "FROM system.columns AS c JOIN system.tables AS t ON c.database = t.database AND c.table = t.name "
        "WHERE c.database = {d:String} AND t.engine NOT LIKE '%View' AND c.table != 'schema_migrations' "
        "ORDER BY c.table, c.position",
        parameters={"d": database},
    ).result_rows
    tables: dict[str, list[tuple]] = {}
    for table, *column in rows:
        tables.setdefault(table, []).append(tuple(column))
    return tables


def test_the_cluster_ddl_creates_the_columns_of_the_local_migrations(tmp_path):
    """Applied in order, the cluster statements leave every table `t` of the local schema as `t_local` with the same
    columns, types, defaults and codecs, and the Distributed `t` with the same names and types."""
    path = tmp_path / "ch"
    admin = clickhouse_client(f"chdb://{path}")
    admin.command("CREATE DATABASE local_form")
    admin.command("CREATE DATABASE cluster_form")
    local = clickhouse_client(f"chdb://{path}", database="local_form")
    clustered = clickhouse_client(f"chdb://{path}", database="cluster_form")
    try:
        apply_migrations(local)
        for migration in load_migrations():
            for statement in cluster_statements(migration):
                clustered.command(_one_server_form(statement))
        local_tables, cluster_tables = _tables(admin, "local_form"), _tables(admin, "cluster_form")
        assert local_tables, "the local migrations created no table"
        expected = {**local_tables, **{f"{name}_local": columns for name, columns in local_tables.items()}}
        assert sorted(cluster_tables) == sorted(expected)
        for name, columns in local_tables.items():
            assert cluster_tables[f"{name}_local"] == columns, name
            assert [c[:2] for c in cluster_tables[name]] == [c[:2] for c in columns], name
    finally:
        for client in (local, clustered, admin):
            client.close()


def test_the_schema_job_runs_only_what_the_cluster_has_not_recorded(tmp_path):
    """A new cluster gets every migration's cluster statements; one whose schema_migrations records the local
    migrations' checksums (what the schema job writes) gets none, so the jobs' own apply_migrations finds nothing."""
    client = clickhouse_client(f"chdb://{tmp_path / 'ch'}")
    try:
        pending = pending_cluster_statements(client)
        assert [m.version for m, _ in pending] == [m.version for m in load_migrations()]
        assert all(statements == cluster_statements(m) for m, statements in pending)
        assert not client.command("EXISTS TABLE schema_migrations"), "listing what is pending must change nothing"
        apply_migrations(client)  # records each version under the checksum the schema job records too
        assert pending_cluster_statements(client) == []
        client.command("ALTER TABLE schema_migrations UPDATE checksum = 'edited' WHERE version = 1 "
                       "SETTINGS mutations_sync = 2")
        with pytest.raises(RuntimeError, match="changed after it was applied"):
            pending_cluster_statements(client)
    finally:
        client.close()


def test_the_schema_bookkeeping_is_replicated_across_every_shard_and_parses(tmp_path):
    # One replication path for the whole cluster (no {shard}): every node holds every recorded version.
    assert "'/clickhouse/tables/all/{database}/schema_migrations', '{replica}'" in SCHEMA_MIGRATIONS_DDL
    assert "{shard}" not in SCHEMA_MIGRATIONS_DDL
    client = clickhouse_client(f"chdb://{tmp_path / 'ch'}")
    try:
        for statement in (SCHEMA_MIGRATIONS_DDL, SYNC_SCHEMA_MIGRATIONS):
            formatted = client.query("SELECT formatQuery({sql:String})", parameters={"sql": statement})
            assert formatted.result_rows[0][0]
    finally:
        client.close()
