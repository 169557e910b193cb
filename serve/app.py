"""The Ray Serve applications: `app` (named `keyscope` in serve/config.yaml, route prefix /), deployments composed
with `.bind()`, and `live_app` (named `live`, route prefix /v1/live), the live-feedback WebSocket on its own.

The `keyscope` application:

- `ingress` (FastAPI, serve/routes.py): auth, rate limits, submissions to Kafka, and reads answered from the
  Redis cache. Cheap per request, so a few replicas carry the traffic.
- `insights`: computes a read from ClickHouse aggregates on a cache miss and back-fills the cache; CPU-heavy
  and bursty, so it scales on its own.
- `predictor` (serve/predictor.py): the promoted model versions, batched typing predictions and trajectories;
  it holds the networks and a cluster with GPUs gives it one, so it too scales on its own.
- `practice` (serve/practice.py): practice texts from the cache, and a background writer that holds the
  practice-text language model once a signature needs texts; a cluster with GPUs gives it one.
The `live` application has one deployment, `live` (serve/live.py): each /v1/live WebSocket is one request for its
whole life, so it is an application of its own, autoscaled on open sessions, and the REST ingress scales on REST
requests only. It reaches the `keyscope` application's `insights` and `predictor` deployments by name
(`CrossAppHandle`) rather than binding copies of them, and submits through the same Gateway code as POST /v1/tests.

`serve/config.yaml` sets each deployment's replicas, autoscaling and resources.

Deploy with `keyscope up`, or `serve deploy serve/config.yaml` / `serve run serve/config.yaml`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from app.config import Settings
from app.experiments.runtime import ExperimentRuntime
from serve.gateway import Gateway
from serve.live import GatewayLive
from serve.metrics import ServeMetrics
from serve.practice import HandlePractice, PracticeDeployment
from serve.predictor import HandlePredictions, PredictorDeployment
from serve.reads import UserReads
from serve.routes import build_app, build_live_app, set_gateway, set_live_backend

# The application holding the deployments the live application calls: its name in serve/config.yaml.
KEYSCOPE_APP = "keyscope"
LIVE_CALLS = ("insights", "predictor")  # tests/unit/test_cluster_manifests.py checks KEYSCOPE_APP has them

fastapi_app = build_app()
live_fastapi_app = build_live_app()


@serve.deployment(name="insights", ray_actor_options={"num_cpus": 0.25})
class InsightsDeployment:
    """Reads computed from ClickHouse (cache misses) and practice drills."""

    def __init__(self) -> None:
        self.reads = UserReads(Settings.from_env())

    async def read(self, user_id: int, read: str, params: dict[str, Any]) -> bytes | None:
        return await self.reads.read(user_id, read, params)

    async def practice(self, user_id: int, length: int, seed: int | None) -> bytes | None:
        return await self.reads.practice(user_id, length, seed)

    async def ping(self) -> None:
        await self.reads.ping()

    async def __del__(self) -> None:  # Serve awaits it when the replica shuts down
        await self.reads.close()


class HandleReader:
    """Reader (serve/gateway.py) that calls the insights deployment."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    async def read(self, user_id: int, read: str, params: dict[str, Any]) -> bytes | None:
        return await self.handle.read.remote(user_id, read, params)

    async def practice(self, user_id: int, length: int, seed: int | None) -> bytes | None:
        return await self.handle.practice.remote(user_id, length, seed)

    async def ping(self) -> None:
        await self.handle.ping.remote()


@serve.deployment(name="ingress", ray_actor_options={"num_cpus": 0.25})
@serve.ingress(fastapi_app)
class Ingress:
    """The HTTP entry point; its routes live in serve/routes.py."""

    def __init__(self, insights: DeploymentHandle, predictor: DeploymentHandle, practice: DeploymentHandle) -> None:
        self.gateway = Gateway(
            Settings.from_env(), HandleReader(insights), ServeMetrics(), HandlePredictions(predictor),
            HandlePractice(practice),
        )
        set_gateway(self.gateway)

    async def __del__(self) -> None:
        await self.gateway.close()


class CrossAppHandle:
    """A handle to a deployment of another Serve application, used like a DeploymentHandle
    (`await handle.method.remote(...)`).

    Two applications of one config deploy side by side in no set order, and `serve.get_deployment_handle` raises
    while the deployment does not exist yet, so the handle is looked up on the first call (in a thread: the
    lookup asks the Serve controller synchronously) and again after a failed lookup. Every call the live
    deployment makes through it is bounded (serve/live.py, HISTORY_TIMEOUT_S): until the other application is up,
    a session starts without the typist's history."""

    def __init__(self, deployment: str, app_name: str) -> None:
        self.deployment = deployment
        self.app_name = app_name
        self._handle: DeploymentHandle | None = None

    async def handle(self) -> DeploymentHandle:
        if self._handle is None:
            self._handle = await asyncio.to_thread(serve.get_deployment_handle, self.deployment, self.app_name)
        return self._handle

    def __getattr__(self, method: str) -> _CrossAppMethod:
        if method.startswith("_"):
            raise AttributeError(method)
        return _CrossAppMethod(self, method)


class _CrossAppMethod:
    def __init__(self, owner: CrossAppHandle, method: str) -> None:
        self.owner = owner
        self.method = method

    async def remote(self, *args: Any, **kwargs: Any) -> Any:
        handle = await self.owner.handle()
        return await getattr(handle, self.method).remote(*args, **kwargs)


@serve.deployment(name="live", ray_actor_options={"num_cpus": 0.25})
@serve.ingress(live_fastapi_app)
class LiveDeployment:
    """The /v1/live WebSocket (serve/live.py): auth, rate limits and submissions through its own Gateway, the
    typist's history from the `keyscope` application's insights cache, insights and predictor deployments."""

    def __init__(self) -> None:
        insights, predictor = (CrossAppHandle(name, KEYSCOPE_APP) for name in LIVE_CALLS)
        reader, predictions = HandleReader(insights), HandlePredictions(predictor)  # type: ignore[arg-type]
        settings = Settings.from_env()
        self.gateway = Gateway(settings, reader, ServeMetrics(), predictions)
        # Which hints a session gives while a `hint_style` experiment runs (its exposures are written in batches).
        experiments = ExperimentRuntime.started(settings)
        self.live = GatewayLive(self.gateway, experiments)
        set_live_backend(self.live)

    async def __del__(self) -> None:
        await self.live.close()
        await self.gateway.close()


_insights = InsightsDeployment.bind()
app = Ingress.bind(_insights, PredictorDeployment.bind(), PracticeDeployment.bind(_insights))
live_app = LiveDeployment.bind()
