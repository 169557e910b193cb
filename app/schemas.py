"""Typing-test submissions (validated), the seed's legacy message shape, and the Arrow schemas.

A submission is validated once, at the edge, into a `TypingTest`; everything downstream (codec,
analytics, storage) trusts it. Validation errors name the offending field (`keystrokes[12].down`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

LAYOUTS: tuple[str, ...] = ("qwerty", "qwertz", "azerty", "dvorak", "colemak")

# Named keys as browsers report them (KeyboardEvent.key). On the wire a named key is -(index + 1),
# so this order is part of the wire format: append, never reorder.
NAMED_KEYS: tuple[str, ...] = (
    "Backspace",
    "Shift",
    "Enter",
    "Tab",
    "CapsLock",
    "Control",
    "Alt",
    "Meta",
    "Escape",
    "Delete",
    "ArrowLeft",
    "ArrowRight",
    "ArrowUp",
    "ArrowDown",
    "Home",
    "End",
    "PageUp",
    "PageDown",
    "Insert",
    "AltGraph",
    "Dead",
    "Compose",
    "Unidentified",
    "NumLock",
    "ScrollLock",
    "ContextMenu",
)
NAMED_KEY_CODES: dict[str, int] = {name: -(i + 1) for i, name in enumerate(NAMED_KEYS)}
BACKSPACE_CODE = NAMED_KEY_CODES["Backspace"]
TEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_USER_ID = 2**63 - 1
MAX_TIME_MS = 2**31 - 1


class SubmissionError(ValueError):
    """A submission that cannot be accepted; `field` names the offending part of the input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class TypingTest:
    """One finished typing test, validated. Times are whole ms from `started_at`; `up_ms` is -1 if unknown."""

    user_id: int
    test_id: str
    started_at_ms: int
    text: str
    layout: str
    language: str
    key_codes: np.ndarray  # int32: Unicode code point, or a negative named-key code
    down_ms: np.ndarray  # int32, non-decreasing
    up_ms: np.ndarray  # int32, -1 where the release is unknown

    @property
    def keystroke_count(self) -> int:
        return int(self.key_codes.shape[0])

    def keys(self) -> list[str]:
        """The key names, as submitted."""
        return [key_name(int(c)) for c in self.key_codes]


def key_name(code: int) -> str:
    """The submitted name of a key code: the character, or the named key."""
    return chr(code) if code >= 0 else NAMED_KEYS[-code - 1]


def _require(obj: Mapping[str, Any], name: str, field: str | None = None) -> Any:
    if name not in obj or obj[name] is None:
        raise SubmissionError(field or name, "is required")
    return obj[name]


def _as_int(value: Any, field: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SubmissionError(field, f"must be an integer, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise SubmissionError(field, f"must be between {minimum} and {maximum}, got {value}")
    return value


def _as_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise SubmissionError(field, f"must be a string, got {type(value).__name__}")
    return value


def parse_started_at(value: Any, field: str = "started_at") -> int:
    """Epoch milliseconds (UTC) of an ISO-8601 timestamp; one without a zone is taken as UTC."""
    text = _as_str(value, field)
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


def _time_ms(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SubmissionError(field, f"must be a number of milliseconds, got {type(value).__name__}")
    if value != value or value < 0:  # NaN fails the first comparison
        raise SubmissionError(field, f"must be ≥ 0, got {value}")
    if value > MAX_TIME_MS:
        raise SubmissionError(field, f"must be at most {MAX_TIME_MS} ms")
    # Whole milliseconds: browsers report fractions, but analytics need no finer grain.
    return int(round(value))


def _key_code(value: Any, field: str) -> int:
    key = _as_str(value, field)
    if len(key) == 1:
        return ord(key)
    code = NAMED_KEY_CODES.get(key)
    if code is None:
        raise SubmissionError(
            field, f"must be one character or a named key ({', '.join(NAMED_KEYS[:5])}, …), got {key!r}"
        )
    return code


def _keystroke_arrays(
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
        codes[i] = _key_code(_require(stroke, "key", f"{where}.key"), f"{where}.key")
        down = _time_ms(_require(stroke, down_name, f"{where}.{down_name}"), f"{where}.{down_name}")
        if down < previous_down:
            raise SubmissionError(f"{where}.{down_name}", f"times must not decrease ({down} after {previous_down})")
        previous_down = down
        downs[i] = down
        raw_up = stroke.get(up_name)
        if raw_up is not None:
            up = _time_ms(raw_up, f"{where}.{up_name}")
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


def _common(obj: Mapping[str, Any], max_text_chars: int) -> tuple[str, str, str]:
    text = _as_str(_require(obj, "text"), "text")
    if not text:
        raise SubmissionError("text", "must not be empty")
    if len(text) > max_text_chars:
        raise SubmissionError("text", f"has {len(text)} characters; at most {max_text_chars} are accepted")
    layout = _as_str(obj.get("layout") or "qwerty", "layout")
    if layout not in LAYOUTS:
        raise SubmissionError("layout", f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    language = _as_str(obj.get("language") or "en", "language")
    if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?", language):
        raise SubmissionError("language", f"must be a language tag such as 'en' or 'de-CH', got {language!r}")
    return text, layout, language


def _test_id(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    test_id = _as_str(value, field)
    if not TEST_ID_PATTERN.fullmatch(test_id):
        raise SubmissionError(field, "must be 1–64 characters of letters, digits, '_', '.', ':' or '-'")
    return test_id


def parse_submission(obj: Any, max_keystrokes: int = 20_000, max_text_chars: int = 10_000) -> TypingTest:
    """A validated TypingTest from a submission in keyscope's shape or the seed's legacy shape."""
    if not isinstance(obj, dict):
        raise SubmissionError("body", f"must be a JSON object, got {type(obj).__name__}")
    if "userId" in obj or "keyTimings" in obj:
        return _parse_seed(obj, max_keystrokes, max_text_chars)
    user_id = _as_int(_require(obj, "user_id"), "user_id", 1, MAX_USER_ID)
    started_at_ms = parse_started_at(_require(obj, "started_at"))
    text, layout, language = _common(obj, max_text_chars)
    codes, downs, ups = _keystroke_arrays(
        _require(obj, "keystrokes"), "keystrokes", max_keystrokes, "down", "up", up_is_duration=False
    )
    test_id = _test_id(obj.get("test_id"), "test_id") or derived_test_id(user_id, started_at_ms, text, codes, downs)
    return TypingTest(user_id, test_id, started_at_ms, text, layout, language, codes, downs, ups)


def _parse_seed(obj: Mapping[str, Any], max_keystrokes: int, max_text_chars: int) -> TypingTest:
    """The seed's message: userId, testResultId, timestamp, keyTimings, keyErrors (see README)."""
    user_id = _as_int(_require(obj, "userId"), "userId", 1, MAX_USER_ID)
    started_at_ms = parse_started_at(_require(obj, "timestamp"), "timestamp")
    timings = _require(obj, "keyTimings")
    codes, downs, ups = _keystroke_arrays(
        timings, "keyTimings", max_keystrokes, "time", "duration", up_is_duration=True
    )
    key_errors = obj.get("keyErrors")
    if key_errors is not None:
        if not isinstance(key_errors, dict):
            raise SubmissionError("keyErrors", "must be an object of key → error count")
        for key, count in key_errors.items():
            _as_int(count, f"keyErrors.{key}", 0, 2**31 - 1)
    if "text" not in obj:
        # The seed never sent the presented text; without it the best reading is that the final
        # field content was the target, so uncorrected errors are unknown and counted as none.
        from app.analytics.transcription import transcribe

        presented = transcribe(codes)
        obj = {**obj, "text": presented or " "}
    text, layout, language = _common(obj, max_text_chars)
    test_id = _test_id(obj.get("testResultId"), "testResultId") or derived_test_id(
        user_id, started_at_ms, text, codes, downs
    )
    return TypingTest(user_id, test_id, started_at_ms, text, layout, language, codes, downs, ups)


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
