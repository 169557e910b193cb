-- GENERATED from app/clickhouse/migrations/0011_per_test_key_and_pair_arrays.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

DROP VIEW IF EXISTS key_daily_mv ON CLUSTER '{cluster}';

DROP VIEW IF EXISTS pair_daily_mv ON CLUSTER '{cluster}';

CREATE TABLE IF NOT EXISTS test_keys_local ON CLUSTER '{cluster}'
(
    user_id              UInt64,
    test_id              String,
    started_at           DateTime64(3, 'UTC'),
    key                  Array(LowCardinality(String)),
    presses              Array(UInt32),
    errors               Array(UInt32),
    timed_presses        Array(UInt32),
    time_to_type_sum_ms  Array(UInt64),
    holds                Array(UInt32),
    hold_sum_ms          Array(UInt64),
    time_to_type_ms      Array(Array(UInt32)) CODEC(ZSTD(3))
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/test_keys_local', '{replica}')
ORDER BY (user_id, test_id)
SETTINGS index_granularity = 256;

CREATE TABLE IF NOT EXISTS test_keys ON CLUSTER '{cluster}' AS test_keys_local
ENGINE = Distributed('{cluster}', currentDatabase(), test_keys_local, cityHash64(user_id));

CREATE TABLE IF NOT EXISTS test_pairs_local ON CLUSTER '{cluster}'
(
    user_id              UInt64,
    test_id              String,
    started_at           DateTime64(3, 'UTC'),
    key                  Array(String),
    presses              Array(UInt32),
    errors               Array(UInt32),
    timed_presses        Array(UInt32),
    time_to_type_sum_ms  Array(UInt64),
    time_to_type_ms      Array(Array(UInt32)) CODEC(ZSTD(3))
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/test_pairs_local', '{replica}')
ORDER BY (user_id, test_id)
SETTINGS index_granularity = 256;

CREATE TABLE IF NOT EXISTS test_pairs ON CLUSTER '{cluster}' AS test_pairs_local
ENGINE = Distributed('{cluster}', currentDatabase(), test_pairs_local, cityHash64(user_id));

INSERT INTO test_keys
SELECT
    user_id,
    test_id,
    any(started_at),
    groupArray(key),
    groupArray(presses),
    groupArray(errors),
    groupArray(timed_presses),
    groupArray(time_to_type_sum_ms),
    groupArray(holds),
    groupArray(hold_sum_ms),
    groupArray(time_to_type_ms)
FROM (SELECT * FROM test_key_stats FINAL ORDER BY user_id, test_id, key)
GROUP BY user_id, test_id;

INSERT INTO test_pairs
SELECT
    user_id,
    test_id,
    any(started_at),
    groupArray(key),
    groupArray(presses),
    groupArray(errors),
    groupArray(timed_presses),
    groupArray(time_to_type_sum_ms),
    groupArray(time_to_type_ms)
FROM (SELECT * FROM test_pair_stats FINAL ORDER BY user_id, test_id, key)
GROUP BY user_id, test_id;
