-- `keyscope migrate mysql` (pipelines/migrate_mysql.py): importing the seed's MySQL `keystroke_analytics` table.
--
-- Progress: per source database (host:port/database, never a user or password) and table, the primary key of
-- the last source row whose batch is stored. A batch's tests and rejections are written first and this row
-- last, so a resumed run starts right after the last complete batch; rows past it may be re-read once, which
-- is harmless (tests already stored are skipped, rejections replace themselves).
CREATE TABLE IF NOT EXISTS mysql_import_progress
(
    source        String,
    source_table  String,
    last_id       Int128,   -- signed and unsigned BIGINT keys both fit
    updated_at    DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (source, source_table);

-- Source rows that could not be imported, each with the reason (the column and what is wrong with it). One row
-- per source row: a re-run that rejects it again replaces it.
CREATE TABLE IF NOT EXISTS mysql_import_rejections
(
    source        String,
    source_table  String,
    row_id        Int128,
    reason        String,
    rejected_at   DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(rejected_at)
ORDER BY (source, source_table, row_id);
