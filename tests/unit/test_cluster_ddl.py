"""The cluster variant of the migrations: current with the migrations, and every statement parses."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.clickhouse.client import clickhouse_client
from app.clickhouse.cluster_ddl import cluster_statements, render
from app.clickhouse.migrate import Migration, load_migrations

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
