-- Raw keystrokes without the columns that other columns determine: the table keeps what rebuilds each submission
-- losslessly (with the test's text in test_results) plus the derived columns queries use.
--
--   key                   as submitted
--   press time            down_ms = sum(iki_ms) OVER (PARTITION BY user_id, test_id ORDER BY seq)
--   release time          up_ms = down_ms + hold_ms, unknown (-1) where hold_ms = -1
--   target, correct, clean_transition   derived, kept for queries over the raw rows
--
-- `iki_ms` of a test's first press (seq 0) becomes its time since the test start (it was -1), so the running
-- sum gives every press time and `down_ms` goes. It is therefore no "time to type" at seq 0: count IKIs with
-- `seq > 0`, not `iki_ms >= 0`. (The per-key and per-pair aggregates are fed from test_key_stats and
-- test_pair_stats since 0005 and leave the first press untimed, as before.) `prev_target`, the presented
-- character before the typed position, is the analysis's to recompute from the keys and the text (it is in
-- test_pair_stats, the table pair queries read).
-- app/clickhouse/store.py `stored_keystrokes` reads the press and release times back.
--
-- Measured with `keyscope bench storage` data: 10 M simulated keystrokes, one part after OPTIMIZE FINAL.
-- Bytes per keystroke, before -> after: whole part 4.317 -> 2.862 (the seed's MariaDB JSON: 59.19, 13.7x -> 20.7x).
-- down_ms 1.275 -> 0 and prev_target 0.156 -> 0: gone.
-- iki_ms 1.235 -> 1.212: each test's first row held -1 and now holds 0 (the simulator's first press is at the
--   test start). A real first press some hundred ms in costs about what an IKI costs.
-- Every other column is as before (key 0.228, target 0.155, hold_ms 1.018, correct 0.070, clean_transition
--   0.070, user_id + test_id + started_at + seq 0.106; marks, index and part files 0.005).
--
-- Rows stored before: each test's first press gets its press time into iki_ms (rows with iki_ms = -1 only,
-- so rows a newer writer stored are left alone), and only then do the columns go. mutations_sync = 2 makes the
-- UPDATE return when every replica has rewritten its parts (checked on chDB in process and through the HTTP
-- endpoint: the rows are converted when the statement returns). On the benchmark's 10 M keystrokes in old rows the
-- UPDATE took 1.4 s and the DROP 0.01 s, and the table then measured 2.862 bytes per keystroke, as a fresh one.
-- The ADD COLUMN IF NOT EXISTS does nothing on a database at 0005; it makes a re-run harmless if a run stopped
-- after the DROP but before the migration was recorded (the UPDATE then finds no row to change).
-- Stop ingest jobs of the previous version first: rows they write between the UPDATE and the DROP would keep -1.
ALTER TABLE keystrokes ADD COLUMN IF NOT EXISTS down_ms UInt32;

ALTER TABLE keystrokes UPDATE iki_ms = toInt32(down_ms) WHERE seq = 0 AND iki_ms < 0 SETTINGS mutations_sync = 2;

ALTER TABLE keystrokes
    DROP COLUMN IF EXISTS down_ms,
    DROP COLUMN IF EXISTS prev_target;

ALTER TABLE keystrokes
    COMMENT COLUMN iki_ms 'ms since the previous press of the test; at seq 0, ms since the test start';
