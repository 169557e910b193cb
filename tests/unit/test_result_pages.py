"""A typist's result pages: cursors, and a cached first page carried forward when new tests land."""

from __future__ import annotations

import orjson
import pytest

from app.cache import NOT_FOUND, encode_read
from app.result_pages import build_page, carry_first_page, carry_first_pages, decode_cursor, encode_cursor


def row(day: int, test_id: str | None = None, wpm: float = 50.0) -> dict:
    return {"test_id": test_id or f"t{day}", "started_at": f"2026-11-{day:02d}T08:00:00.000Z", "wpm": wpm}


def store_page(rows: list[dict], limit: int) -> dict:
    """What the store's page query answers: the newest `limit + 1` rows, newest first."""
    newest = sorted(rows, key=lambda r: (r["started_at"], r["test_id"]), reverse=True)
    return build_page(7, newest[: limit + 1], limit)


def test_a_cursor_round_trips_and_a_forged_one_is_refused():
    assert decode_cursor(encode_cursor("2026-11-02T08:00:00.000Z", "t2")) == ("2026-11-02T08:00:00.000Z", "t2")
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor("not-a-cursor")


@pytest.mark.parametrize("limit", [1, 2, 3, 20])
def test_a_carried_page_is_the_page_the_store_then_holds(limit):
    stored = [row(1), row(2), row(4)]
    arriving = [row(3), row(5)]  # one older than a stored test (a late submission), one newer
    cached = encode_read(store_page(stored, limit))
    carried = carry_first_page(cached, 7, arriving, limit)
    assert carried == store_page(stored + arriving, limit)


def test_the_cached_absence_becomes_the_first_tests_page():
    assert carry_first_page(NOT_FOUND, 7, [row(2), row(1)], 1) == store_page([row(1), row(2)], 1)
    assert carry_first_page(NOT_FOUND, 7, [row(1)], 20) == {"user_id": 7, "tests": [row(1)], "next": None}


def test_a_page_that_had_more_keeps_its_cursor():
    stored = [row(day) for day in range(1, 6)]
    cached = encode_read(store_page(stored, 2))
    carried = carry_first_page(cached, 7, [row(1, "t0")], 2)  # older than the page: it changes nothing shown
    assert carried == store_page(stored + [row(1, "t0")], 2) == orjson.loads(cached)


def test_a_rewritten_test_replaces_its_old_row():
    cached = encode_read(store_page([row(1), row(2)], 20))
    carried = carry_first_page(cached, 7, [row(2, wpm=61.5)], 20)
    assert carried == {"user_id": 7, "tests": [row(2, wpm=61.5), row(1)], "next": None}


def test_only_first_pages_that_parse_are_carried():
    good = encode_read(store_page([row(1)], 20))
    pages = {
        7: (b"3", {b"tests:limit=20": good, b"tests:limit=5": b"{not json"}),
        8: (b"", {b"tests:limit=20": b'{"user_id": 8}'}),
    }
    carried = carry_first_pages(pages, {7: [row(2)], 8: [row(2)]})
    assert set(carried) == {7}
    generation, bodies = carried[7]
    assert generation == b"3" and set(bodies) == {"tests:limit=20"}
    assert orjson.loads(bodies["tests:limit=20"]) == store_page([row(1), row(2)], 20)
