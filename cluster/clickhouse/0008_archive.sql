-- GENERATED from app/clickhouse/migrations/0008_archive.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

CREATE TABLE IF NOT EXISTS keystrokes_archiving_local ON CLUSTER '{cluster}'
(
    user_id           UInt64 CODEC(ZSTD(3)),
    test_id           String CODEC(ZSTD(3)),
    started_at        DateTime64(3, 'UTC') CODEC(ZSTD(3)),
    seq               UInt16 CODEC(Delta, ZSTD(3)),
    key               LowCardinality(String) CODEC(ZSTD(9)),
    target            LowCardinality(String) CODEC(ZSTD(9)),
    hold_ms           Int32 CODEC(T64('byte'), ZSTD(9)),
    iki_ms            Int32 CODEC(T64('bit'), ZSTD(9)),
    correct           UInt8 CODEC(T64, ZSTD(1)),
    clean_transition  UInt8 CODEC(T64, ZSTD(1))
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/keystrokes_archiving_local', '{replica}')
PARTITION BY toYYYYMM(started_at)
ORDER BY (user_id, started_at, test_id, seq);

CREATE TABLE IF NOT EXISTS keystrokes_archiving ON CLUSTER '{cluster}' AS keystrokes_archiving_local
ENGINE = Distributed('{cluster}', currentDatabase(), keystrokes_archiving_local, cityHash64(user_id));

CREATE TABLE IF NOT EXISTS archive_manifest_local ON CLUSTER '{cluster}'
(
    day          Date,
    bucket       UInt8,
    path         String,
    rows         UInt64,
    bytes        UInt64,
    sha256       String,
    deleted      UInt8,
    archived_at  DateTime64(6, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/archive_manifest_local', '{replica}', archived_at)
ORDER BY (day, bucket);

CREATE TABLE IF NOT EXISTS archive_manifest ON CLUSTER '{cluster}' AS archive_manifest_local
ENGINE = Distributed('{cluster}', currentDatabase(), archive_manifest_local, cityHash64(day, bucket));

CREATE TABLE IF NOT EXISTS archive_state_local ON CLUSTER '{cluster}'
(
    name        String,
    value       String,
    updated_at  DateTime64(6, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/archive_state_local', '{replica}', updated_at)
ORDER BY name;

CREATE TABLE IF NOT EXISTS archive_state ON CLUSTER '{cluster}' AS archive_state_local
ENGINE = Distributed('{cluster}', currentDatabase(), archive_state_local, cityHash64(name));
