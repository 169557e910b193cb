-- GENERATED from app/clickhouse/migrations/0006_keystrokes_without_derivable_columns.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

ALTER TABLE keystrokes_local ON CLUSTER '{cluster}' ADD COLUMN IF NOT EXISTS down_ms UInt32;

ALTER TABLE keystrokes ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS down_ms UInt32;

ALTER TABLE keystrokes_local ON CLUSTER '{cluster}' UPDATE iki_ms = toInt32(down_ms) WHERE seq = 0 AND iki_ms < 0 SETTINGS mutations_sync = 2;

ALTER TABLE keystrokes_local ON CLUSTER '{cluster}'
    DROP COLUMN IF EXISTS down_ms,
    DROP COLUMN IF EXISTS prev_target;

ALTER TABLE keystrokes ON CLUSTER '{cluster}'
    DROP COLUMN IF EXISTS down_ms,
    DROP COLUMN IF EXISTS prev_target;

ALTER TABLE keystrokes_local ON CLUSTER '{cluster}'
    COMMENT COLUMN iki_ms 'ms since the previous press of the test; at seq 0, ms since the test start';

ALTER TABLE keystrokes ON CLUSTER '{cluster}'
    COMMENT COLUMN iki_ms 'ms since the previous press of the test; at seq 0, ms since the test start';
