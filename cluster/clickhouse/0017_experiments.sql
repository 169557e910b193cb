-- GENERATED from app/clickhouse/migrations/0017_experiments.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

CREATE TABLE IF NOT EXISTS experiments_local ON CLUSTER '{cluster}'
(
    name            String,
    factor          LowCardinality(String),
    variant_names   Array(String),
    variant_weights Array(Float64),
    variant_values  Array(String),
    metric          LowCardinality(String),
    description     String,
    starts_at       DateTime64(3, 'UTC'),
    ends_at         Nullable(DateTime64(3, 'UTC')),
    created_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/experiments_local', '{replica}', created_at)
ORDER BY name;

CREATE TABLE IF NOT EXISTS experiments ON CLUSTER '{cluster}' AS experiments_local
ENGINE = Distributed('{cluster}', currentDatabase(), experiments_local, cityHash64(name));

CREATE TABLE IF NOT EXISTS experiment_exposures_local ON CLUSTER '{cluster}'
(
    user_id     UInt64,
    experiment  String,
    variant     String,
    exposed_at  DateTime64(3, 'UTC'),
    first_rank  UInt64 MATERIALIZED toUInt64(253402300799999 - toUnixTimestamp64Milli(exposed_at))
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/experiment_exposures_local', '{replica}', first_rank)
ORDER BY (user_id, experiment);

CREATE TABLE IF NOT EXISTS experiment_exposures ON CLUSTER '{cluster}' AS experiment_exposures_local
ENGINE = Distributed('{cluster}', currentDatabase(), experiment_exposures_local, cityHash64(user_id));
