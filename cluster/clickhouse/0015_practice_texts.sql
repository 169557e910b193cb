-- GENERATED from app/clickhouse/migrations/0015_practice_texts.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

CREATE TABLE IF NOT EXISTS practice_texts_local ON CLUSTER '{cluster}'
(
    signature     String,
    text_id       String,
    text          String,
    targets       Array(String),              -- the target units the text drills
    prompt_words  Array(String),              -- the words the prompt asked for
    score         String,                     -- the scorer's JSON (app/practice/score.py)
    score_value   Float32,
    generator     LowCardinality(String),     -- "lm"
    model         LowCardinality(String),
    seed          UInt64,
    created_at    DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/practice_texts_local', '{replica}')
ORDER BY (signature, text_id);

CREATE TABLE IF NOT EXISTS practice_texts ON CLUSTER '{cluster}' AS practice_texts_local
ENGINE = Distributed('{cluster}', currentDatabase(), practice_texts_local, cityHash64(signature, text_id));
