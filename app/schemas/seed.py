"""The seed's legacy message shape (userId, testResultId, timestamp, keyTimings, keyErrors), still accepted
from platforms that have not moved to keyscope's own submission shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.analytics.transcription import transcribe
from app.identity import MAX_USER_ID
from app.schemas.fields import (
    as_int,
    common_fields,
    derived_test_id,
    keystroke_arrays,
    parse_started_at,
    require,
    test_id_field,
)
from app.schemas.validated import SubmissionError, TypingTest


def parse_seed_message(obj: Mapping[str, Any], max_keystrokes: int, max_text_chars: int) -> TypingTest:
    """The seed's message: userId, testResultId, timestamp, keyTimings, keyErrors (see README)."""
    user_id = as_int(require(obj, "userId"), "userId", 1, MAX_USER_ID)
    started_at_ms = parse_started_at(require(obj, "timestamp"), "timestamp")
    timings = require(obj, "keyTimings")
    codes, downs, ups = keystroke_arrays(
        timings, "keyTimings", max_keystrokes, "time", "duration", up_is_duration=True
    )
    key_errors = obj.get("keyErrors")
    if key_errors is not None:
        if not isinstance(key_errors, dict):
            raise SubmissionError("keyErrors", "must be an object of key → error count")
        for key, count in key_errors.items():
            as_int(count, f"keyErrors.{key}", 0, 2**31 - 1)
    if "text" not in obj:
        # The seed never sent the presented text; without it the best reading is that the final
        # field content was the target, so uncorrected errors are unknown and counted as none.
        presented = transcribe(codes)
        obj = {**obj, "text": presented or " "}
    text, layout, language = common_fields(obj, max_text_chars)
    test_id = test_id_field(obj.get("testResultId"), "testResultId") or derived_test_id(
        user_id, started_at_ms, text, codes, downs
    )
    return TypingTest(user_id, test_id, started_at_ms, text, layout, language, codes, downs, ups)
