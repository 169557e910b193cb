-- Users deleted on request (GDPR erasure, app/user_data.py): the user id and when the deletion finished, kept so
-- that the ingest job drops any of the user's messages still on Kafka that were produced before the deletion
-- (pipelines/ingest.py). A user who comes back later starts afresh: messages timestamped after `deleted_at` are
-- stored as usual. Only the id and a time are kept, the minimum needed to honour the erasure. A repeated deletion
-- of the same user keeps the latest time (ReplacingMergeTree on deleted_at; readers take max(deleted_at)).
-- This table is never itself searched, exported or deleted by app/user_data.py.
CREATE TABLE IF NOT EXISTS user_tombstones
(
    user_id     UInt64,
    deleted_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(deleted_at)
ORDER BY user_id;
