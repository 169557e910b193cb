"""The trajectory model's forecast inside the insights and progress reads (`model_forecast`, beside keybr's
`forecast`): the promoted version's predicted WPM a number of tests ahead, with its 80 % interval, from the typist's
online features. The insights job and the insights deployment each hold one ModelForecaster; it looks for a newly
promoted version at most every `refresh_s` and loads torch only once one exists, so a deployment without models pays
nothing. A forecast that cannot be made (no model, no features, the registry or Redis down) is None: the reads
never fail for it."""

from __future__ import annotations

import logging
import time
from typing import Any

from app.config import Settings

log = logging.getLogger("keyscope.forecast")

AHEAD_TESTS = 20


class ModelForecaster:
    def __init__(
        self, settings: Settings, refresh_s: float = 60.0, *, registry: Any = None, features: Any = None
    ) -> None:
        """`registry` (a ModelRegistry) and `features` (anything with `get(user_id)`) default to the settings' own,
        opened when first needed."""
        self.settings = settings
        self.refresh_s = refresh_s
        self._checked = float("-inf")
        self._version: str | None = None
        self._predictor: Any = None
        self._registry = registry
        self._features = features

    def _current(self) -> Any:
        if time.monotonic() - self._checked < self.refresh_s:
            return self._predictor
        self._checked = time.monotonic()
        if self._registry is None:
            from app.models.registry import ModelRegistry

            self._registry = ModelRegistry(self.settings, migrate=False)
        promoted = self._registry.promoted("trajectory")
        if promoted is None or promoted.version == self._version:
            return self._predictor
        from app.models.predictor import LoadedModel, TypingPredictor

        loaded = LoadedModel.load(self._registry.artifact_path(promoted), promoted.version)
        self._predictor, self._version = TypingPredictor({"trajectory": loaded}), promoted.version
        return self._predictor

    def forecast(self, user_id: int, ahead: int = AHEAD_TESTS) -> dict[str, Any] | None:
        """{model_version, current_wpm, after_tests, wpm, low, high} or None."""
        try:
            predictor = self._current()
            if predictor is None:
                return None
            if self._features is None:
                from app.features.online import FeatureStore

                self._features = FeatureStore(self.settings)
            features = self._features.get(user_id)
            if features is None:
                return None
            trajectory = predictor.trajectory(features, ahead)
        except Exception as exc:  # a forecast is an extra: the read goes on without it
            log.warning("no model forecast for user %d: %s", user_id, exc)
            return None
        if not trajectory["points"]:
            return None
        last = trajectory["points"][-1]
        return {
            "model_version": trajectory["model_version"],
            "current_wpm": trajectory["current_wpm"],
            "after_tests": last["test"],
            "wpm": last["wpm"],
            "low": last["low"],
            "high": last["high"],
            "interval": 0.8,
        }

    def close(self) -> None:
        for opened in (self._features, self._registry):
            if opened is not None and hasattr(opened, "close"):
                opened.close()
