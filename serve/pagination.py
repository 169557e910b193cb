"""Opaque page cursors for a user's test list: the position (start time, test id) of a page's last test."""

from __future__ import annotations

import base64
import json
from datetime import datetime


def encode_cursor(started_at: str, test_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([started_at, test_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """(started_at, test_id) of a cursor; ValueError when it is not one the API returned."""
    try:
        started_at, test_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(started_at, str) or not isinstance(test_id, str):
            raise TypeError("cursor fields")
        datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except Exception as exc:
        raise ValueError("cursor is not one this API returned") from exc
    return started_at, test_id
