"""Typing-test submissions, validated once at the edge into a `TypingTest`; everything downstream (codec,
analytics, storage) trusts it. Validation errors name the offending field (`keystrokes[12].down`).
"""

from __future__ import annotations

from typing import Any

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
from app.schemas.seed import parse_seed_message
from app.schemas.validated import SubmissionError, TypingTest


def parse_submission(obj: Any, max_keystrokes: int = 20_000, max_text_chars: int = 10_000) -> TypingTest:
    """A validated TypingTest from a submission in keyscope's shape or the seed's legacy shape."""
    if not isinstance(obj, dict):
        raise SubmissionError("body", f"must be a JSON object, got {type(obj).__name__}")
    if "userId" in obj or "keyTimings" in obj:
        return parse_seed_message(obj, max_keystrokes, max_text_chars)
    user_id = as_int(require(obj, "user_id"), "user_id", 1, MAX_USER_ID)
    started_at_ms = parse_started_at(require(obj, "started_at"))
    text, layout, language = common_fields(obj, max_text_chars)
    codes, downs, ups = keystroke_arrays(
        require(obj, "keystrokes"), "keystrokes", max_keystrokes, "down", "up", up_is_duration=False
    )
    test_id = test_id_field(obj.get("test_id"), "test_id")
    test_id = test_id or derived_test_id(user_id, started_at_ms, text, codes, downs)
    return TypingTest(user_id, test_id, started_at_ms, text, layout, language, codes, downs, ups)
