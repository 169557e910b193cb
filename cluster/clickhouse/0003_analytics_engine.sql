-- GENERATED from app/clickhouse/migrations/0003_analytics_engine.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

ALTER TABLE test_results_local ON CLUSTER '{cluster}'
    MODIFY COLUMN wpm Nullable(Float64),
    MODIFY COLUMN accuracy Nullable(Float64),
    MODIFY COLUMN uncorrected_error_rate Nullable(Float64),
    MODIFY COLUMN kspc Nullable(Float64),
    MODIFY COLUMN mean_iki_ms Nullable(Float64),
    MODIFY COLUMN mean_hold_ms Nullable(Float64),
    MODIFY COLUMN rollover_ratio Nullable(Float64),
    ADD COLUMN IF NOT EXISTS raw_wpm Nullable(Float64) AFTER rollover_ratio,
    ADD COLUMN IF NOT EXISTS net_wpm Nullable(Float64) AFTER raw_wpm,
    ADD COLUMN IF NOT EXISTS corrected_error_rate Nullable(Float64) AFTER net_wpm,
    ADD COLUMN IF NOT EXISTS total_error_rate Nullable(Float64) AFTER corrected_error_rate,
    ADD COLUMN IF NOT EXISTS ecpc Nullable(Float64) AFTER total_error_rate,
    ADD COLUMN IF NOT EXISTS median_iki_ms Nullable(Float64) AFTER ecpc,
    ADD COLUMN IF NOT EXISTS consistency Nullable(Float64) AFTER median_iki_ms,
    ADD COLUMN IF NOT EXISTS key_consistency Nullable(Float64) AFTER consistency,
    ADD COLUMN IF NOT EXISTS iki_cv Nullable(Float64) AFTER key_consistency,
    ADD COLUMN IF NOT EXISTS slowdown Nullable(Float64) AFTER iki_cv,
    ADD COLUMN IF NOT EXISTS health_score Nullable(Float64) AFTER slowdown,
    ADD COLUMN IF NOT EXISTS health_speed Nullable(Float64) AFTER health_score,
    ADD COLUMN IF NOT EXISTS health_accuracy Nullable(Float64) AFTER health_speed,
    ADD COLUMN IF NOT EXISTS health_consistency Nullable(Float64) AFTER health_accuracy,
    ADD COLUMN IF NOT EXISTS health_rhythm Nullable(Float64) AFTER health_consistency,
    ADD COLUMN IF NOT EXISTS health_fatigue Nullable(Float64) AFTER health_rhythm,
    ADD COLUMN IF NOT EXISTS chars_correct UInt32 AFTER health_fatigue,
    ADD COLUMN IF NOT EXISTS chars_incorrect UInt32 AFTER chars_correct,
    ADD COLUMN IF NOT EXISTS chars_extra UInt32 AFTER chars_incorrect,
    ADD COLUMN IF NOT EXISTS chars_missed UInt32 AFTER chars_extra,
    ADD COLUMN IF NOT EXISTS c_correct UInt32 AFTER chars_missed,
    ADD COLUMN IF NOT EXISTS inf UInt32 AFTER c_correct,
    ADD COLUMN IF NOT EXISTS if_ UInt32 AFTER inf,
    ADD COLUMN IF NOT EXISTS corrections UInt32 AFTER if_,
    ADD COLUMN IF NOT EXISTS hesitations UInt32 AFTER corrections,
    ADD COLUMN IF NOT EXISTS hesitations_word_start UInt32 AFTER hesitations,
    ADD COLUMN IF NOT EXISTS hesitations_after_error UInt32 AFTER hesitations_word_start,
    ADD COLUMN IF NOT EXISTS transpositions UInt32 AFTER hesitations_after_error,
    ADD COLUMN IF NOT EXISTS doubled_letters UInt32 AFTER transpositions,
    ADD COLUMN IF NOT EXISTS dropped_letters UInt32 AFTER doubled_letters,
    ADD COLUMN IF NOT EXISTS error_bursts UInt32 AFTER dropped_letters,
    ADD COLUMN IF NOT EXISTS errors_by_finger Array(UInt32) AFTER error_bursts,
    ADD COLUMN IF NOT EXISTS errors_by_hand Array(UInt32) AFTER errors_by_finger,
    ADD COLUMN IF NOT EXISTS errors_by_row Array(UInt32) AFTER errors_by_hand,
    ADD COLUMN IF NOT EXISTS per_second_wpm Array(Float32) CODEC(ZSTD(1)) AFTER errors_by_row,
    ADD COLUMN IF NOT EXISTS word_burst_wpm Array(Float32) CODEC(ZSTD(1)) AFTER per_second_wpm;

ALTER TABLE test_results ON CLUSTER '{cluster}'
    MODIFY COLUMN wpm Nullable(Float64),
    MODIFY COLUMN accuracy Nullable(Float64),
    MODIFY COLUMN uncorrected_error_rate Nullable(Float64),
    MODIFY COLUMN kspc Nullable(Float64),
    MODIFY COLUMN mean_iki_ms Nullable(Float64),
    MODIFY COLUMN mean_hold_ms Nullable(Float64),
    MODIFY COLUMN rollover_ratio Nullable(Float64),
    ADD COLUMN IF NOT EXISTS raw_wpm Nullable(Float64) AFTER rollover_ratio,
    ADD COLUMN IF NOT EXISTS net_wpm Nullable(Float64) AFTER raw_wpm,
    ADD COLUMN IF NOT EXISTS corrected_error_rate Nullable(Float64) AFTER net_wpm,
    ADD COLUMN IF NOT EXISTS total_error_rate Nullable(Float64) AFTER corrected_error_rate,
    ADD COLUMN IF NOT EXISTS ecpc Nullable(Float64) AFTER total_error_rate,
    ADD COLUMN IF NOT EXISTS median_iki_ms Nullable(Float64) AFTER ecpc,
    ADD COLUMN IF NOT EXISTS consistency Nullable(Float64) AFTER median_iki_ms,
    ADD COLUMN IF NOT EXISTS key_consistency Nullable(Float64) AFTER consistency,
    ADD COLUMN IF NOT EXISTS iki_cv Nullable(Float64) AFTER key_consistency,
    ADD COLUMN IF NOT EXISTS slowdown Nullable(Float64) AFTER iki_cv,
    ADD COLUMN IF NOT EXISTS health_score Nullable(Float64) AFTER slowdown,
    ADD COLUMN IF NOT EXISTS health_speed Nullable(Float64) AFTER health_score,
    ADD COLUMN IF NOT EXISTS health_accuracy Nullable(Float64) AFTER health_speed,
    ADD COLUMN IF NOT EXISTS health_consistency Nullable(Float64) AFTER health_accuracy,
    ADD COLUMN IF NOT EXISTS health_rhythm Nullable(Float64) AFTER health_consistency,
    ADD COLUMN IF NOT EXISTS health_fatigue Nullable(Float64) AFTER health_rhythm,
    ADD COLUMN IF NOT EXISTS chars_correct UInt32 AFTER health_fatigue,
    ADD COLUMN IF NOT EXISTS chars_incorrect UInt32 AFTER chars_correct,
    ADD COLUMN IF NOT EXISTS chars_extra UInt32 AFTER chars_incorrect,
    ADD COLUMN IF NOT EXISTS chars_missed UInt32 AFTER chars_extra,
    ADD COLUMN IF NOT EXISTS c_correct UInt32 AFTER chars_missed,
    ADD COLUMN IF NOT EXISTS inf UInt32 AFTER c_correct,
    ADD COLUMN IF NOT EXISTS if_ UInt32 AFTER inf,
    ADD COLUMN IF NOT EXISTS corrections UInt32 AFTER if_,
    ADD COLUMN IF NOT EXISTS hesitations UInt32 AFTER corrections,
    ADD COLUMN IF NOT EXISTS hesitations_word_start UInt32 AFTER hesitations,
    ADD COLUMN IF NOT EXISTS hesitations_after_error UInt32 AFTER hesitations_word_start,
    ADD COLUMN IF NOT EXISTS transpositions UInt32 AFTER hesitations_after_error,
    ADD COLUMN IF NOT EXISTS doubled_letters UInt32 AFTER transpositions,
    ADD COLUMN IF NOT EXISTS dropped_letters UInt32 AFTER doubled_letters,
    ADD COLUMN IF NOT EXISTS error_bursts UInt32 AFTER dropped_letters,
    ADD COLUMN IF NOT EXISTS errors_by_finger Array(UInt32) AFTER error_bursts,
    ADD COLUMN IF NOT EXISTS errors_by_hand Array(UInt32) AFTER errors_by_finger,
    ADD COLUMN IF NOT EXISTS errors_by_row Array(UInt32) AFTER errors_by_hand,
    ADD COLUMN IF NOT EXISTS per_second_wpm Array(Float32) AFTER errors_by_row,
    ADD COLUMN IF NOT EXISTS word_burst_wpm Array(Float32) AFTER per_second_wpm;

ALTER TABLE keystrokes_local ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS prev_target LowCardinality(String) DEFAULT '' AFTER target,
    ADD COLUMN IF NOT EXISTS clean_transition UInt8 DEFAULT 0 AFTER correct;

ALTER TABLE keystrokes ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS prev_target LowCardinality(String) DEFAULT '' AFTER target,
    ADD COLUMN IF NOT EXISTS clean_transition UInt8 DEFAULT 0 AFTER correct;

CREATE TABLE IF NOT EXISTS key_daily_local ON CLUSTER '{cluster}'
(
    user_id            UInt64,
    key                LowCardinality(String),
    day                Date,
    presses            SimpleAggregateFunction(sum, UInt64),
    errors             SimpleAggregateFunction(sum, UInt64),
    timed_presses      SimpleAggregateFunction(sum, UInt64),
    time_to_type_sum   SimpleAggregateFunction(sum, UInt64),
    time_to_type       AggregateFunction(quantilesTDigest(0.5, 0.95), UInt32),
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
    target AS key,
    toDate(started_at) AS day,
    count() AS presses,
    countIf(correct = 0) AS errors,
    countIf(iki_ms >= 0) AS timed_presses,
    sumIf(toUInt64(greatest(iki_ms, 0)), iki_ms >= 0) AS time_to_type_sum,
    quantilesTDigestStateIf(0.5, 0.95)(toUInt32(greatest(iki_ms, 0)), iki_ms >= 0) AS time_to_type,
    countIf(hold_ms >= 0) AS holds,
    sumIf(toUInt64(greatest(hold_ms, 0)), hold_ms >= 0) AS hold_sum
FROM keystrokes_local
WHERE target != ''
GROUP BY user_id, key, day;

CREATE TABLE IF NOT EXISTS pair_daily_local ON CLUSTER '{cluster}'
(
    user_id            UInt64,
    pair               String,
    day                Date,
    presses            SimpleAggregateFunction(sum, UInt64),
    errors             SimpleAggregateFunction(sum, UInt64),
    timed_presses      SimpleAggregateFunction(sum, UInt64),
    time_to_type_sum   SimpleAggregateFunction(sum, UInt64),
    time_to_type       AggregateFunction(quantilesTDigest(0.5, 0.95), UInt32)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/pair_daily_local', '{replica}')
ORDER BY (user_id, pair, day);

CREATE TABLE IF NOT EXISTS pair_daily ON CLUSTER '{cluster}' AS pair_daily_local
ENGINE = Distributed('{cluster}', currentDatabase(), pair_daily_local, cityHash64(user_id));

CREATE MATERIALIZED VIEW IF NOT EXISTS pair_daily_mv ON CLUSTER '{cluster}' TO pair_daily_local AS
SELECT
    user_id,
    concat(prev_target, target) AS pair,
    toDate(started_at) AS day,
    count() AS presses,
    countIf(correct = 0) AS errors,
    countIf(clean_transition = 1) AS timed_presses,
    sumIf(toUInt64(greatest(iki_ms, 0)), clean_transition = 1) AS time_to_type_sum,
    quantilesTDigestStateIf(0.5, 0.95)(toUInt32(greatest(iki_ms, 0)), clean_transition = 1) AS time_to_type
FROM keystrokes_local
WHERE target != '' AND prev_target != ''
GROUP BY user_id, pair, day;

INSERT INTO key_daily
SELECT
    user_id,
    target AS key,
    toDate(started_at) AS day,
    count(),
    countIf(correct = 0),
    countIf(iki_ms >= 0),
    sumIf(toUInt64(greatest(iki_ms, 0)), iki_ms >= 0),
    quantilesTDigestStateIf(0.5, 0.95)(toUInt32(greatest(iki_ms, 0)), iki_ms >= 0),
    countIf(hold_ms >= 0),
    sumIf(toUInt64(greatest(hold_ms, 0)), hold_ms >= 0)
FROM keystrokes FINAL
WHERE target != ''
GROUP BY user_id, key, day;
