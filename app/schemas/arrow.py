"""Arrow schemas of what the ingest job writes, and the field lists of a test's stored result."""

from __future__ import annotations

import pyarrow as pa

# Arrow schemas of what the ingest job writes. Column names are the ClickHouse column names.
KEYSTROKE_SCHEMA = pa.schema(
    [
        ("user_id", pa.uint64()),
        ("test_id", pa.string()),
        ("started_at", pa.timestamp("ms", tz="UTC")),
        ("seq", pa.uint16()),
        ("key", pa.string()),
        ("target", pa.string()),
        ("hold_ms", pa.int32()),
        ("iki_ms", pa.int32()),
        ("correct", pa.uint8()),
        ("clean_transition", pa.uint8()),
    ]
)

# Per-test metrics (float, NULL where undefined) and counts, as stored and as the API names them.
METRIC_FIELDS: tuple[str, ...] = (
    "wpm",
    "accuracy",
    "uncorrected_error_rate",
    "kspc",
    "mean_iki_ms",
    "mean_hold_ms",
    "rollover_ratio",
    "raw_wpm",
    "net_wpm",
    "corrected_error_rate",
    "total_error_rate",
    "ecpc",
    "median_iki_ms",
    "consistency",
    "key_consistency",
    "iki_cv",
    "slowdown",
    "health_score",
    "health_speed",
    "health_accuracy",
    "health_consistency",
    "health_rhythm",
    "health_fatigue",
)
COUNT_FIELDS: tuple[str, ...] = (
    "chars_correct",
    "chars_incorrect",
    "chars_extra",
    "chars_missed",
    "c_correct",
    "inf",
    "if_",
    "corrections",
    "hesitations",
    "hesitations_word_start",
    "hesitations_after_error",
    "transpositions",
    "doubled_letters",
    "dropped_letters",
    "error_bursts",
)
ERROR_LOCATION_FIELDS: tuple[str, ...] = ("errors_by_finger", "errors_by_hand", "errors_by_row")
SERIES_FIELDS: tuple[str, ...] = ("per_second_wpm", "word_burst_wpm")

TEST_RESULT_SCHEMA = pa.schema(
    [
        ("user_id", pa.uint64()),
        ("test_id", pa.string()),
        ("started_at", pa.timestamp("ms", tz="UTC")),
        ("layout", pa.string()),
        ("language", pa.string()),
        ("text", pa.string()),
        ("transcribed", pa.string()),
        ("keystroke_count", pa.uint32()),
        ("duration_ms", pa.uint32()),
        *[(name, pa.float64()) for name in METRIC_FIELDS],
        *[(name, pa.uint32()) for name in COUNT_FIELDS],
        *[(name, pa.list_(pa.uint32())) for name in ERROR_LOCATION_FIELDS],
        *[(name, pa.list_(pa.float32())) for name in SERIES_FIELDS],
        ("kafka_partition", pa.uint32()),
        ("kafka_offset", pa.uint64()),
    ]
)

# Confusions: which key was typed where another was presented, per test.
CONFUSION_SCHEMA = pa.schema(
    [
        ("user_id", pa.uint64()),
        ("test_id", pa.string()),
        ("started_at", pa.timestamp("ms", tz="UTC")),
        ("key", pa.string()),
        ("typed", pa.string()),
        ("count", pa.uint32()),
    ]
)

# Per test and presented key or letter pair (`key` holds the pair's two characters): one row per (test, unit), the
# shape the weakness ranking reads (app/analytics/weakness.py).
KEY_STAT_SCHEMA = pa.schema(
    [
        ("user_id", pa.uint64()),
        ("test_id", pa.string()),
        ("started_at", pa.timestamp("ms", tz="UTC")),
        ("key", pa.string()),
        ("presses", pa.uint32()),
        ("errors", pa.uint32()),
        ("timed_presses", pa.uint32()),
        ("time_to_type_sum_ms", pa.uint64()),
    ]
)

# The stats above plus each timed press's time to type (the per-user quantiles), and for keys the presses with a
# known hold time and their sum.
_TIMES_FIELD = pa.field("time_to_type_ms", pa.list_(pa.uint32()))
KEY_STAT_STORAGE_SCHEMA = (
    KEY_STAT_SCHEMA.append(pa.field("holds", pa.uint32()))
    .append(pa.field("hold_sum_ms", pa.uint64()))
    .append(_TIMES_FIELD)
)
PAIR_STAT_STORAGE_SCHEMA = KEY_STAT_SCHEMA.append(_TIMES_FIELD)

# How test_keys and test_pairs store those rows: one row per test, each stat an array over the test's keys or pairs
# (in the same order). A test's stats are only ever read together, and one row per test instead of one per key or
# pair cut ClickHouse's insert and merge work on them 3.4-fold (migration 0011; README "The ceiling on 2 cores").
TEST_IDENTITY_FIELDS = ("user_id", "test_id", "started_at")


def _per_test(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [f if f.name in TEST_IDENTITY_FIELDS else pa.field(f.name, pa.list_(f.type)) for f in schema]
    )


TEST_KEYS_SCHEMA = _per_test(KEY_STAT_STORAGE_SCHEMA)
TEST_PAIRS_SCHEMA = _per_test(PAIR_STAT_STORAGE_SCHEMA)
