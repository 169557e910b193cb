-- A/B experiments (app/experiments/, docs/experiments.md).
--
-- `experiments`: one row per experiment, written by `keyscope experiment create`. A definition never changes after
-- creation (changing the weights half-way would break the sample-ratio check and mix two populations) except its
-- end: `keyscope experiment stop` writes the row again with an end, and the newest row of a name wins. Variants are parallel arrays: name, weight and the
-- value the varied factor takes (e.g. factor `practice_generator`, values 'lm' / 'rules').
CREATE TABLE IF NOT EXISTS experiments
(
    name            String,
    factor          LowCardinality(String),
    variant_names   Array(String),
    variant_weights Array(Float64),
    variant_values  Array(String),
    metric          LowCardinality(String),
    description     String,
    starts_at       DateTime64(3, 'UTC'),
    ends_at         Nullable(DateTime64(3, 'UTC')),
    created_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY name;

-- Who was exposed to which variant, and when first: a user's later tests are compared with their earlier ones from
-- this moment on. Serving replicas write exposures in batches and may write the same one again (a restart, a
-- second replica); the version keeps the earliest time, so re-exposure is idempotent: one row per
-- (user, experiment) once merged (readers also take min(exposed_at), which needs no merge). Personal data: exported
-- and deleted with the user by the `experiments` store (app/user_data.py `ExposureStore`).
CREATE TABLE IF NOT EXISTS experiment_exposures
(
    user_id     UInt64,
    experiment  String,
    variant     String,
    exposed_at  DateTime64(3, 'UTC'),
    -- Larger for earlier exposures: ReplacingMergeTree keeps the row with the largest version.
    first_rank  UInt64 MATERIALIZED toUInt64(253402300799999 - toUnixTimestamp64Milli(exposed_at))
)
ENGINE = ReplacingMergeTree(first_rank)
ORDER BY (user_id, experiment);
