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

    def _features_store(self) -> Any:
        if self._features is None:
            from app.features.online import FeatureStore

            self._features = FeatureStore(self.settings)
        return self._features

    def forecast(self, user_id: int, ahead: int = AHEAD_TESTS) -> dict[str, Any] | None:
        """{model_version, current_wpm, after_tests, wpm, low, high} or None."""
        try:
            predictor = self._current()
            if predictor is None:
                return None
            features = self._features_store().get(user_id)
            if features is None:
                return None
            return _shown(predictor.trajectory(features, ahead))
        except Exception as exc:  # a forecast is an extra: the read goes on without it
            log.warning("no model forecast for user %d: %s", user_id, exc)
            return None

    def forecast_many(self, user_ids: list[int], ahead: int = AHEAD_TESTS) -> dict[int, dict[str, Any]]:
        """`forecast` for many users, their features in one read; users without a forecast are absent."""
        try:
            predictor = self._current()
            if predictor is None:
                return {}
            features = self._features_store().get_many(user_ids)
        except Exception as exc:
            log.warning("no model forecasts for %d users: %s", len(user_ids), exc)
            return {}
        out = {}
        for user_id, typist in features.items():
            try:
                shown = _shown(predictor.trajectory(typist, ahead))
            except Exception as exc:
                log.warning("no model forecast for user %d: %s", user_id, exc)
                continue
            if shown is not None:
                out[user_id] = shown
        return out

    def close(self) -> None:
        for opened in (self._features, self._registry):
            if opened is not None and hasattr(opened, "close"):
                opened.close()


def _shown(trajectory: dict[str, Any]) -> dict[str, Any] | None:
    """What the reads show of a trajectory: its last point with the 80 % interval; None without points."""
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
