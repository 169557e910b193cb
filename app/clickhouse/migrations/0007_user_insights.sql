-- Precomputed reads of each typist (pipelines/insights.py): what GET /v1/users/{id}/insights, /keys and /progress
-- answer, as the JSON the API serves. A cache miss reads one row here (a point lookup by user_id) instead of
-- recomputing from the aggregates; the row is used only while `covered_until` is not older than the user's newest
-- stored test, so it is never staler than the last ingest pass.
CREATE TABLE IF NOT EXISTS user_insights
(
    user_id        UInt64,
    computed_at    DateTime64(3, 'UTC'),
    covered_until  DateTime64(3, 'UTC'),   -- newest ingested_at of the user's tests when it was computed
    test_count     UInt32,
    insights       String CODEC(ZSTD(3)),
    keys           String CODEC(ZSTD(3)),
    progress       String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(computed_at)
ORDER BY user_id;

-- Where each batch job got to (e.g. 'insights': the ingested_at up to which users with new tests were refreshed).
CREATE TABLE IF NOT EXISTS job_watermarks
(
    job         String,
    watermark   DateTime64(3, 'UTC'),
    updated_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY job;
