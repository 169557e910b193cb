-- Weekly retention and WPM improvement by signup week, over the warehouse export's `user_daily` dataset
-- (pipelines/warehouse/datasets.py: one row per user and UTC day with at least one test; `day` is the hive
-- partition key from the path user_daily/day=YYYY-MM-DD/).
--
-- `{user_daily}` stands for that table. `keyscope warehouse cohorts` runs this file on chDB with
--   file('<root>/user_daily/day=*/*.parquet', Parquet)  SETTINGS use_hive_partitioning = 1
-- In BigQuery it is an external table with hive partitioning over gs://BUCKET/PREFIX/user_daily/*.parquet (or
-- s3:// through BigLake); in Snowflake an external table over @stage/user_daily/ with PATTERN '.*[.]parquet' and
-- `day DATE AS TO_DATE(SPLIT_PART(SPLIT_PART(METADATA$FILENAME, 'day=', 2), '/', 1))`. The query is plain
-- SQL apart from three ClickHouse functions; their BigQuery / Snowflake spellings:
--   toMonday(d)                 DATE_TRUNC(d, ISOWEEK)              / DATE_TRUNC('WEEK', d) (WEEK_START = 1)
--   dateDiff('day', a, b)       DATE_DIFF(b, a, DAY)                / DATEDIFF('day', a, b)
--   intDiv(n, 7)                DIV(n, 7)                           / FLOOR(n / 7)
--
-- Definitions:
--   signup day     the UTC day of a user's first test ever (`first_test_day`, which the export reads from all of
--                  the user's history, so it is right even for users who started before the exported days)
--   signup_week    the Monday of the signup day's week: the cohort
--   week           whole weeks since the signup day: 0 = the signup day and the 6 days after it, 1 = days 7-13, ...
--   cohort_users   users in the cohort (who have any exported day)
--   active_users   of those, users with at least one test in that week
--   retention      active_users / cohort_users
--   mean_wpm       mean over the active users of each one's WPM that week (the mean of their tests' WPM:
--                  daily means weighted by the tests that have a WPM)
--   wpm_gain       mean over the active users of (WPM that week - WPM in week 0): the cohort's improvement
--                  (null for a user without a week-0 WPM, e.g. whose first test predates the export)
WITH
    users AS (
        SELECT user_id, min(first_test_day) AS signup_day
        FROM {user_daily}
        GROUP BY user_id
    ),
    user_weeks AS (
        SELECT
            d.user_id AS user_id,
            toMonday(u.signup_day) AS signup_week,
            intDiv(dateDiff('day', u.signup_day, d.day), 7) AS week,
            sum(d.mean_wpm * d.wpm_tests) / nullIf(sum(d.wpm_tests), 0) AS wpm
        FROM {user_daily} AS d
        INNER JOIN users AS u ON d.user_id = u.user_id
        GROUP BY d.user_id, toMonday(u.signup_day), intDiv(dateDiff('day', u.signup_day, d.day), 7)
    ),
    cohorts AS (
        SELECT toMonday(signup_day) AS signup_week, count() AS cohort_users
        FROM users
        GROUP BY toMonday(signup_day)
    ),
    baseline AS (
        SELECT user_id, wpm AS week0_wpm
        FROM user_weeks
        WHERE week = 0
    )
SELECT
    w.signup_week AS signup_week,
    w.week AS week,
    c.cohort_users AS cohort_users,
    count() AS active_users,
    count() / c.cohort_users AS retention,
    avg(w.wpm) AS mean_wpm,
    avg(w.wpm - b.week0_wpm) AS wpm_gain
FROM user_weeks AS w
INNER JOIN cohorts AS c ON w.signup_week = c.signup_week
LEFT JOIN baseline AS b ON w.user_id = b.user_id
GROUP BY w.signup_week, w.week, c.cohort_users
ORDER BY signup_week, week
