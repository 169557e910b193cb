"""The Ray Serve application: deployments composed with `.bind()`.

- `ingress` (FastAPI, serve/routes.py): auth, rate limits, submissions to Kafka, and reads answered from the
  Redis cache. Cheap per request, so a few replicas carry the traffic.
- `insights`: computes a read from ClickHouse aggregates on a cache miss and back-fills the cache; CPU-heavy
  and bursty, so it scales on its own.
- `predictor` (serve/predictor.py): the promoted model versions, batched typing predictions and trajectories;
  it holds the networks and a cluster with GPUs gives it one, so it too scales on its own.
- `practice` (serve/practice.py): practice texts from the cache, and a background writer that holds the
  practice-text language model once a signature needs texts; a cluster with GPUs gives it one.
`serve/config.yaml` sets each deployment's replicas, autoscaling and resources.

Deploy with `keyscope up`, or `serve run serve/config.yaml`.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from app.config import Settings
from serve.gateway import Gateway
from serve.metrics import ServeMetrics
from serve.practice import HandlePractice, PracticeDeployment
from serve.predictor import HandlePredictions, PredictorDeployment
from serve.reads import UserReads
from serve.routes import build_app, set_gateway

fastapi_app = build_app()


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


_insights = InsightsDeployment.bind()
app = Ingress.bind(_insights, PredictorDeployment.bind(), PracticeDeployment.bind(_insights))
