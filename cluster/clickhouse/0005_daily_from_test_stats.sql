-- GENERATED from app/clickhouse/migrations/0005_daily_from_test_stats.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

DROP VIEW IF EXISTS key_daily_mv ON CLUSTER '{cluster}';

DROP VIEW IF EXISTS pair_daily_mv ON CLUSTER '{cluster}';

DROP TABLE IF EXISTS key_daily ON CLUSTER '{cluster}';

DROP TABLE IF EXISTS key_daily_local ON CLUSTER '{cluster}';

DROP TABLE IF EXISTS pair_daily ON CLUSTER '{cluster}';

DROP TABLE IF EXISTS pair_daily_local ON CLUSTER '{cluster}';

ALTER TABLE test_key_stats_local ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS holds UInt32,
    ADD COLUMN IF NOT EXISTS hold_sum_ms UInt64,
    ADD COLUMN IF NOT EXISTS time_to_type_ms Array(UInt32) CODEC(ZSTD(3));

ALTER TABLE test_key_stats ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS holds UInt32,
    ADD COLUMN IF NOT EXISTS hold_sum_ms UInt64,
    ADD COLUMN IF NOT EXISTS time_to_type_ms Array(UInt32);

ALTER TABLE test_pair_stats_local ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS time_to_type_ms Array(UInt32) CODEC(ZSTD(3));

ALTER TABLE test_pair_stats ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS time_to_type_ms Array(UInt32);

CREATE TABLE IF NOT EXISTS key_daily_local ON CLUSTER '{cluster}'
(
    user_id            UInt64,
    key                LowCardinality(String),
    day                Date,
    presses            SimpleAggregateFunction(sum, UInt64),
    errors             SimpleAggregateFunction(sum, UInt64),
    timed_presses      SimpleAggregateFunction(sum, UInt64),
    time_to_type_sum   SimpleAggregateFunction(sum, UInt64),
    time_to_type       AggregateFunction(quantilesTiming(0.5, 0.95), UInt32),
    holds              SimpleAggregateFunction(sum, UInt64),
    hold_sum           SimpleAggregateFunction(sum, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/key_daily_local', '{replica}')
ORDER BY (user_id, key, day);

CREATE TABLE IF NOT EXISTS key_daily ON CLUSTER '{cluster}' AS key_daily_local
ENGINE = Distributed('{cluster}', currentDatabase(), key_daily_local, cityHash64(user_id));

CREATE MATERIALIZED VIEW IF NOT EXISTS key_daily_mv ON CLUSTER '{cluster}' TO key_daily_local AS
SELECT
    user_id,
    key,
    toDate(started_at) AS day,
    presses,
    errors,
    timed_presses,
    time_to_type_sum_ms AS time_to_type_sum,
    arrayReduce('quantilesTimingState(0.5, 0.95)', time_to_type_ms) AS time_to_type,
    holds,
    hold_sum_ms AS hold_sum
FROM test_key_stats_local;

CREATE TABLE IF NOT EXISTS pair_daily_local ON CLUSTER '{cluster}'
(
    user_id            UInt64,
    pair               String,
    day                Date,
    presses            SimpleAggregateFunction(sum, UInt64),
    errors             SimpleAggregateFunction(sum, UInt64),
    timed_presses      SimpleAggregateFunction(sum, UInt64),
    time_to_type_sum   SimpleAggregateFunction(sum, UInt64),
    time_to_type       AggregateFunction(quantilesTiming(0.5, 0.95), UInt32)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/pair_daily_local', '{replica}')
ORDER BY (user_id, pair, day);

CREATE TABLE IF NOT EXISTS pair_daily ON CLUSTER '{cluster}' AS pair_daily_local
ENGINE = Distributed('{cluster}', currentDatabase(), pair_daily_local, cityHash64(user_id));

CREATE MATERIALIZED VIEW IF NOT EXISTS pair_daily_mv ON CLUSTER '{cluster}' TO pair_daily_local AS
SELECT
    user_id,
    key AS pair,
    toDate(started_at) AS day,
    presses,
    errors,
    timed_presses,
    time_to_type_sum_ms AS time_to_type_sum,
    arrayReduce('quantilesTimingState(0.5, 0.95)', time_to_type_ms) AS time_to_type
FROM test_pair_stats_local;

INSERT INTO key_daily
SELECT
    user_id,
    target AS key,
    toDate(started_at) AS day,
    count(),
    countIf(correct = 0),
    countIf(iki_ms >= 0),
    sumIf(toUInt64(greatest(iki_ms, 0)), iki_ms >= 0),
    quantilesTimingStateIf(0.5, 0.95)(toUInt32(greatest(iki_ms, 0)), iki_ms >= 0),
    countIf(hold_ms >= 0),
    sumIf(toUInt64(greatest(hold_ms, 0)), hold_ms >= 0)
FROM keystrokes FINAL
WHERE target != ''
GROUP BY user_id, key, day;

INSERT INTO pair_daily
SELECT
    user_id,
    concat(prev_target, target) AS pair,
    toDate(started_at) AS day,
    count(),
    countIf(correct = 0),
    countIf(clean_transition = 1),
    sumIf(toUInt64(greatest(iki_ms, 0)), clean_transition = 1),
    quantilesTimingStateIf(0.5, 0.95)(toUInt32(greatest(iki_ms, 0)), clean_transition = 1)
FROM keystrokes FINAL
WHERE target != '' AND prev_target != ''
GROUP BY user_id, pair, day;
