"""The trajectory model's forecast inside the insights and progress reads (`model_forecast`, beside keybr's
`forecast`): the promoted version's predicted WPM a number of tests ahead, with its 80 % interval, from the typist's
online features. The insights job and the insights deployment each hold one ModelForecaster; it looks for a newly
promoted version at most every `refresh_s` and loads torch only once one exists, so a deployment without models pays
nothing. A forecast that cannot be made (no model, no features, the registry or Redis down) is None: the reads
never fail for it."""

from __future__ import annotations

import logging
from typing import Any

from app.config import Settings
from app.models.promoted import PromotedVersions

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
        self._versions: PromotedVersions | None = None
        self._registry = registry
        self._features = features

    def _current(self) -> Any:
        if self._versions is None:
            if self._registry is None:
                from app.models.registry import ModelRegistry

                self._registry = ModelRegistry(self.settings, migrate=False)
            self._versions = PromotedVersions(self._registry, ("trajectory",))
        return self._versions.current(self.refresh_s)

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
