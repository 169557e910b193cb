"""A typist's test list as the API pages it (`GET /v1/users/{id}/tests`): newest first, keyset cursors, and the
first page carried forward when new tests land, so a typist polling for their newest test reads Redis, not
ClickHouse.

A page is `{"user_id", "tests", "next"}`; `tests` are the rows of app/clickhouse/store.py `user_tests`, ordered by
(started_at, test_id) descending; `next` is the cursor of the page's last test when more tests follow.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from datetime import datetime
from typing import Any

import orjson

from app.cache import encode_read

log = logging.getLogger("keyscope.result_pages")

# The cache field of a first page (app/cache.py `read_field` of the `tests` read with only a limit): a page with a
# cursor is not carried forward, only dropped.
FIRST_PAGE_FIELD = re.compile(r"tests:limit=(\d+)")


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


def build_page(user_id: int, rows: list[dict[str, Any]], limit: int, more: bool = False) -> dict[str, Any]:
    """The page of `rows` (newest first, at most `limit + 1` of them: one more says a next page exists; `more`
    says so when the caller knows it otherwise)."""
    page = rows[:limit]
    more = more or len(rows) > limit
    cursor = encode_cursor(page[-1]["started_at"], page[-1]["test_id"]) if more and page else None
    return {"user_id": user_id, "tests": page, "next": cursor}


def _newest_first(row: dict[str, Any]) -> tuple[str, str]:
    # ISO-8601 UTC text at millisecond precision sorts as the instants do; str order is ClickHouse's byte order.
    return row["started_at"], row["test_id"]


def carry_first_page(cached: bytes, user_id: int, new_rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """A cached first page (JSON, or the cached "no tests", JSON null) with `new_rows` stored since: the page the
    store now holds. Exact when `cached` was the store's first page before those rows went in: the new first
    page is the newest `limit` of the old page and the new rows. A re-written test replaces its old row."""
    old = orjson.loads(cached)
    old_rows: list[dict[str, Any]] = [] if old is None else old["tests"]
    more = old is not None and old["next"] is not None
    fresh = {row["test_id"] for row in new_rows}
    merged = sorted([*new_rows, *(row for row in old_rows if row["test_id"] not in fresh)], key=_newest_first,
                    reverse=True)
    return build_page(user_id, merged, limit, more)


def carry_first_pages(
    pages: dict[int, tuple[bytes, dict[bytes, bytes]]], new_rows: dict[int, list[dict[str, Any]]]
) -> dict[int, tuple[bytes, dict[str, bytes]]]:
    """app/cache.py `cached_first_pages` answers with each user's new rows merged in, as JSON: the `carried` of
    `invalidate_users`. A page that does not parse as one this module wrote is not carried (it is dropped)."""
    carried: dict[int, tuple[bytes, dict[str, bytes]]] = {}
    for user_id, (generation, fields) in pages.items():
        bodies: dict[str, bytes] = {}
        for raw_field, body in fields.items():
            field = raw_field.decode() if isinstance(raw_field, bytes) else raw_field
            match = FIRST_PAGE_FIELD.fullmatch(field)
            try:
                if match is None:
                    raise ValueError(f"not a first page: {field}")
                page = carry_first_page(body, user_id, new_rows.get(user_id, []), int(match[1]))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("cached page %s of user %d not carried: %r", field, user_id, exc)
                continue
            bodies[field] = encode_read(page)
        if bodies:
            carried[user_id] = (generation, bodies)
    return carried
