# No `from __future__ import annotations` here: Serve re-binds the route methods, and FastAPI could then
# not resolve string annotations such as `Request`.
"""The Ray Serve application: one FastAPI ingress deployment (insights, predictor and practice text
deployments join it later). Deploy with `keyscope up`, or `serve run serve.app:app`."""

from typing import Any

from fastapi import Path, Query, Request
from fastapi.responses import JSONResponse
from ray import serve

from app.config import Settings
from app.schemas import MAX_USER_ID
from serve.api import KeyscopeAPI, build_app, not_found
from serve.models import Insights, KeyTable, Progress, Queued, TestList

fastapi_app = build_app()


@serve.deployment(name="ingress", num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(fastapi_app)
class Ingress:
    """Routes of the public API; the work is done by KeyscopeAPI (serve/api.py)."""

    def __init__(self) -> None:
        self.api = KeyscopeAPI(Settings.from_env())

    @fastapi_app.get("/healthz", include_in_schema=False)
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @fastapi_app.post(
        "/v1/tests",
        status_code=202,
        response_model=Queued,
        summary="Submit a finished typing test",
        responses={400: {}, 413: {}, 422: {}, 503: {}},
    )
    async def submit_test(self, request: Request) -> JSONResponse:
        return await self.api.submit(request)

    @fastapi_app.get(
        "/v1/users/{user_id}/tests", response_model=TestList, summary="A user's newest tests", responses={404: {}}
    )
    async def list_tests(
        self,
        user_id: int = Path(ge=1, le=MAX_USER_ID),
        limit: int = Query(20, ge=1, le=1000, description="How many tests, newest first"),
    ) -> Any:
        tests = await self.api.tests(user_id, limit)
        return {"user_id": user_id, "tests": tests} if tests else not_found(user_id)

    @fastapi_app.get(
        "/v1/users/{user_id}/insights", response_model=Insights, summary="A user's insights", responses={404: {}}
    )
    async def insights(self, user_id: int = Path(ge=1, le=MAX_USER_ID)) -> Any:
        value = await self.api.insights(user_id)
        return value if value is not None else not_found(user_id)

    @fastapi_app.get(
        "/v1/users/{user_id}/keys",
        response_model=KeyTable,
        summary="Per-key and per-letter-pair table for a keyboard heatmap",
        responses={404: {}},
    )
    async def keys(self, user_id: int = Path(ge=1, le=MAX_USER_ID)) -> Any:
        value = await self.api.key_table(user_id)
        return value if value is not None else not_found(user_id)

    @fastapi_app.get(
        "/v1/users/{user_id}/progress", response_model=Progress, summary="Progress series", responses={404: {}}
    )
    async def progress(self, user_id: int = Path(ge=1, le=MAX_USER_ID)) -> Any:
        value = await self.api.progress(user_id)
        return value if value is not None else not_found(user_id)

    async def __del__(self) -> None:
        await self.api.close()


app = Ingress.bind()
