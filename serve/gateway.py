"""What the public API does for one request, with no Ray in it: authenticate, rate-limit, validate and produce
submissions, and answer reads from the Redis cache (with ETags) or from the read deployment on a miss.

The Serve ingress (serve/app.py) and the plain-uvicorn build (serve/standalone.py) both run this, so the
benchmark's upper bound is the same code without Ray.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask

from app import user_data
from app.auth import ADMIN_SCOPES, AuthConfig, AuthError, Principal, Scope, authenticate, authorize_user, require_scope
from app.cache import NOT_FOUND, InsightsCache, read_field
from app.codec import encode_test
from app.config import Settings
from app.kafka import BrokerUnavailable, TestProducer
from app.practice.signature import SignatureError, parse_signature
from app.ratelimit import RateLimiter
from app.schemas import SubmissionError, parse_submission
from serve.prediction_request import InvalidRequest, TypingRequest, parse_typing_request

log = logging.getLogger("keyscope.api")

# Who may export a user's data (GDPR access and portability): the user themself, or an operator. Deletion is
# ADMIN_SCOPES only. A service key may do neither.
EXPORT_SCOPES: tuple[Scope, ...] = ("admin", "user")

# Reads a client may cache but must revalidate (ETag) every time: a user's data changes when an ingest batch
# lands, and the dashboard polls for exactly that change.
READ_CACHE_CONTROL = "private, no-cache"
# A signature's texts name a kind of typist, never a person, so shared caches (a CDN) may keep them; a signature
# with none yet is asked again sooner, since the practice deployment is writing them.
PRACTICE_TEXTS_MAX_AGE_S = 300
PRACTICE_TEXTS_EMPTY_MAX_AGE_S = 60


class Reader(Protocol):
    """Computes one read of a user as JSON bytes (None: the user has no tests); caches it on the way."""

    async def read(self, user_id: int, read: str, params: dict[str, Any]) -> bytes | None: ...

    async def practice(self, user_id: int, length: int, seed: int | None) -> bytes | None: ...

    async def ping(self) -> None: ...


class Predictions(Protocol):
    """The prediction routes' answers as JSON bytes (None: no model version promoted for it yet)."""

    async def predict_typing(self, request: TypingRequest) -> bytes | None: ...

    async def trajectory(self, user_id: int, tests: int) -> bytes | None: ...


class PracticeSource(Protocol):
    """Practice texts as JSON bytes (serve/practice.py): a typist's, and a signature's for the CDN route."""

    async def text(self, user_id: int, words: int) -> bytes: ...

    async def texts(self, signature: str) -> bytes: ...


class ApiMetrics(Protocol):
    def request(self, route: str, method: str, status: int, seconds: float) -> None: ...

    def cache_lookup(self, hit: bool) -> None: ...

    def produce_error(self) -> None: ...


class NoMetrics:
    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        pass

    def cache_lookup(self, hit: bool) -> None:
        pass

    def produce_error(self) -> None:
        pass


def error_response(status: int, code: str, message: str, field: str | None = None, **headers: str) -> JSONResponse:
    """The API's one error shape."""
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}}, status_code=status, headers=headers or None
    )


def not_found(user_id: int) -> JSONResponse:
    return error_response(404, "unknown_user", f"no tests for user {user_id}", "user_id")


def auth_error_response(exc: AuthError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, None, **exc.headers())


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


@dataclass
class Caller:
    """An authenticated, rate-limited request's principal, or the response that refuses it."""

    principal: Principal | None
    refusal: Response | None


class Gateway:
    """The API's state (clients) and request logic; one per ingress replica or uvicorn worker."""

    def __init__(
        self,
        settings: Settings,
        reader: Reader,
        metrics: ApiMetrics | None = None,
        predictions: Predictions | None = None,
        practice_texts: PracticeSource | None = None,
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.predictions = predictions
        self.practice_texts = practice_texts
        self.metrics = metrics or NoMetrics()
        self.producer = TestProducer(settings)
        self.cache = InsightsCache(settings)
        self.auth = AuthConfig.from_settings(settings)
        self.limiter = RateLimiter.from_settings(settings)

    # -- who is calling -------------------------------------------------------------------------------------

    async def caller(self, request: Request, user_id: int | None = None, scopes: tuple[str, ...] = ()) -> Caller:
        """Authenticate the bearer credential, check it may act on `user_id` / needs one of `scopes`, and
        charge its rate limit. Checks run before any work, so a refused request costs one Redis call at most."""
        try:
            principal = await self.authenticated(request.headers.get("authorization"))
            if scopes:
                require_scope(principal, *scopes)
            if user_id is not None:
                authorize_user(principal, user_id)
        except AuthError as exc:
            return Caller(None, auth_error_response(exc))
        decision = await self.limiter.check(principal)
        if not decision.allowed:
            retry = max(1, math.ceil(decision.retry_after_s))
            return Caller(
                None,
                error_response(
                    429, "rate_limited", f"too many requests for {principal.name}; retry in {retry} s",
                    None, **{"Retry-After": str(retry)},
                ),
            )
        return Caller(principal, None)

    async def authenticated(self, authorization_header: str | None) -> Principal:
        """The principal of a bearer credential (app/auth.py); AuthError when it is refused."""
        if self.auth.platform_keys is None:
            return authenticate(authorization_header, self.auth, time.time())
        # A platform token may fetch the JWKS, blocking up to its timeout: not on the event loop.
        return await asyncio.to_thread(authenticate, authorization_header, self.auth, time.time())

    # -- writes ---------------------------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        declared = request.headers.get("content-length")
        limit = self.settings.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return error_response(413, "body_too_large", f"request body exceeds {limit} bytes", "body")
        caller = await self.caller(request)
        if caller.refusal is not None:
            return caller.refusal
        submission = await self._json_body(request, limit)
        if isinstance(submission, Response):
            return submission
        return await self.queue_submission(caller.principal, submission)

    async def queue_submission(self, principal: Principal, submission: Any) -> JSONResponse:
        """Validate a decoded submission, check the principal may submit for its user, and put it on Kafka: 202 with
        its test id, or the error. POST /v1/tests and the end of a live session (serve/live.py) both come here."""
        try:
            test = parse_submission(submission, self.settings.max_keystrokes, self.settings.max_text_chars)
        except SubmissionError as exc:
            return error_response(422, "invalid_submission", exc.message, exc.field)
        try:
            authorize_user(principal, test.user_id)  # a typist submits only their own tests
        except AuthError as exc:
            return auth_error_response(exc)
        try:
            await self.producer.send(test.user_id, encode_test(test))
        except BrokerUnavailable as exc:
            self.metrics.produce_error()
            log.warning("produce failed: %s", exc)
            return error_response(
                503, "broker_unavailable", "the queue is unavailable; retry later", None, **{"Retry-After": "5"}
            )
        return JSONResponse({"test_id": test.test_id, "status": "queued"}, status_code=202)

    # -- reads ----------------------------------------------------------------------------------------------

    async def read(self, request: Request, user_id: int, read: str, params: dict[str, Any] | None = None) -> Response:
        """One read of a user's data: auth, then Redis, then the reader; 304 when the client's ETag matches."""
        caller = await self.caller(request, user_id)
        if caller.refusal is not None:
            return caller.refusal
        try:
            body = await self.cached_read(user_id, read, params or {})
        except Exception as exc:  # the store or the read deployment is down: say so, never a bare 500
            log.warning("read %s of user %s failed: %r", read, user_id, exc)
            return error_response(
                503, "store_unavailable", "analytics are unavailable; retry later", None, **{"Retry-After": "5"}
            )
        if body is None:
            return not_found(user_id)
        return self.json_bytes(request, body)

    async def cached_read(self, user_id: int, read: str, params: dict[str, Any]) -> bytes | None:
        field = read_field(read, params)
        try:
            body = await self.cache.get_raw(user_id, field)
        except Exception as exc:  # a cache outage must not take reads down
            log.warning("cache unavailable: %s", exc)
            body = None
        self.metrics.cache_lookup(body is not None)
        if body is None:
            body = await self.reader.read(user_id, read, params)
        return None if body == NOT_FOUND else body

    @staticmethod
    def json_bytes(request: Request, body: bytes, cache_control: str = READ_CACHE_CONTROL) -> Response:
        """The body with its ETag; 304 when the client already holds it."""
        etag = etag_of(body)
        headers = {"ETag": etag, "Cache-Control": cache_control}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    async def practice(self, request: Request, user_id: int, length: int, seed: int | None) -> Response:
        caller = await self.caller(request, user_id)
        if caller.refusal is not None:
            return caller.refusal
        try:
            body = await self.reader.practice(user_id, length, seed)
        except Exception as exc:
            log.warning("practice text for user %s failed: %r", user_id, exc)
            return error_response(
                503, "store_unavailable", "practice text is unavailable; retry later", None, **{"Retry-After": "5"}
            )
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    # -- practice texts (serve/practice.py) --------------------------------------------------------------------

    async def practice_text(self, request: Request, user_id: int, words: int) -> Response:
        """The typist's practice text: a written one they have not just typed, else a drill (never cached)."""
        caller = await self.caller(request, user_id)
        if caller.refusal is not None:
            return caller.refusal
        body = await self._practice(lambda p: p.text(user_id, words), f"user {user_id}")
        if isinstance(body, Response):
            return body
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def signature_texts(self, request: Request, signature: str) -> Response:
        """A signature's written texts, cacheable by anyone (no personal data), with an ETag."""
        caller = await self.caller(request)
        if caller.refusal is not None:
            return caller.refusal
        try:
            parse_signature(signature)
        except SignatureError as exc:
            return error_response(422, "invalid_request", exc.message, exc.field)
        body = await self._practice(lambda p: p.texts(signature), f"signature {signature}")
        if isinstance(body, Response):
            return body
        max_age = PRACTICE_TEXTS_MAX_AGE_S if json.loads(body)["texts"] else PRACTICE_TEXTS_EMPTY_MAX_AGE_S
        return self.json_bytes(request, body, f"public, max-age={max_age}")

    async def _practice(self, call: Callable[[PracticeSource], Awaitable[bytes]], what: str) -> bytes | Response:
        """The practice deployment's answer, or the 503 that says it or its stores are unavailable."""
        if self.practice_texts is None:
            return error_response(503, "store_unavailable", "practice texts are not served here", None)
        try:
            return await call(self.practice_texts)
        except Exception as exc:
            log.warning("practice text for %s failed: %r", what, exc)
            return error_response(
                503, "store_unavailable", "practice text is unavailable; retry later", None, **{"Retry-After": "5"}
            )

    # -- predictions (serve/predictor.py) ---------------------------------------------------------------------

    async def predict_typing(self, request: Request) -> Response:
        """How the user would type a text: auth, the body checked field by field, then the predictor."""
        caller = await self.caller(request)
        if caller.refusal is not None:
            return caller.refusal
        # The submissions' body limit, not one sized to 500 characters: a longer text gets the error naming its limit.
        body = await self._json_body(request, self.settings.max_body_bytes)
        if isinstance(body, Response):
            return body
        try:
            typing_request = parse_typing_request(body)
        except InvalidRequest as exc:
            return error_response(422, "invalid_request", exc.message, exc.field)
        try:
            authorize_user(caller.principal, typing_request.user_id)  # a user token predicts only for its user
        except AuthError as exc:
            return auth_error_response(exc)
        return await self._predicted(
            lambda p: p.predict_typing(typing_request), f"typing of user {typing_request.user_id}"
        )

    async def trajectory(self, request: Request, user_id: int, tests: int) -> Response:
        caller = await self.caller(request, user_id)
        if caller.refusal is not None:
            return caller.refusal
        return await self._predicted(lambda p: p.trajectory(user_id, tests), f"trajectory of user {user_id}")

    async def _predicted(self, call: Callable[[Predictions], Awaitable[bytes | None]], what: str) -> Response:
        if self.predictions is None:
            return error_response(503, "predictor_unavailable", "predictions are not served here", None)
        try:
            body = await call(self.predictions)
        except Exception as exc:  # the predictor deployment or the feature store is down
            log.warning("prediction of %s failed: %r", what, exc)
            return error_response(
                503, "predictor_unavailable", "predictions are unavailable; retry later", None, **{"Retry-After": "5"}
            )
        if body is None:
            return error_response(
                503, "no_model", "no promoted model yet: train and promote one (keyscope models)", None,
                **{"Retry-After": "30"},
            )
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    @staticmethod
    async def _json_body(request: Request, limit: int) -> Any:
        """The request's JSON body, or the error response refusing it (too large, not JSON)."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return error_response(413, "body_too_large", f"request body exceeds {limit} bytes", "body")
        raw = bytearray()
        async for chunk in request.stream():
            raw.extend(chunk)
            if len(raw) > limit:
                return error_response(413, "body_too_large", f"request body exceeds {limit} bytes", "body")
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return error_response(400, "invalid_json", f"body is not valid JSON: {exc}", "body")

    # -- privacy (app/user_data.py) --------------------------------------------------------------------------

    async def export(self, request: Request, user_id: int) -> Response:
        """Everything keyscope holds about the user as a zip archive; the user themself or an admin. Built in a
        worker thread into a temporary file that is streamed and then removed."""
        caller = await self.caller(request, user_id, scopes=EXPORT_SCOPES)
        if caller.refusal is not None:
            return caller.refusal
        fd, name = tempfile.mkstemp(prefix=f"keyscope-export-{user_id}-", suffix=".zip")
        os.close(fd)
        try:
            manifest = await asyncio.to_thread(user_data.export_user, self.settings, user_id, name)
        except Exception as exc:
            os.unlink(name)
            log.warning("export of user %s failed: %r", user_id, exc)
            return error_response(
                503, "store_unavailable", "the export failed; retry later", None, **{"Retry-After": "5"}
            )
        if manifest["total"] == 0:
            os.unlink(name)
            return error_response(404, "unknown_user", f"keyscope holds no data about user {user_id}", "user_id")
        log.info("user %s exported by %s: %d records", user_id, caller.principal.name, manifest["total"])
        return FileResponse(
            name,
            media_type="application/zip",
            filename=f"keyscope-user-{user_id}.zip",
            headers={"Cache-Control": "no-store"},
            background=BackgroundTask(os.unlink, name),
        )

    async def delete_user(self, request: Request, user_id: int) -> Response:
        """Delete the user from every store and record a tombstone; admins only. 200 with the records deleted per
        store (deleting a user keyscope holds nothing about still records the tombstone)."""
        caller = await self.caller(request, scopes=ADMIN_SCOPES)
        if caller.refusal is not None:
            return caller.refusal
        try:
            result = await asyncio.to_thread(user_data.delete_user, self.settings, user_id)
        except Exception as exc:
            log.warning("deletion of user %s failed: %r", user_id, exc)
            return error_response(
                503, "store_unavailable", "the deletion did not finish; retry it (it is idempotent)", None,
                **{"Retry-After": "5"},
            )
        log.info("user %s deleted by %s: %d records", user_id, caller.principal.name, result["total"])
        return JSONResponse(result, headers={"Cache-Control": "no-store"})

    # -- health ---------------------------------------------------------------------------------------------

    async def ready(self) -> JSONResponse:
        return await self.readiness(
            {"kafka": self.producer.ping, "clickhouse": self.reader.ping, "redis": self.cache.ping}
        )

    async def readiness(self, checks: dict[str, Callable[[], Awaitable[object]]]) -> JSONResponse:
        """Run each dependency check with a deadline; 200 when all pass, else 503 naming the failures."""

        async def run(check: Callable[[], Awaitable[object]]) -> str:
            try:
                await asyncio.wait_for(check(), timeout=2.0)
                return "ok"
            except Exception as exc:
                return f"unavailable: {type(exc).__name__}: {exc}"[:300]

        names = list(checks)
        results = dict(zip(names, await asyncio.gather(*(run(checks[n]) for n in names))))
        ready = all(v == "ok" for v in results.values())
        return JSONResponse({"ready": ready, "checks": results}, status_code=200 if ready else 503)

    async def close(self) -> None:
        await self.producer.close()
        await self.cache.close()
        await self.limiter.close()
