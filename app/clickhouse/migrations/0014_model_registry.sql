-- The model registry (app/models/registry.py, `keyscope models …`): every trained version of the "pattern",
-- "error" and "trajectory" models, and which version serves. The artifacts (model.pt + meta.json) live as files
-- under KEYSCOPE_MODELS_DIR; these tables hold what describes them: the held-out metrics that decided their
-- promotion, the data window they were trained on, the code and parameters that made them.
--
-- No user data: the data window holds counts and times (how many users and tests, since/until), never a user id,
-- so app/user_data.py (which erases from every table with a user_id column) has nothing to do here.
--
-- One row per version, written once when training registers it. ReplacingMergeTree on the version's key so a
-- repeated insert (a retried write) leaves one row; readers use FINAL. metrics, data_window and params are JSON
-- text: their keys differ per model and are only ever read whole, by the registry.
CREATE TABLE IF NOT EXISTS model_versions
(
    model         LowCardinality(String),
    version       String,                   -- UTC time of registration + a random suffix: 20261206T101500Z-3f2a
    created_at    DateTime64(3, 'UTC'),
    artifact      String,                   -- <model>/<version>, relative to KEYSCOPE_MODELS_DIR: the root can move
    metrics       String,                   -- {"candidate": {…}, "baseline": {…}, "promoted": {…} or null}
    data_window   String,                   -- {"since": …, "until": …, "users": n, "tests": n, …}
    code_version  String,
    trained_by    String,
    params        String
)
ENGINE = ReplacingMergeTree
ORDER BY (model, version);

-- The promotion log, append-only: a row each time a version is promoted (by the training run's promotion rule or
-- by hand) or a rollback returns to an earlier one. The promoted version of a model is the version of its latest
-- row; the log itself is the history a rollback walks back through, and the audit trail of who served what, when
-- and why. Microsecond times, strictly increasing per model (the registry ensures it), so "latest" is never a tie.
CREATE TABLE IF NOT EXISTS model_promotions
(
    model        LowCardinality(String),
    version      String,
    promoted_at  DateTime64(6, 'UTC'),
    action       Enum8('promote' = 1, 'rollback' = 2),
    reason       String
)
ENGINE = MergeTree
ORDER BY (model, promoted_at);
