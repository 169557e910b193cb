-- Raw keystrokes, one row per key press. ReplacingMergeTree on the full key makes a re-written test
-- (after a crash between the write and the offset store) collapse to one copy.
CREATE TABLE IF NOT EXISTS keystrokes
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
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (user_id, started_at, test_id, seq);

-- One row per test with its metrics. Keyed by (user_id, test_id) so a re-sent test stays one test.
CREATE TABLE IF NOT EXISTS test_results
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
ENGINE = ReplacingMergeTree
ORDER BY (user_id, test_id);

-- Per test and presented key: the additive facts insights aggregate, so a user's per-key table is a
-- sum over a few rows per test instead of a scan of raw keystrokes.
CREATE TABLE IF NOT EXISTS test_key_stats
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
ENGINE = ReplacingMergeTree
ORDER BY (user_id, key, test_id);

-- Next Kafka offset to read per partition, written only after the data it covers is stored.
CREATE TABLE IF NOT EXISTS ingest_offsets
(
    consumer_group  String,
    topic           String,
    partition       UInt32,
    next_offset     UInt64,
    updated_at      DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (consumer_group, topic, partition);
