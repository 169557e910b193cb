-- Raw keystrokes, smaller on disk. Codecs only: types, ORDER BY and PARTITION BY stay as they are, so
-- nothing that writes or reads the table changes. Parts written before this migration keep their old
-- codecs until their next merge (`OPTIMIZE TABLE keystrokes FINAL` rewrites them at once).
--
-- Measured with `keyscope bench storage` data: 10 M simulated keystrokes, one part after OPTIMIZE FINAL.
-- Bytes per keystroke, before -> after (before = the codecs of 0001, LZ4 where none was given):
--   whole part 6.11 -> 4.32. The columns:
-- user_id 0.042 -> 0.004, test_id 0.137 -> 0.024, started_at 0.102 -> 0.046: each value repeats over a
--   test's ~136 rows, and ZSTD finds those runs itself. DoubleDelta did worse on started_at than plain
--   ZSTD because the value jumps at every new test.
-- seq 0.073 -> 0.032: 0, 1, 2, ... within a test, so Delta leaves runs of 1.
-- key 0.478 -> 0.228, target 0.377 -> 0.155, prev_target 0.378 -> 0.156: the index stream follows the
--   practice text, which repeats across tests. ZSTD(9) finds those repeats; LZ4 does not. ZSTD(15..19)
--   saved about 0.01 more per column, for merges several times slower.
-- down_ms 1.607 -> 1.275: ms since the test start. Delta leaves the inter-key interval, T64('bit') cuts each
--   block of 64 values to the bits it uses, then ZSTD. Delta + ZSTD alone stayed at 1.49-1.61 at every level.
-- hold_ms 1.051 -> 1.018 (T64 byte variant), iki_ms 1.273 -> 1.235 (T64 bit variant): a few hundred ms in an
--   Int32. T64 drops the unused high bits before ZSTD. This is within 10 % of the values' order-0 entropy
--   (0.94 and 1.13 bytes). ZSTD without T64 took 1.2-1.6.
-- correct 0.295 -> 0.070, clean_transition 0.291 -> 0.070: 0/1 flags, mostly 1. T64 packs them into one
--   bit each, then ZSTD.
ALTER TABLE keystrokes
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

-- Compress 1-4 MiB at a time instead of 64 KiB-1 MiB: 4.50 -> 4.32 bytes per keystroke (key 0.27 -> 0.23).
-- A larger block lets ZSTD see more repeats of the practice text. Raw keystrokes are read in bulk
-- (re-analysis, training), never per request, so decompressing a larger block per granule costs nothing that
-- matters. Inserting and merging 10 M rows took 37 s against 34 s with the old codecs.
ALTER TABLE keystrokes MODIFY SETTING min_compress_block_size = 1048576, max_compress_block_size = 4194304;
