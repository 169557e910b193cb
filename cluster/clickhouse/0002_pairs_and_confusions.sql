-- GENERATED from app/clickhouse/migrations/0002_pairs_and_confusions.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

CREATE TABLE IF NOT EXISTS test_pair_stats_local ON CLUSTER '{cluster}'
(
    user_id              UInt64,
    test_id              String,
    started_at           DateTime64(3, 'UTC'),
    key                  String,
    presses              UInt32,
    errors               UInt32,
    timed_presses        UInt32,
    time_to_type_sum_ms  UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/test_pair_stats_local', '{replica}')
ORDER BY (user_id, key, test_id);

CREATE TABLE IF NOT EXISTS test_pair_stats ON CLUSTER '{cluster}' AS test_pair_stats_local
ENGINE = Distributed('{cluster}', currentDatabase(), test_pair_stats_local, cityHash64(user_id));

CREATE TABLE IF NOT EXISTS test_confusions_local ON CLUSTER '{cluster}'
(
    user_id     UInt64,
    test_id     String,
    started_at  DateTime64(3, 'UTC'),
    key         LowCardinality(String),
    typed       LowCardinality(String),
    count       UInt32
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/test_confusions_local', '{replica}')
ORDER BY (user_id, key, typed, test_id);

CREATE TABLE IF NOT EXISTS test_confusions ON CLUSTER '{cluster}' AS test_confusions_local
ENGINE = Distributed('{cluster}', currentDatabase(), test_confusions_local, cityHash64(user_id));
