-- GENERATED from app/clickhouse/migrations/0009_user_tombstones.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

CREATE TABLE IF NOT EXISTS user_tombstones_local ON CLUSTER '{cluster}'
(
    user_id     UInt64,
    deleted_at  DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/user_tombstones_local', '{replica}', deleted_at)
ORDER BY user_id;

CREATE TABLE IF NOT EXISTS user_tombstones ON CLUSTER '{cluster}' AS user_tombstones_local
ENGINE = Distributed('{cluster}', currentDatabase(), user_tombstones_local, cityHash64(user_id));
