-- A typist's first test ever, recorded when the archive job anonymizes their oldest tests (pipelines/archive.py,
-- after two years): the warehouse's `first_test_day` (the cohort key) takes the earlier of this and the tests still
-- under the user's id, so a typist's signup day does not move forward as their tests are anonymized. Written only
-- by the anonymization, before the results lose their ids; repeated writes keep the minimum. A user's row goes with
-- the user on deletion (app/user_data.py finds every table with a user_id column).
CREATE TABLE IF NOT EXISTS user_first_tests
(
    user_id        UInt64,
    first_test_at  SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY user_id;
