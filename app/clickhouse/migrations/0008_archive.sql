-- Retention and cold storage (pipelines/archive.py, app/cold.py): raw keystrokes stay here 90 days
-- (KEYSCOPE_HOT_DAYS), then live as Parquet in the cold store until 2 years (KEYSCOPE_COLD_DAYS).
--
-- No TTL clause on `keystrokes`: the archive job is the TTL. A TTL deletes rows by age alone and cannot know
-- whether their Parquet copy exists, so a stalled or failing archive job (a bad credential, a full bucket) would
-- turn into silent loss. Even a "backstop" TTL well past 90 days deletes unarchived data exactly when the job has
-- been failing that long. Instead the job drops hot data only after its copy is written and read back, and a
-- hot table that keeps months past the window is what an alert on the oldest partition watches.
--
-- Granularity: whole month partitions leave the hot table (`PARTITION BY toYYYYMM(started_at)`), a month once its
-- last day is older than the hot window, so hot keeps 90 to 121 days. Dropping a partition is a metadata
-- operation; deleting single days would be a mutation rewriting the month's parts every day, on the largest
-- table. In the cold store the unit is a day and a user bucket (one Parquet file each), so cold retention is
-- exact to the day and a user's deletion rewrites only 1/64 of the files.
--
-- How a month leaves without a window for loss: the job first MOVEs the month partition into
-- `keystrokes_archiving` (atomic, metadata only), so tests that arrive late for that month land in `keystrokes`
-- again and are archived by a later run instead of being dropped unseen. It then writes each day and bucket to a
-- temporary file, reads it back and compares it with the rows it read from ClickHouse, renames it into place,
-- records it in `archive_manifest`, checks the ClickHouse counts per day and bucket against the files, and only
-- then drops the partition from `keystrokes_archiving`. A crash anywhere leaves the month in `keystrokes_archiving`
-- and the next run repeats it; a file already in place is merged with (not added to), so nothing doubles.
--
-- `keystrokes_archiving` must keep exactly the columns of `keystrokes` (MOVE PARTITION requires the same
-- structure): a migration that changes `keystrokes` changes it too (tests/integration/test_archive.py checks).
CREATE TABLE IF NOT EXISTS keystrokes_archiving
(
    user_id           UInt64 CODEC(ZSTD(3)),
    test_id           String CODEC(ZSTD(3)),
    started_at        DateTime64(3, 'UTC') CODEC(ZSTD(3)),
    seq               UInt16 CODEC(Delta, ZSTD(3)),
    key               LowCardinality(String) CODEC(ZSTD(9)),
    target            LowCardinality(String) CODEC(ZSTD(9)),
    hold_ms           Int32 CODEC(T64('byte'), ZSTD(9)),
    iki_ms            Int32 CODEC(T64('bit'), ZSTD(9)),
    correct           UInt8 CODEC(T64, ZSTD(1)),
    clean_transition  UInt8 CODEC(T64, ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (user_id, started_at, test_id, seq);

-- One row per cold file (`path` relative to the cold root): its rows, size and SHA-256. A new version replaces
-- the row (a rewrite after late data or a user's deletion); `deleted` = 1 once the file is gone (past cold
-- retention, or emptied by a deletion). The files themselves are the truth for what the cold store holds; this
-- is their inventory, written after each file is in place.
CREATE TABLE IF NOT EXISTS archive_manifest
(
    day          Date,
    bucket       UInt8,
    path         String,
    rows         UInt64,
    bytes        UInt64,
    sha256       String,
    deleted      UInt8,
    archived_at  DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(archived_at)
ORDER BY (day, bucket);

-- Small named values the archive job keeps: the salt of the anonymized ids of per-test results older than the
-- cold retention (a stable secret, so a re-run after a crash derives the same ids and duplicates nothing).
CREATE TABLE IF NOT EXISTS archive_state
(
    name        String,
    value       String,
    updated_at  DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY name;
