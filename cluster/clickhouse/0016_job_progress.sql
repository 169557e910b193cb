-- GENERATED from app/clickhouse/migrations/0016_job_progress.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

CREATE TABLE IF NOT EXISTS job_progress_local ON CLUSTER '{cluster}'
(
    job           String,
    run_until     DateTime64(3, 'UTC'),
    done_through  UInt64,
    finished      UInt8,
    updated_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/job_progress_local', '{replica}', updated_at)
ORDER BY job;

CREATE TABLE IF NOT EXISTS job_progress ON CLUSTER '{cluster}' AS job_progress_local
ENGINE = Distributed('{cluster}', currentDatabase(), job_progress_local, cityHash64(job));
