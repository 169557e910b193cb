-- GENERATED from app/clickhouse/migrations/0001_keystrokes_and_results.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

CREATE TABLE IF NOT EXISTS keystrokes_local ON CLUSTER '{cluster}'
(
    user_id     UInt64,
    test_id     String,
    started_at  DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    seq         UInt16,
    key         LowCardinality(String),
    target      LowCardinality(String),   -- presented character at the typed position ('' if none)
    down_ms     UInt32 CODEC(Delta, ZSTD(1)),   -- ms from the test start
    hold_ms     Int32 CODEC(T64, ZSTD(1)),      -- release - press; -1 when the release is unknown
    iki_ms      Int32 CODEC(T64, ZSTD(1)),      -- time since the previous press; -1 for the first
    correct     UInt8
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/keystrokes_local', '{replica}')
PARTITION BY toYYYYMM(started_at)
ORDER BY (user_id, started_at, test_id, seq);

CREATE TABLE IF NOT EXISTS keystrokes ON CLUSTER '{cluster}' AS keystrokes_local
ENGINE = Distributed('{cluster}', currentDatabase(), keystrokes_local, cityHash64(user_id));

CREATE TABLE IF NOT EXISTS test_results_local ON CLUSTER '{cluster}'
(
    user_id                 UInt64,
    test_id                 String,
    started_at              DateTime64(3, 'UTC'),
    layout                  LowCardinality(String),
    language                LowCardinality(String),
    text                    String CODEC(ZSTD(3)),
    transcribed             String CODEC(ZSTD(3)),
    keystroke_count         UInt32,
    duration_ms             UInt32,
    wpm                     Float64,
    accuracy                Float64,
    uncorrected_error_rate  Float64,
    kspc                    Float64,
    mean_iki_ms             Float64,
    mean_hold_ms            Float64,
    rollover_ratio          Float64,
    kafka_partition         UInt32,
    kafka_offset            UInt64,
    ingested_at             DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/test_results_local', '{replica}')
ORDER BY (user_id, test_id);

CREATE TABLE IF NOT EXISTS test_results ON CLUSTER '{cluster}' AS test_results_local
ENGINE = Distributed('{cluster}', currentDatabase(), test_results_local, cityHash64(user_id));

CREATE TABLE IF NOT EXISTS test_key_stats_local ON CLUSTER '{cluster}'
(
    user_id              UInt64,
    test_id              String,
    started_at           DateTime64(3, 'UTC'),
    key                  LowCardinality(String),
    presses              UInt32,
    errors               UInt32,
    timed_presses        UInt32,
    time_to_type_sum_ms  UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/test_key_stats_local', '{replica}')
ORDER BY (user_id, key, test_id);

CREATE TABLE IF NOT EXISTS test_key_stats ON CLUSTER '{cluster}' AS test_key_stats_local
ENGINE = Distributed('{cluster}', currentDatabase(), test_key_stats_local, cityHash64(user_id));

CREATE TABLE IF NOT EXISTS ingest_offsets_local ON CLUSTER '{cluster}'
(
    consumer_group  String,
    topic           String,
    partition       UInt32,
    next_offset     UInt64,
    updated_at      DateTime64(6, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/ingest_offsets_local', '{replica}', updated_at)
ORDER BY (consumer_group, topic, partition);

CREATE TABLE IF NOT EXISTS ingest_offsets ON CLUSTER '{cluster}' AS ingest_offsets_local
ENGINE = Distributed('{cluster}', currentDatabase(), ingest_offsets_local, cityHash64(consumer_group, topic, partition));
