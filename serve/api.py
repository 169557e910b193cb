"""The HTTP API (FastAPI): submit typing tests, read a user's tests and insights.

Errors share one shape: `{"error": {"code": ..., "message": ..., "field": ...}}`. A submission is
validated completely before anything is produced to Kafka, and `202` is answered only after Kafka
acknowledged the message. Reads go through the Redis cache to ClickHouse.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.cache import InsightsCache
from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import user_tests
from app.codec import encode_test
from app.config import Settings
from app.insights import build_insights, build_key_table, build_progress
from app.kafka import BrokerUnavailable, TestProducer
from app.schemas import SubmissionError, parse_submission
from serve.models import Queued

log = logging.getLogger("keyscope.api")


def error_response(status: int, code: str, message: str, field: str | None = None, **headers: str) -> JSONResponse:
    """The API's one error shape."""
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}}, status_code=status, headers=headers or None
    )


class KeyscopeAPI:
    """The API's state (clients) and handlers; one instance per Serve replica."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = TestProducer(settings)
        self.cache = InsightsCache(settings)
        self._clickhouse = None

    def clickhouse(self):
        if self._clickhouse is None:
            self._clickhouse = clickhouse_client(self.settings.clickhouse_url, autogenerate_session_id=False)
        return self._clickhouse

    async def submit(self, request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        limit = self.settings.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return error_response(413, "body_too_large", f"request body exceeds {limit} bytes", "body")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                return error_response(413, "body_too_large", f"request body exceeds {limit} bytes", "body")
        try:
            submission = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return error_response(400, "invalid_json", f"body is not valid JSON: {exc}", "body")
        try:
            test = parse_submission(submission, self.settings.max_keystrokes, self.settings.max_text_chars)
        except SubmissionError as exc:
            return error_response(422, "invalid_submission", exc.message, exc.field)
        try:
            await self.producer.send(test.user_id, encode_test(test))
        except BrokerUnavailable as exc:
            log.warning("produce failed: %s", exc)
            return error_response(
                503, "broker_unavailable", "the queue is unavailable; retry later", None, **{"Retry-After": "5"}
            )
        return JSONResponse(Queued(test_id=test.test_id).model_dump(), status_code=202)

    async def _cached(self, user_id: int, read: str, compute) -> Any:
        try:
            hit = await self.cache.get(user_id, read)
            generation = await self.cache.generation(user_id)
        except Exception as exc:  # a cache outage must not take reads down
            log.warning("cache unavailable: %s", exc)
            hit, generation = None, None
        if hit is not None:
            return hit
        value = await asyncio.to_thread(compute)
        if value is not None:
            try:
                await self.cache.put(user_id, read, value, generation)
            except Exception as exc:
                log.warning("cache write failed: %s", exc)
        return value

    async def tests(self, user_id: int, limit: int) -> Any:
        return await self._cached(
            user_id, f"tests:{limit}", lambda: user_tests(self.clickhouse(), user_id, limit) or None
        )

    async def insights(self, user_id: int) -> Any:
        return await self._cached(user_id, "insights", lambda: build_insights(self.clickhouse(), user_id))

    async def key_table(self, user_id: int) -> Any:
        return await self._cached(user_id, "keys", lambda: build_key_table(self.clickhouse(), user_id))

    async def progress(self, user_id: int) -> Any:
        return await self._cached(user_id, "progress", lambda: build_progress(self.clickhouse(), user_id))

    async def close(self) -> None:
        await self.producer.close()
        await self.cache.close()


def build_app() -> FastAPI:
    """The FastAPI app with the API's error handlers; routes are added by the Serve ingress (serve/app.py)."""
    app = FastAPI(
        title="keyscope",
        version="0.1.0",
        description="Typing analytics: submit typing tests, read per-test metrics and per-user insights.",
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(422, "invalid_request", str(first.get("msg")), field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "http_error", str(exc.detail))

    return app


def not_found(user_id: int) -> JSONResponse:
    return error_response(404, "unknown_user", f"no tests for user {user_id}", "user_id")
