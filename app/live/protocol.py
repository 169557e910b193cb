"""The live protocol's client messages, validated: each check names the field it refuses (ProtocolError).

    {"type": "auth", "token": "…"}                       only as the first message, when no credential came with
                                                         the connection (browsers cannot set WebSocket headers)
    {"type": "start", "user_id", "text", "layout"?, "language"?, "test_id"?, "started_at"?}
    {"type": "resume", "session_id", "user_id"?}         after a dropped connection, within the resume window
    {"type": "keys", "keystrokes": [{"key", "down", "up"?}, …], "seq"?}
    {"type": "end"}

`start` and `keys` reuse the submission's field rules (app/schemas), so whatever a live session accepts, the
submission it ends in accepts too. A first message of any type may also carry `token`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.identity import MAX_USER_ID
from app.schemas.fields import as_int, common_fields, keystroke_arrays, parse_started_at, test_id_field
from app.schemas.validated import FieldError, SubmissionError

MAX_MESSAGE_CHARS = 256 * 1024  # a batch of a few thousand keystrokes; a whole test fits in far fewer batches
MAX_BATCH_KEYSTROKES = 2000
MAX_SEQ = 2**53  # what a browser's Number holds exactly
MESSAGE_TYPES = ("auth", "start", "resume", "keys", "end")


class ProtocolError(FieldError):
    """A message the server refuses; the session goes on. `field` names the offending part."""


@dataclass(frozen=True)
class Start:
    user_id: int
    text: str
    layout: str
    language: str
    test_id: str | None
    started_at_ms: int | None


@dataclass(frozen=True)
class Resume:
    session_id: str
    user_id: int | None


@dataclass(frozen=True)
class Keys:
    codes: np.ndarray  # int32
    downs: np.ndarray  # int32
    ups: np.ndarray  # int32, -1 unknown
    seq: int | None  # the client's batch number, echoed in the answer


@dataclass(frozen=True)
class End:
    pass


@dataclass(frozen=True)
class Auth:
    token: str


Message = Auth | Start | Resume | Keys | End


def decode(raw: str | bytes) -> dict[str, Any]:
    """The JSON object of a text frame; ProtocolError when it is too large, not JSON or not an object."""
    if len(raw) > MAX_MESSAGE_CHARS:
        raise ProtocolError("message", f"is larger than {MAX_MESSAGE_CHARS} characters; send smaller batches")
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError("message", f"is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("message", f"must be a JSON object, got {type(obj).__name__}")
    return obj


def token_of(obj: dict[str, Any]) -> str | None:
    """The credential a first message carries (`token`), if any."""
    token = obj.get("token")
    if token is None:
        return None
    if not isinstance(token, str) or not token:
        raise ProtocolError("token", "must be a non-empty string")
    return token


def _user_id(obj: dict[str, Any], required: bool) -> int | None:
    if obj.get("user_id") is None:
        if required:
            raise ProtocolError("user_id", "is required")
        return None
    return as_int(obj["user_id"], "user_id", 1, MAX_USER_ID)


def parse(obj: dict[str, Any], max_text_chars: int = 10_000) -> Message:
    """The message of a decoded frame; ProtocolError naming the first field that is wrong."""
    kind = obj.get("type")
    try:
        if kind == "keys":
            keystrokes = obj.get("keystrokes")
            codes, downs, ups = keystroke_arrays(
                keystrokes, "keystrokes", MAX_BATCH_KEYSTROKES, "down", "up", up_is_duration=False
            )
            seq = obj.get("seq")
            if seq is not None:
                seq = as_int(seq, "seq", 0, MAX_SEQ)
            return Keys(codes, downs, ups, seq)
        if kind == "start":
            text, layout, language = common_fields(obj, max_text_chars)
            started_at = obj.get("started_at")
            return Start(
                _user_id(obj, required=True) or 0, text, layout, language, test_id_field(obj.get("test_id"), "test_id"),
                None if started_at is None else parse_started_at(started_at),
            )  # fmt: skip
        if kind == "resume":
            session_id = obj.get("session_id")
            if not isinstance(session_id, str) or not 1 <= len(session_id) <= 64:
                raise ProtocolError("session_id", "must be the session_id of a `ready` answer")
            return Resume(session_id, _user_id(obj, required=False))
        if kind == "end":
            return End()
        if kind == "auth":
            token = token_of(obj)
            if token is None:
                raise ProtocolError("token", "is required")
            return Auth(token)
    except SubmissionError as exc:
        raise ProtocolError(exc.field, exc.message) from None
    raise ProtocolError("type", f"must be one of {', '.join(MESSAGE_TYPES)}, got {kind!r}")
