# No `from __future__ import annotations`: FastAPI resolves these signatures at import time.
"""The public HTTP API (FastAPI): routes, OpenAPI schema, error shape and the dashboard's static files.

Routes are module-level functions that reach the replica's Gateway through `set_gateway`, so the same app runs
inside the Serve ingress (serve/app.py) and under plain uvicorn (serve/standalone.py).

The /v1/live WebSocket is an app of its own, `build_live_app`: under Serve it is the `live` application
(serve/config.yaml, route prefix /v1/live), so its long-lived connections never count against the REST ingress's
autoscaling; plain uvicorn adds it to the REST app (`build_app(live=True)`).
"""

import time
from pathlib import Path as FilePath
from typing import Any

from fastapi import FastAPI, Path, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.result_pages import decode_cursor
from app.schemas import MAX_USER_ID
from serve.gateway import Gateway, error_response
from serve.live import GatewayLive, live_session
from serve.models import (
    PREDICT_TYPING_SCHEMA,
    SUBMISSION_SCHEMA,
    Insights,
    KeyTable,
    Practice,
    PracticeText,
    Progress,
    Queued,
    SignatureTexts,
    TestList,
    Trajectory,
    TypingPrediction,
)
from serve.prediction_request import TRAJECTORY_DEFAULT_TESTS, TRAJECTORY_MAX_TESTS

STATIC_DIR = FilePath(__file__).with_name("static")
SUBMISSION_BODY = {"schema": SUBMISSION_SCHEMA}
UserId = Path(ge=1, le=MAX_USER_ID, description="The typist's id on the platform")

LIVE_PATH = "/v1/live"

_gateway: Gateway | None = None
_live: GatewayLive | None = None


def set_gateway(gateway: Gateway) -> None:
    """Install this process's Gateway (one per Serve replica or uvicorn worker)."""
    global _gateway
    _gateway = gateway


def set_live_backend(backend: GatewayLive) -> None:
    """Install this process's live sessions' backend (one per live replica or uvicorn worker)."""
    global _live
    _live = backend


def live_backend() -> GatewayLive:
    if _live is None:
        raise RuntimeError("the live sessions' backend is not installed (set_live_backend)")
    return _live


async def live_socket(websocket: WebSocket) -> None:
    await live_session(live_backend(), websocket)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(exc.status_code, "http_error", str(exc.detail))


def gateway() -> Gateway:
    if _gateway is None:
        raise RuntimeError("the API's gateway is not installed (set_gateway)")
    return _gateway


class RouteTimer:
    """ASGI middleware: each request's latency by route template, for the Prometheus histogram."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _gateway is None:
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or ("/static" if scope["path"].startswith("/static/") else "unmatched")
            _gateway.metrics.request(name, scope["method"], status, time.perf_counter() - start)


READ_ERRORS = {
    401: {"description": "No, a malformed, a forged or an expired bearer credential"},
    403: {"description": "The credential may not read this user"},
    404: {"description": "The user has no tests"},
    429: {"description": "Rate limit exceeded; see Retry-After"},
    503: {"description": "A store is unavailable; see Retry-After"},
}
PREDICT_ERRORS = {
    **{code: READ_ERRORS[code] for code in (401, 403, 429)},
    503: {"description": "No model version promoted yet (code no_model), or the predictor is unavailable; see "
          "Retry-After"},
}  # fmt: skip


def build_app(live: bool = False) -> FastAPI:
    """The REST API, the dashboard and its static files; with `live`, the /v1/live WebSocket too (plain uvicorn)."""
    app = FastAPI(
        title="keyscope",
        version="0.2.0",
        description=(
            "Typing analytics: submit typing tests, read per-test metrics and per-user insights. "
            "Every /v1 route takes `Authorization: Bearer <credential>`: a service API key (a typing platform's "
            "backend), a signed user token (that user's data only) or an admin token."
        ),
    )
    app.add_middleware(RouteTimer)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(422, "invalid_request", str(first.get("msg")), field)

    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]

    @app.get("/healthz", summary="Liveness: the process answers", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: Kafka, ClickHouse and Redis answer", tags=["health"],
             responses={503: {"description": "A dependency is unavailable; `checks` says which"}})
    async def readyz() -> Response:
        return await gateway().ready()

    @app.post(
        "/v1/tests", status_code=202, response_model=Queued, summary="Submit a finished typing test", tags=["tests"],
        responses={400: {}, 401: {}, 403: {}, 413: {}, 422: {}, 429: {}, 503: {}},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": SUBMISSION_BODY}}},
    )
    async def submit_test(request: Request) -> Response:
        return await gateway().submit(request)

    @app.get("/v1/users/{user_id}/tests", response_model=TestList, summary="A user's tests, newest first",
             tags=["users"], responses=READ_ERRORS)
    async def list_tests(
        request: Request,
        user_id: int = UserId,
        limit: int = Query(20, ge=1, le=1000, description="Tests per page"),
        cursor: str | None = Query(None, max_length=400, description="`next` of the previous page"),
    ) -> Any:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            try:
                params["before"] = decode_cursor(cursor)
            except ValueError as exc:
                return error_response(422, "invalid_request", str(exc), "cursor")
        return await gateway().read(request, user_id, "tests", params)

    @app.get("/v1/users/{user_id}/insights", response_model=Insights, summary="A user's insights",
             tags=["users"], responses=READ_ERRORS)
    async def insights(request: Request, user_id: int = UserId) -> Any:
        return await gateway().read(request, user_id, "insights")

    @app.get("/v1/users/{user_id}/keys", response_model=KeyTable, tags=["users"], responses=READ_ERRORS,
             summary="Per-key and per-letter-pair table for a keyboard heatmap")
    async def keys(request: Request, user_id: int = UserId) -> Any:
        return await gateway().read(request, user_id, "keys")

    @app.get("/v1/users/{user_id}/progress", response_model=Progress, summary="Progress series",
             tags=["users"], responses=READ_ERRORS)
    async def progress(request: Request, user_id: int = UserId) -> Any:
        return await gateway().read(request, user_id, "progress")

    @app.get("/v1/users/{user_id}/practice", response_model=Practice, tags=["users"], responses=READ_ERRORS,
             summary="A practice passage aimed at the user's weak keys and letter pairs")
    async def practice(
        request: Request,
        user_id: int = UserId,
        length: int = Query(200, ge=20, le=2000, description="About how many characters"),
        seed: int | None = Query(None, ge=0, le=2**31 - 1, description="Same seed, same passage"),
    ) -> Any:
        return await gateway().practice(request, user_id, length, seed)

    @app.get(
        "/v1/users/{user_id}/practice-text", response_model=PracticeText, tags=["practice"], responses=READ_ERRORS,
        summary="A practice text written for the user's weak keys and letter pairs, or a drill while none is",
        description="A text the language model wrote ahead for this kind of typist (`generator` 'lm') that the user "
        "has not been served in their last few requests; when there is none yet, a rule-based drill at once "
        "(`generator` 'rules') while one is written. A user without tests gets general practice text.",
    )
    async def practice_text(
        request: Request,
        user_id: int = UserId,
        words: int = Query(30, ge=5, le=200, description="About how many words"),
    ) -> Any:
        return await gateway().practice_text(request, user_id, words)

    @app.get(
        "/v1/practice-texts/{signature}", response_model=SignatureTexts, tags=["practice"],
        summary="The texts written for a kind of typist (no personal data; cacheable by a CDN)",
        description="`Cache-Control: public`, with an ETag (If-None-Match answers 304). A signature with no texts "
        "yet answers an empty list, cached briefly, and is queued for writing.",
        responses={
            **{code: READ_ERRORS[code] for code in (401, 429, 503)},
            422: {"description": "Not a practice signature (`field`: signature)"},
        },
    )
    async def signature_texts(
        request: Request,
        signature: str = Path(max_length=64, description="layout-language-sSKILL-units, e.g. qwerty-en-s2-ed.q.th"),
    ) -> Any:
        return await gateway().signature_texts(request, signature)

    @app.post(
        "/v1/predict/typing", response_model=TypingPrediction, tags=["predictions"],
        summary="How a user would type a text: time and error probability per character, WPM and accuracy",
        description="From the promoted pattern and error models and the user's features; a user without tests is "
        "predicted from the population.",
        responses={400: {"description": "The body is not JSON"}, 413: {}, 422: {"description": "A field is wrong"},
                   **PREDICT_ERRORS},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": PREDICT_TYPING_SCHEMA}}}},
    )  # fmt: skip
    async def predict_typing(request: Request) -> Response:
        return await gateway().predict_typing(request)

    @app.get("/v1/users/{user_id}/trajectory", response_model=Trajectory, tags=["predictions"],
             summary="A user's predicted WPM over their next tests, with an 80 % interval",
             responses={422: {"description": "A parameter is out of range"}, **PREDICT_ERRORS})
    async def trajectory(
        request: Request,
        user_id: int = UserId,
        tests: int = Query(
            TRAJECTORY_DEFAULT_TESTS, ge=1, le=TRAJECTORY_MAX_TESTS, description="How many coming tests to predict"
        ),
    ) -> Any:
        return await gateway().trajectory(request, user_id, tests)

    @app.get(
        "/v1/users/{user_id}/export", tags=["privacy"], response_class=Response,
        summary="Everything keyscope holds about a user, as a zip archive (the user themself or an admin)",
        description="A folder per store (ClickHouse tables, pending Kafka messages, Redis keys, …) of JSON Lines "
        "files and `manifest.json` with the records per store and part. A service key may not export.",
        responses={
            200: {"description": "The archive", "content": {"application/zip": {"schema": {"type": "string",
                                                                                        "format": "binary"}}}},
            **{code: READ_ERRORS[code] for code in (401, 429, 503)},
            403: {"description": "A service key, or another user's token"},
            404: {"description": "keyscope holds no data about the user"},
        },
    )
    async def export_user(request: Request, user_id: int = UserId) -> Response:
        return await gateway().export(request, user_id)

    @app.delete(
        "/v1/users/{user_id}", tags=["privacy"],
        summary="Delete everything keyscope holds about a user (admins only)",
        description="Deletes the user from every store and records a tombstone, so the ingest job drops the user's "
        "messages still queued from before the deletion. Idempotent. Answers the records deleted per store.",
        responses={
            200: {"description": "Records deleted per store (and per part: table, key kind)", "content": {
                "application/json": {"schema": {"type": "object", "required": ["user_id", "deleted_at", "stores"]}}}},
            **{code: READ_ERRORS[code] for code in (401, 429)},
            403: {"description": "Not an admin token"},
            503: {"description": "A store is unavailable; retry (see Retry-After)"},
        },
    )
    async def delete_user(request: Request, user_id: int = UserId) -> Response:
        return await gateway().delete_user(request, user_id)

    if live:  # not in the OpenAPI schema (it has no WebSockets); the protocol is in docs/live.md
        app.add_api_websocket_route(LIVE_PATH, live_socket)

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "dashboard.html", headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path, operations in schema["paths"].items():
                if path.startswith("/v1/"):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def build_live_app() -> FastAPI:
    """The `live` Serve application's routes (serve/app.py). Serve mounts it at its route prefix, /v1/live, and
    routes by the path below the prefix: the WebSocket is at the prefix itself ("", or "/" with a trailing slash),
    and GET /v1/live/healthz answers once a live replica does (the local stack waits for it)."""
    app = FastAPI(title="keyscope live", openapi_url=None, docs_url=None, redoc_url=None)
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_api_websocket_route("", live_socket)
    app.add_api_websocket_route("/", live_socket)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "app": "live"}

    return app
