"""What crosses stage boundaries: the validated typing test, the two submission shapes it is parsed from, and
the Arrow schemas of what the ingest job writes.

- `validated`: `TypingTest` (a submission once validated) and `SubmissionError`;
- `submission`: `parse_submission`, keyscope's own shape (dispatching to `seed` for the legacy one);
- `seed`: the seed's legacy message shape;
- `fields`: the validators both shapes share;
- `arrow`: the Arrow schemas and stored field lists.

The key vocabulary lives in `app.keys` and the identity bounds in `app.identity`; both are named here too.
"""

from app.identity import MAX_USER_ID, TEST_ID_PATTERN
from app.keys import BACKSPACE_CODE, LAYOUTS, NAMED_KEY_CODES, NAMED_KEYS, key_name
from app.schemas.arrow import (
    CONFUSION_SCHEMA,
    COUNT_FIELDS,
    ERROR_LOCATION_FIELDS,
    KEY_STAT_SCHEMA,
    KEY_STAT_STORAGE_SCHEMA,
    KEYSTROKE_SCHEMA,
    METRIC_FIELDS,
    PAIR_STAT_STORAGE_SCHEMA,
    SERIES_FIELDS,
    TEST_IDENTITY_FIELDS,
    TEST_KEYS_SCHEMA,
    TEST_PAIRS_SCHEMA,
    TEST_RESULT_SCHEMA,
)
from app.schemas.fields import MAX_TIME_MS, derived_test_id, format_started_at, parse_started_at
from app.schemas.submission import parse_submission
from app.schemas.validated import SubmissionError, TypingTest

__all__ = [
    "BACKSPACE_CODE",
    "CONFUSION_SCHEMA",
    "COUNT_FIELDS",
    "ERROR_LOCATION_FIELDS",
    "KEY_STAT_SCHEMA",
    "KEY_STAT_STORAGE_SCHEMA",
    "KEYSTROKE_SCHEMA",
    "LAYOUTS",
    "MAX_TIME_MS",
    "MAX_USER_ID",
    "METRIC_FIELDS",
    "NAMED_KEY_CODES",
    "NAMED_KEYS",
    "PAIR_STAT_STORAGE_SCHEMA",
    "SERIES_FIELDS",
    "SubmissionError",
    "TEST_IDENTITY_FIELDS",
    "TEST_ID_PATTERN",
    "TEST_KEYS_SCHEMA",
    "TEST_PAIRS_SCHEMA",
    "TEST_RESULT_SCHEMA",
    "TypingTest",
    "derived_test_id",
    "format_started_at",
    "key_name",
    "parse_started_at",
    "parse_submission",
]
