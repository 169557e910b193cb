-- GENERATED from app/clickhouse/migrations/0007_user_insights.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

CREATE TABLE IF NOT EXISTS user_insights_local ON CLUSTER '{cluster}'
(
    user_id        UInt64,
    computed_at    DateTime64(3, 'UTC'),
    covered_until  DateTime64(3, 'UTC'),   -- newest ingested_at of the user's tests when it was computed
    test_count     UInt32,
    insights       String CODEC(ZSTD(3)),
    keys           String CODEC(ZSTD(3)),
    progress       String CODEC(ZSTD(3))
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/user_insights_local', '{replica}', computed_at)
ORDER BY user_id;

CREATE TABLE IF NOT EXISTS user_insights ON CLUSTER '{cluster}' AS user_insights_local
ENGINE = Distributed('{cluster}', currentDatabase(), user_insights_local, cityHash64(user_id));

CREATE TABLE IF NOT EXISTS job_watermarks_local ON CLUSTER '{cluster}'
(
    job         String,
    watermark   DateTime64(3, 'UTC'),
    updated_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/job_watermarks_local', '{replica}', updated_at)
ORDER BY job;

CREATE TABLE IF NOT EXISTS job_watermarks ON CLUSTER '{cluster}' AS job_watermarks_local
ENGINE = Distributed('{cluster}', currentDatabase(), job_watermarks_local, cityHash64(job));
