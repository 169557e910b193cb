-- Per test and presented letter pair (`key` holds both characters): presses of the second character at its
-- position, errors, and the transition time when the first character was typed correctly just before.
CREATE TABLE IF NOT EXISTS test_pair_stats
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
ENGINE = ReplacingMergeTree
ORDER BY (user_id, key, test_id);

-- Which key was typed where another was presented, per test.
CREATE TABLE IF NOT EXISTS test_confusions
(
    user_id     UInt64,
    test_id     String,
    started_at  DateTime64(3, 'UTC'),
    key         LowCardinality(String),
    typed       LowCardinality(String),
    count       UInt32
)
ENGINE = ReplacingMergeTree
ORDER BY (user_id, key, typed, test_id);
