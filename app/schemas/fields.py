"""Field validators shared by both submission shapes: each returns the parsed value or raises a
`SubmissionError` naming the offending field (`keystrokes[12].down`)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from app.identity import TEST_ID_PATTERN
from app.keys import LAYOUTS, NAMED_KEY_CODES, NAMED_KEYS
from app.schemas.validated import SubmissionError

MAX_TIME_MS = 2**31 - 1


def require(obj: Mapping[str, Any], name: str, field: str | None = None) -> Any:
    if name not in obj or obj[name] is None:
        raise SubmissionError(field or name, "is required")
    return obj[name]


def as_int(value: Any, field: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SubmissionError(field, f"must be an integer, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise SubmissionError(field, f"must be between {minimum} and {maximum}, got {value}")
    return value


def as_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise SubmissionError(field, f"must be a string, got {type(value).__name__}")
    return value


def parse_started_at(value: Any, field: str = "started_at") -> int:
    """Epoch milliseconds (UTC) of an ISO-8601 timestamp; one without a zone is taken as UTC."""
    text = as_str(value, field)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise SubmissionError(field, f"must be an ISO-8601 timestamp, got {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    millis = int(round(moment.timestamp() * 1000))
    if not 0 <= millis < 2**47:
        raise SubmissionError(field, "is out of range")
    return millis


def format_started_at(millis: int) -> str:
    """ISO-8601 UTC text (millisecond precision) of epoch milliseconds."""
    moment = datetime.fromtimestamp(millis / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def time_ms(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SubmissionError(field, f"must be a number of milliseconds, got {type(value).__name__}")
    if value != value or value < 0:  # NaN fails the first comparison
        raise SubmissionError(field, f"must be ≥ 0, got {value}")
    if value > MAX_TIME_MS:
        raise SubmissionError(field, f"must be at most {MAX_TIME_MS} ms")
    # Whole milliseconds: browsers report fractions, but analytics need no finer grain.
    return int(round(value))


def key_code(value: Any, field: str) -> int:
    key = as_str(value, field)
    if len(key) == 1:
        return ord(key)
    code = NAMED_KEY_CODES.get(key)
    if code is None:
        raise SubmissionError(
            field, f"must be one character or a named key ({', '.join(NAMED_KEYS[:5])}, …), got {key!r}"
        )
    return code


def keystroke_arrays(
    keystrokes: Any, field: str, max_keystrokes: int, down_name: str, up_name: str, up_is_duration: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(keystrokes, list):
        raise SubmissionError(field, f"must be a list, got {type(keystrokes).__name__}")
    if not keystrokes:
        raise SubmissionError(field, "must hold at least one keystroke")
    if len(keystrokes) > max_keystrokes:
        raise SubmissionError(field, f"holds {len(keystrokes)} keystrokes; at most {max_keystrokes} are accepted")
    n = len(keystrokes)
    codes = np.empty(n, dtype=np.int32)
    downs = np.empty(n, dtype=np.int32)
    ups = np.full(n, -1, dtype=np.int32)
    previous_down = 0
    for i, stroke in enumerate(keystrokes):
        where = f"{field}[{i}]"
        if not isinstance(stroke, dict):
            raise SubmissionError(where, f"must be an object, got {type(stroke).__name__}")
        codes[i] = key_code(require(stroke, "key", f"{where}.key"), f"{where}.key")
        down = time_ms(require(stroke, down_name, f"{where}.{down_name}"), f"{where}.{down_name}")
        if down < previous_down:
            raise SubmissionError(f"{where}.{down_name}", f"times must not decrease ({down} after {previous_down})")
        previous_down = down
        downs[i] = down
        raw_up = stroke.get(up_name)
        if raw_up is not None:
            up = time_ms(raw_up, f"{where}.{up_name}")
            up = down + up if up_is_duration else up
            if up < down:
                raise SubmissionError(f"{where}.{up_name}", f"release ({up}) is before the press ({down})")
            if up > MAX_TIME_MS:
                raise SubmissionError(f"{where}.{up_name}", f"must be at most {MAX_TIME_MS} ms")
            ups[i] = up
    return codes, downs, ups


def derived_test_id(user_id: int, started_at_ms: int, text: str, codes: np.ndarray, downs: np.ndarray) -> str:
    """A test id derived from the content, so a re-sent test without an id is still the same test."""
    digest = hashlib.sha256()
    digest.update(f"{user_id}|{started_at_ms}|{text}|".encode())
    digest.update(codes.tobytes())
    digest.update(downs.tobytes())
    return "t-" + digest.hexdigest()[:30]


def common_fields(obj: Mapping[str, Any], max_text_chars: int) -> tuple[str, str, str]:
    text = as_str(require(obj, "text"), "text")
    if not text:
        raise SubmissionError("text", "must not be empty")
    if len(text) > max_text_chars:
        raise SubmissionError("text", f"has {len(text)} characters; at most {max_text_chars} are accepted")
    layout = as_str(obj.get("layout") or "qwerty", "layout")
    if layout not in LAYOUTS:
        raise SubmissionError("layout", f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    language = as_str(obj.get("language") or "en", "language")
    if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?", language):
        raise SubmissionError("language", f"must be a language tag such as 'en' or 'de-CH', got {language!r}")
    return text, layout, language


def test_id_field(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    test_id = as_str(value, field)
    if not TEST_ID_PATTERN.fullmatch(test_id):
        raise SubmissionError(field, "must be 1–64 characters of letters, digits, '_', '.', ':' or '-'")
    return test_id
