"""Reads computed from ClickHouse on a cache miss, as JSON bytes, cached in Redis on the way out.

Runs in the `insights` deployment (serve/app.py), which scales apart from the ingress: a cache miss costs
tens to hundreds of milliseconds of CPU, a hit a Redis call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

from app.cache import NOT_FOUND, InsightsCache, encode_read, read_field
from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import user_test_history, user_tests
from app.config import Settings
from app.insights import build_insights, build_key_table, build_progress, load_history
from app.models.forecast import ModelForecaster
from app.practice import build_drill, drill_targets
from app.result_pages import build_page

log = logging.getLogger("keyscope.reads")
PRECOMPUTED = ("insights", "keys", "progress")  # columns of user_insights


def started_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


class UserReads:
    """The reads of the API; `read` returns None for a user with no tests."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = InsightsCache(settings)
        self.forecaster = ModelForecaster(settings)
        self._clickhouse = None

    def clickhouse(self):
        if self._clickhouse is None:
            self._clickhouse = clickhouse_client(self.settings.clickhouse_url, autogenerate_session_id=False)
        return self._clickhouse

    def _compute(self, user_id: int, read: str, params: dict[str, Any]) -> Any:
        client = self.clickhouse()
        if read in ("insights", "keys"):
            history = load_history(client, user_id)
            if history is None:
                return None
            if read == "keys":
                return build_key_table(history)
            return build_insights(history, model_forecast=self.forecaster.forecast(user_id))
        if read == "progress":
            tests = user_test_history(client, user_id)
            forecast = self.forecaster.forecast(user_id) if tests.num_rows else None
            return build_progress(user_id, tests, model_forecast=forecast)
        if read == "tests":
            return self._tests_page(user_id, int(params["limit"]), params.get("before"))
        raise ValueError(f"unknown read {read!r}")

    def _tests_page(self, user_id: int, limit: int, before: tuple[str, str] | None) -> dict[str, Any] | None:
        position = None if before is None else (started_ms(before[0]), before[1])
        rows = user_tests(self.clickhouse(), user_id, limit + 1, position)  # one more says if a next page exists
        if not rows:
            return None if before is None else {"user_id": user_id, "tests": [], "next": None}
        return build_page(user_id, rows, limit)

    def _precomputed(self, user_id: int, read: str) -> bytes | None:
        """The read from `user_insights` (pipelines/insights.py) if it covers the user's newest test."""
        rows = self.clickhouse().query(
            f"SELECT `{read}`, "
            "covered_until >= (SELECT max(ingested_at) FROM test_results WHERE user_id = {u:UInt64}) "
            "FROM user_insights FINAL WHERE user_id = {u:UInt64}",
            parameters={"u": user_id},
        ).result_rows
        if rows and rows[0][1] and rows[0][0]:
            return rows[0][0].encode() if isinstance(rows[0][0], str) else bytes(rows[0][0])
        return None

    def _deleted(self, user_id: int) -> bool:
        return bool(
            self.clickhouse().command(
                "SELECT count() FROM user_tombstones WHERE user_id = {u:UInt64}", parameters={"u": user_id}
            )
        )

    def _precomputed_or_computed(self, user_id: int, read: str, params: dict[str, Any]) -> bytes | None:
        if read in PRECOMPUTED:
            body = self._precomputed(user_id, read)
            if body is not None:
                return body
        value = self._compute(user_id, read, params)
        return None if value is None else encode_read(value)

    async def read(self, user_id: int, read: str, params: dict[str, Any]) -> bytes | None:
        """Redis missed: the precomputed row if fresh, else computed from the aggregates; cached either way."""
        field = read_field(read, params)
        try:
            generation = await self.cache.generation(user_id)
        except Exception as exc:
            log.warning("cache unavailable: %s", exc)
            generation = None
        body = await asyncio.to_thread(self._precomputed_or_computed, user_id, read, params)
        if body is None:
            # Remember the absence (polling for a first test then costs Redis), except for a deleted user: reading
            # one must leave no trace of them anywhere (app/user_data.py).
            if not await asyncio.to_thread(self._deleted, user_id):
                try:
                    await self.cache.put_raw(user_id, field, NOT_FOUND, generation)
                except Exception as exc:
                    log.warning("cache write failed: %s", exc)
            return None
        try:
            await self.cache.put_raw(user_id, field, body, generation)
        except Exception as exc:
            log.warning("cache write failed: %s", exc)
        return body

    async def practice(self, user_id: int, length: int, seed: int | None) -> bytes | None:
        """A drill passage aimed at the user's weak keys and pairs (common words until there are tests)."""
        insights = await self._insights_value(user_id)
        keys, pairs = drill_targets(insights) if insights is not None else ([], [])
        layout = (insights or {}).get("layout") or "qwerty"
        text = build_drill(keys, pairs, length_chars=length, seed=seed, layout=layout)
        return encode_read(
            {"user_id": user_id, "text": text, "targets": {"keys": keys, "pairs": pairs}, "source": "drill"}
        )

    async def _insights_value(self, user_id: int) -> dict[str, Any] | None:
        try:
            raw = await self.cache.get_raw(user_id, "insights")
        except Exception:
            raw = None
        if raw is None:
            raw = await self.read(user_id, "insights", {})
        return None if raw is None else json.loads(raw)

    async def ping(self) -> None:
        await asyncio.to_thread(self.clickhouse().command, "SELECT 1")

    async def close(self) -> None:
        self.forecaster.close()
        await self.cache.close()
