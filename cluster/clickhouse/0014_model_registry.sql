-- GENERATED from app/clickhouse/migrations/0014_model_registry.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

CREATE TABLE IF NOT EXISTS model_versions_local ON CLUSTER '{cluster}'
(
    model         LowCardinality(String),
    version       String,                   -- UTC time of registration + a random suffix: 20261206T101500Z-3f2a
    created_at    DateTime64(3, 'UTC'),
    artifact      String,                   -- <model>/<version>, relative to KEYSCOPE_MODELS_DIR: the root can move
    metrics       String,                   -- {"candidate": {…}, "baseline": {…}, "promoted": {…} or null}
    data_window   String,                   -- {"since": …, "until": …, "users": n, "tests": n, …}
    code_version  String,
    trained_by    String,
    params        String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/model_versions_local', '{replica}')
ORDER BY (model, version);

CREATE TABLE IF NOT EXISTS model_versions ON CLUSTER '{cluster}' AS model_versions_local
ENGINE = Distributed('{cluster}', currentDatabase(), model_versions_local, cityHash64(model, version));

CREATE TABLE IF NOT EXISTS model_promotions_local ON CLUSTER '{cluster}'
(
    model        LowCardinality(String),
    version      String,
    promoted_at  DateTime64(6, 'UTC'),
    action       Enum8('promote' = 1, 'rollback' = 2),
    reason       String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/model_promotions_local', '{replica}')
ORDER BY (model, promoted_at);

CREATE TABLE IF NOT EXISTS model_promotions ON CLUSTER '{cluster}' AS model_promotions_local
ENGINE = Distributed('{cluster}', currentDatabase(), model_promotions_local, cityHash64(model, promoted_at));
