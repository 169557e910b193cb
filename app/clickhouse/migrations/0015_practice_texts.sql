-- Practice texts written by the language model (app/practice/, pipelines/practice.py), per signature: what a
-- kind of typist needs (layout, language, skill band, target letters and pairs), never who. No user id, so these
-- are not personal data and app/user_data.py has nothing to erase here; what was served to whom lives per user in
-- Redis and is registered with the GDPR registry (app/practice/served.py).
--
-- The Redis hash keyscope:practice:texts:{signature} holds the hot set; this table is behind it and is what the
-- pre-generation job counts to decide which signatures need more texts. ReplacingMergeTree on the text's id (a
-- hash of signature and text), so a retried write leaves one row.
CREATE TABLE IF NOT EXISTS practice_texts
(
    signature     String,
    text_id       String,
    text          String,
    targets       Array(String),              -- the target units the text drills
    prompt_words  Array(String),              -- the words the prompt asked for
    score         String,                     -- the scorer's JSON (app/practice/score.py)
    score_value   Float32,
    generator     LowCardinality(String),     -- "lm"
    model         LowCardinality(String),
    seed          UInt64,
    created_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (signature, text_id);
