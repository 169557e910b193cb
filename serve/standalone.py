"""The same API without Ray: one uvicorn process running serve/routes.py (the REST app and /v1/live) with reads and
predictions computed in-process (predictions one request at a time: no batching).

The upper bound `keyscope bench serve` compares the Serve application with; also handy for debugging:

    .venv/bin/uvicorn --factory serve.standalone:create_app --host 127.0.0.1 --port 8001 --no-access-log
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.config import Settings
from app.experiments.runtime import ExperimentRuntime
from serve.gateway import Gateway
from serve.live import GatewayLive
from serve.predictions import LocalPredictions, open_service
from serve.reads import UserReads
from serve.routes import build_app, set_gateway, set_live_backend


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reads = UserReads(settings)
        predictions = LocalPredictions(open_service(settings))
        predictions.start()
        gateway = Gateway(settings, reads, predictions=predictions)
        set_gateway(gateway)
        live = GatewayLive(gateway, ExperimentRuntime.started(settings))
        set_live_backend(live)
        try:
            yield
        finally:
            await live.close()
            await gateway.close()
            await reads.close()
            await predictions.close()

    app = build_app(live=True)  # one process serves /v1/live too
    app.router.lifespan_context = lifespan
    return app
