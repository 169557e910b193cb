-- GENERATED from app/clickhouse/migrations/0012_drop_per_key_rows_and_daily_views.sql by
-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.

DROP TABLE IF EXISTS key_daily ON CLUSTER '{cluster}';

DROP TABLE IF EXISTS key_daily_local ON CLUSTER '{cluster}';

DROP TABLE IF EXISTS pair_daily ON CLUSTER '{cluster}';

DROP TABLE IF EXISTS pair_daily_local ON CLUSTER '{cluster}';

DROP TABLE IF EXISTS test_key_stats ON CLUSTER '{cluster}';

DROP TABLE IF EXISTS test_key_stats_local ON CLUSTER '{cluster}';

DROP TABLE IF EXISTS test_pair_stats ON CLUSTER '{cluster}';

DROP TABLE IF EXISTS test_pair_stats_local ON CLUSTER '{cluster}';
