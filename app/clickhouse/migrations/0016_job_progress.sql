-- Where an unfinished run of a batch job got to, so that a run killed part-way resumes instead of starting over.
-- The insights job (pipelines/insights.py) refreshes typists in user-id order and, after each chunk is written,
-- records the last user id done and the watermark the run will store when it finishes; a finished run marks its
-- row finished. A resumed run skips the users up to `done_through` and finishes with the same `run_until`.
CREATE TABLE IF NOT EXISTS job_progress
(
    job           String,
    run_until     DateTime64(3, 'UTC'),
    done_through  UInt64,
    finished      UInt8,
    updated_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY job;
