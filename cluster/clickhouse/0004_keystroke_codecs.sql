-- GENERATED from app/clickhouse/migrations/0004_keystroke_codecs.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

ALTER TABLE keystrokes_local ON CLUSTER '{cluster}'
    MODIFY COLUMN user_id CODEC(ZSTD(3)),
    MODIFY COLUMN test_id CODEC(ZSTD(3)),
    MODIFY COLUMN started_at CODEC(ZSTD(3)),
    MODIFY COLUMN seq CODEC(Delta, ZSTD(3)),
    MODIFY COLUMN key CODEC(ZSTD(9)),
    MODIFY COLUMN target CODEC(ZSTD(9)),
    MODIFY COLUMN prev_target CODEC(ZSTD(9)),
    MODIFY COLUMN down_ms CODEC(Delta, T64('bit'), ZSTD(9)),
    MODIFY COLUMN hold_ms CODEC(T64('byte'), ZSTD(9)),
    MODIFY COLUMN iki_ms CODEC(T64('bit'), ZSTD(9)),
    MODIFY COLUMN correct CODEC(T64, ZSTD(1)),
    MODIFY COLUMN clean_transition CODEC(T64, ZSTD(1));

ALTER TABLE keystrokes_local ON CLUSTER '{cluster}' MODIFY SETTING min_compress_block_size = 1048576, max_compress_block_size = 4194304;
