"""The `predictor` deployment: the promoted model versions (serve/predictions.py) behind the prediction routes.

Typing predictions are batched (`@serve.batch`): the requests that arrive while a batch runs become the next one,
answered with one feature-store read and one forward pass per model. The registry is polled every
`Settings.model_poll_s` in the background and a newly promoted version swapped in whole, so no request waits for
a load and none is dropped. The ingress reaches it through `HandlePredictions`.
"""

from __future__ import annotations

import asyncio

from ray import serve
from ray.serve.handle import DeploymentHandle

from app.cache import encode_read
from app.config import Settings
from serve.metrics import PredictorMetrics
from serve.prediction_request import TypingRequest

# A batch of 64 texts of 60 characters is 3,840 rows through two small MLPs: milliseconds of CPU. Waiting 2 ms
# for a batch to fill costs little next to the 100 ms target of a prediction.
MAX_BATCH = 64
BATCH_WAIT_S = 0.002


@serve.deployment(name="predictor", ray_actor_options={"num_cpus": 0.25})
class PredictorDeployment:
    """Predictions from the promoted versions; starts (and answers "no promoted model yet") with none."""

    async def __init__(self) -> None:  # Serve awaits an async constructor on the replica's event loop
        # Imported here: every replica imports serve.app, and only this one needs torch.
        from serve.predictions import open_service

        self.metrics = PredictorMetrics()
        self.service = await asyncio.to_thread(open_service, Settings.from_env(), self.metrics.swapped)
        self._poller = asyncio.get_running_loop().create_task(self.service.poll())

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def predict_typing(self, requests: list[TypingRequest]) -> list[bytes | None]:
        self.metrics.batch(len(requests))
        # In a worker thread: the event loop keeps collecting the next batch meanwhile.
        answers = await asyncio.to_thread(self.service.predict_typing, requests)
        return [None if answer is None else encode_read(answer) for answer in answers]

    async def trajectory(self, user_id: int, tests: int) -> bytes | None:
        answer = await asyncio.to_thread(self.service.trajectory, user_id, tests)
        return None if answer is None else encode_read(answer)

    async def __del__(self) -> None:  # Serve awaits it when the replica shuts down
        self._poller.cancel()
        await asyncio.to_thread(self.service.close)


class HandlePredictions:
    """Predictions (serve/gateway.py) that call the predictor deployment."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    async def predict_typing(self, request: TypingRequest) -> bytes | None:
        return await self.handle.predict_typing.remote(request)

    async def trajectory(self, user_id: int, tests: int) -> bytes | None:
        return await self.handle.trajectory.remote(user_id, tests)
