-- The tables migration 0011 replaced: the per-(test, key) and per-(test, pair) rows, now in test_keys and
-- test_pairs, and the daily aggregates their views fed, now computed from those when read. A file of its own so
-- that 0011 can be re-run after a stop part-way (it copies from these tables) and this one too (IF EXISTS).
DROP TABLE IF EXISTS key_daily;
DROP TABLE IF EXISTS pair_daily;
DROP TABLE IF EXISTS test_key_stats;
DROP TABLE IF EXISTS test_pair_stats;
