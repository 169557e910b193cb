"""The Ray Serve application: one FastAPI ingress deployment (insights, predictor and practice text
deployments join it later). Deploy with `keyscope up`, or `serve run serve.app:app`."""

from __future__ import annotations

from ray import serve

from app.config import Settings
from serve.api import KeyscopeAPI, build_app

# One Ingress instance per replica process, so the handlers reach it through this module.
_replica: dict[str, KeyscopeAPI] = {}
fastapi_app = build_app(lambda request: _replica["api"])


@serve.deployment(
    name="ingress",
    num_replicas=1,
    max_ongoing_requests=256,
    ray_actor_options={"num_cpus": 0.25},
)
@serve.ingress(fastapi_app)
class Ingress:
    def __init__(self) -> None:
        _replica["api"] = KeyscopeAPI(Settings.from_env())

    async def __del__(self) -> None:
        api = _replica.pop("api", None)
        if api is not None:
            await api.close()


app = Ingress.bind()
