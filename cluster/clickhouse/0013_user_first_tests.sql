-- GENERATED from app/clickhouse/migrations/0013_user_first_tests.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

CREATE TABLE IF NOT EXISTS user_first_tests_local ON CLUSTER '{cluster}'
(
    user_id        UInt64,
    first_test_at  SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/user_first_tests_local', '{replica}')
ORDER BY user_id;

CREATE TABLE IF NOT EXISTS user_first_tests ON CLUSTER '{cluster}' AS user_first_tests_local
ENGINE = Distributed('{cluster}', currentDatabase(), user_first_tests_local, cityHash64(user_id));
