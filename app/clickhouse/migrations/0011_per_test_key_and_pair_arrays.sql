-- The per-test key and letter-pair stats as one row per test, each stat an array over the test's keys or pairs, and
-- the per-user aggregates computed from those rows when read instead of kept by materialized views.
--
-- Why (`keyscope bench tables`): a test of ~140 keystrokes has ~30 presented keys and ~60 letter pairs, so
-- test_key_stats and test_pair_stats took 0.75 rows per keystroke, and their views fed key_daily / pair_daily one
-- more row each. Sorting, writing and merging those rows cost ClickHouse more than the raw keystrokes did. One row
-- per test holds the same values in fewer bytes (ZSTD on arrays of one test's values) for a fraction of
-- the work; the figures are in README "The ceiling on 2 cores".
--
-- Reads. Insights and the warehouse export want a user's (or a day's) stats per key or pair: `ARRAY JOIN` turns
-- the rows back into one per (test, unit), and `quantilesTimingArray` over the per-press times gives the same
-- median and p95 as merging the daily views' quantilesTiming states did (same estimator, same values). A user's
-- rows are one primary-key range. No PARTITION BY: a typist's tests span many months, and every month's part is one
-- more to open on each read. A granule is 256 tests instead of 8,192, about as many array elements as a granule of
-- the old per-unit rows held, so a one-test typist's read does not decompress 8,192 tests' arrays. (Read times
-- with and without both choices: README "The ceiling on 2 cores".)
--
-- Exactness. Both tables are keyed by the test (ReplacingMergeTree on (user_id, test_id)), so a test written twice
-- is one test once merged, and FINAL reads count it once; the daily views relied on each row being inserted
-- exactly once instead.
--
-- Tests stored before migration 0005 have no per-press times (their quantiles lived only in the daily views): they
-- keep their counts, errors and sums, and the medians and p95s are computed from the tests since 0005.
--
-- Stop ingest jobs of the previous version first: they write the old tables. The views go first so the old tables
-- stop feeding the daily ones; migration 0012 drops the old tables once these hold their rows. Re-running this
-- file after a stop part-way is harmless: the copies replace each other.
DROP VIEW IF EXISTS key_daily_mv;
DROP VIEW IF EXISTS pair_daily_mv;

CREATE TABLE IF NOT EXISTS test_keys
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
ENGINE = ReplacingMergeTree
ORDER BY (user_id, test_id)
SETTINGS index_granularity = 256;

CREATE TABLE IF NOT EXISTS test_pairs
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
ENGINE = ReplacingMergeTree
ORDER BY (user_id, test_id)
SETTINGS index_granularity = 256;

-- The groupArrays of one GROUP BY take each group's rows in one order, so the arrays stay parallel.
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
