"""The body of POST /v1/predict/typing, validated: every check names the field it refuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.schemas import LAYOUTS, MAX_USER_ID
from app.schemas.validated import FieldError

MAX_PREDICT_CHARS = 500  # a test's passage, not a book: one request stays one small forward pass
DEFAULT_LAYOUT = "qwerty"
TRAJECTORY_MAX_TESTS = 100
TRAJECTORY_DEFAULT_TESTS = 20


class InvalidRequest(FieldError):
    """A request the API refuses; `field` names the offending part."""


@dataclass(frozen=True)
class TypingRequest:
    """Predict how `user_id` would type `text` on `layout`."""

    user_id: int
    text: str
    layout: str = DEFAULT_LAYOUT


def parse_typing_request(body: Any) -> TypingRequest:
    """The request from a decoded JSON body, or InvalidRequest naming the first field that is wrong."""
    if not isinstance(body, dict):
        raise InvalidRequest("body", f"must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - {"user_id", "text", "layout"})
    if unknown:
        raise InvalidRequest(unknown[0], "is not a field of this request (user_id, text, layout)")
    user_id = body.get("user_id")
    if user_id is None:
        raise InvalidRequest("user_id", "is required")
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise InvalidRequest("user_id", f"must be an integer, got {type(user_id).__name__}")
    if not 1 <= user_id <= MAX_USER_ID:
        raise InvalidRequest("user_id", f"must be between 1 and {MAX_USER_ID}, got {user_id}")
    text = body.get("text")
    if text is None:
        raise InvalidRequest("text", "is required")
    if not isinstance(text, str):
        raise InvalidRequest("text", f"must be a string, got {type(text).__name__}")
    if not 1 <= len(text) <= MAX_PREDICT_CHARS:
        raise InvalidRequest("text", f"must be 1 to {MAX_PREDICT_CHARS} characters, got {len(text)}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate from a \ud800 escape: no character to predict
        raise InvalidRequest("text", f"is not valid Unicode at character {exc.start}") from None
    layout = body.get("layout")
    if layout is None:
        layout = DEFAULT_LAYOUT
    if not isinstance(layout, str):
        raise InvalidRequest("layout", f"must be a string, got {type(layout).__name__}")
    if layout not in LAYOUTS:
        raise InvalidRequest("layout", f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    return TypingRequest(user_id, text, layout)
