"""The predictor's work without Ray: the promoted model versions, swapped in as they are promoted, and the answers
of the prediction routes for batches of requests, each typist read from the online feature store.

serve/predictor.py runs it as the `predictor` deployment (batched requests, the registry polled in the
background); serve/standalone.py runs it in-process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from app.cache import encode_read
from app.config import Settings
from app.features.online import FeatureStore
from app.features.summary import UserFeatures
from app.models.history import QUANTILES
from app.models.nets import KINDS
from app.models.predictor import TypingPredictor
from app.models.promoted import PromotedVersions, Registry
from app.models.registry import ModelRegistry
from serve.prediction_request import TypingRequest

log = logging.getLogger("keyscope.predictor")
TYPING_MODELS = ("pattern", "error")  # what POST /v1/predict/typing needs; the trajectory route needs "trajectory"
INTERVAL = round(QUANTILES[-1] - QUANTILES[0], 2)  # the trajectory's low..high: its outer quantiles


class FeatureSource(Protocol):
    """Typists' features: the online feature store (app/features/online.py)."""

    def get(self, user_id: int) -> UserFeatures | None: ...

    def get_many(self, user_ids: list[int]) -> dict[int, UserFeatures]: ...

    def close(self) -> None: ...


PromotedModels = Registry  # where the serving versions come from: the model registry


class PredictionService:
    """One TypingPredictor of the promoted versions, replaced whole when a version changes (never mutated), so a
    batch that took it finishes on it while the next batch gets the new one."""

    def __init__(
        self,
        registry: PromotedModels,
        features: FeatureSource,
        poll_s: float,
        on_swap: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.registry = registry
        self.features = features
        self.poll_s = poll_s
        self._versions = PromotedVersions(registry, KINDS, on_swap)

    @property
    def on_swap(self) -> Callable[[list[str]], None] | None:
        """Told "model version" of each change swapped in (the deployment's metrics)."""
        return self._versions.on_swap

    @on_swap.setter
    def on_swap(self, callback: Callable[[list[str]], None] | None) -> None:
        self._versions.on_swap = callback

    @property
    def predictor(self) -> TypingPredictor | None:
        return self._versions.predictor

    def versions(self) -> dict[str, str]:
        predictor = self._versions.predictor
        return {} if predictor is None else predictor.versions()

    # -- the promoted versions -------------------------------------------------------------------------------------

    def refresh(self) -> list[str]:
        """Swap in the promoted versions that changed (app/models/promoted.py); returns "model version" of each."""
        return self._versions.refresh()

    async def poll(self) -> None:
        """Refresh every poll_s until cancelled; a failed look is logged and retried at the next."""
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:
                log.warning("model registry poll failed: %r", exc)

    # -- predictions ------------------------------------------------------------------------------------------------

    def predict_typing(self, requests: Sequence[TypingRequest]) -> list[dict[str, Any] | None]:
        """Each request's prediction (None for all when no pattern and error versions are promoted yet): one
        feature-store read and one TypingPredictor.predict_typing call for the whole batch. A typist without
        features is predicted from the population."""
        predictor = self._versions.predictor  # the batch's one version, whatever a swap does meanwhile
        if predictor is None or any(kind not in predictor.models for kind in TYPING_MODELS):
            return [None] * len(requests)
        features = self.features.get_many(sorted({r.user_id for r in requests}))
        answers = predictor.predict_typing([(features.get(r.user_id), r.text, r.layout) for r in requests])
        return [{"user_id": r.user_id, "text": r.text, **answer} for r, answer in zip(requests, answers, strict=True)]

    def trajectory(self, user_id: int, tests: int) -> dict[str, Any] | None:
        """The predicted WPM over the user's next `tests` tests (None when no trajectory version is promoted yet);
        no points, with the reason, for a user without tests."""
        predictor = self._versions.predictor
        if predictor is None or "trajectory" not in predictor.models:
            return None
        answer = predictor.trajectory(self.features.get(user_id), tests)
        return {
            "user_id": user_id,
            "model_version": answer["model_version"],
            "current_wpm": answer["current_wpm"],
            "interval": INTERVAL,
            "points": answer["points"],
            **({"reason": answer["reason"]} if "reason" in answer else {}),
        }

    def close(self) -> None:
        self.features.close()
        close = getattr(self.registry, "close", None)
        if close is not None:
            close()


def open_service(settings: Settings, on_swap: Callable[[list[str]], None] | None = None) -> PredictionService:
    """The service on the settings' registry (read only: replicas never migrate) and feature store, with whatever
    is promoted loaded; a registry that does not answer yet is only logged (the poll retries)."""
    registry = ModelRegistry(settings, migrate=False)
    service = PredictionService(registry, FeatureStore(settings), settings.model_poll_s, on_swap)
    try:
        service.refresh()
    except Exception as exc:
        log.warning("model registry unavailable at start: %r; polling every %g s", exc, settings.model_poll_s)
    return service


class LocalPredictions:
    """The gateway's Predictions (serve/gateway.py) in this process, one request at a time (serve/standalone.py);
    the Serve app batches them in the predictor deployment instead."""

    def __init__(self, service: PredictionService) -> None:
        self.service = service
        self._poller: asyncio.Task | None = None

    def start(self) -> None:
        self._poller = asyncio.get_running_loop().create_task(self.service.poll())

    async def predict_typing(self, request: TypingRequest) -> bytes | None:
        [answer] = await asyncio.to_thread(self.service.predict_typing, [request])
        return None if answer is None else encode_read(answer)

    async def trajectory(self, user_id: int, tests: int) -> bytes | None:
        answer = await asyncio.to_thread(self.service.trajectory, user_id, tests)
        return None if answer is None else encode_read(answer)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        await asyncio.to_thread(self.service.close)
