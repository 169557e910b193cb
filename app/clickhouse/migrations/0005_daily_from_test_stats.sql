-- The daily per-key and per-pair aggregates, made cheaper to keep up at ingest speed (`keyscope bench ingest`).
--
-- 1. Fed by the per-test stats instead of the raw keystrokes. The views grouped every inserted keystroke by
--    (user, key or pair, day), and a user presses one pair a few times a day, so nearly every group was new and
--    the grouping cost about a microsecond a keystroke. The per-test rows already hold those sums (the ingest
--    job computes them), so the views only copy each row, with its times to type as a quantile state. A test's
--    stats rows are written once (app/clickhouse/store.py), so the aggregates stay exact.
-- 2. quantilesTiming states instead of quantilesTDigest: ClickHouse's estimator for times in ms (exact up to
--    5,670 values or below 1,024 ms, else to 16 ms; a value over 30 s counts as 30 s). A state of a few values
--    is a short array, where a t-digest builds, and on every merge re-merges, centroids.
-- On 2 M simulated keystrokes, inserting the raw keystrokes through the old views took 4.4 CPU seconds and
-- merging the new parts once 2.0; with quantilesTiming alone 3.4 and 0.8.
-- A state of one function cannot become a state of another, so both tables are rebuilt from the keystrokes.
DROP VIEW IF EXISTS key_daily_mv;
DROP VIEW IF EXISTS pair_daily_mv;
DROP TABLE IF EXISTS key_daily;
DROP TABLE IF EXISTS pair_daily;

-- Each timed press's time to type, and for keys the presses with a known hold time and their sum (rows written
-- before this migration have none: their tests are in the rebuilt aggregates already).
ALTER TABLE test_key_stats
    ADD COLUMN IF NOT EXISTS holds UInt32,
    ADD COLUMN IF NOT EXISTS hold_sum_ms UInt64,
    ADD COLUMN IF NOT EXISTS time_to_type_ms Array(UInt32) CODEC(ZSTD(3));

ALTER TABLE test_pair_stats
    ADD COLUMN IF NOT EXISTS time_to_type_ms Array(UInt32) CODEC(ZSTD(3));

CREATE TABLE IF NOT EXISTS key_daily
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
ENGINE = AggregatingMergeTree
ORDER BY (user_id, key, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS key_daily_mv TO key_daily AS
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
FROM test_key_stats;

CREATE TABLE IF NOT EXISTS pair_daily
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
ENGINE = AggregatingMergeTree
ORDER BY (user_id, pair, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS pair_daily_mv TO pair_daily AS
SELECT
    user_id,
    key AS pair,
    toDate(started_at) AS day,
    presses,
    errors,
    timed_presses,
    time_to_type_sum_ms AS time_to_type_sum,
    arrayReduce('quantilesTimingState(0.5, 0.95)', time_to_type_ms) AS time_to_type
FROM test_pair_stats;

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
