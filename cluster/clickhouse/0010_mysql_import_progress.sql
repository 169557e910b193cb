-- GENERATED from app/clickhouse/migrations/0010_mysql_import_progress.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

CREATE TABLE IF NOT EXISTS mysql_import_progress_local ON CLUSTER '{cluster}'
(
    source        String,
    source_table  String,
    last_id       Int128,   -- signed and unsigned BIGINT keys both fit
    updated_at    DateTime64(6, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/mysql_import_progress_local', '{replica}', updated_at)
ORDER BY (source, source_table);

CREATE TABLE IF NOT EXISTS mysql_import_progress ON CLUSTER '{cluster}' AS mysql_import_progress_local
ENGINE = Distributed('{cluster}', currentDatabase(), mysql_import_progress_local, cityHash64(source, source_table));

CREATE TABLE IF NOT EXISTS mysql_import_rejections_local ON CLUSTER '{cluster}'
(
    source        String,
    source_table  String,
    row_id        Int128,
    reason        String,
    rejected_at   DateTime64(6, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/mysql_import_rejections_local', '{replica}', rejected_at)
ORDER BY (source, source_table, row_id);

CREATE TABLE IF NOT EXISTS mysql_import_rejections ON CLUSTER '{cluster}' AS mysql_import_rejections_local
ENGINE = Distributed('{cluster}', currentDatabase(), mysql_import_rejections_local, cityHash64(source, source_table, row_id));
