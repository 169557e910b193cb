"""Predictions from loaded model versions, for the serving deployment and the ingest job's drift check.

`TypingPredictor` holds the networks of one version per model (any of them may be missing) and answers, for many
requests at once (one forward pass per model over all their characters):

    predict_typing([(features | None, text, layout), …]) → per request: time_ms and error_prob per character,
        predicted_wpm and predicted_accuracy
    trajectory(features | None, tests) → the predicted WPM after each of the next `tests` tests with an 80 % interval

A typist without features is predicted from the population (their inputs say "no history"): never an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.features.summary import UserFeatures
from app.models.encode import Encoded, TypistView, encode_batch
from app.models.history import HORIZONS, QUANTILES, current_speed, encode_history
from app.models.nets import load_artifact

_MS_PER_CHAR_AT_1_WPM = 12_000.0
_MEDIAN = QUANTILES.index(0.5)
VIEW_CACHE = 1_000  # typists' views kept per predictor (≈ 100 KB each)


@dataclass(frozen=True)
class LoadedModel:
    kind: str
    version: str
    net: torch.nn.Module
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path, version: str) -> LoadedModel:
        kind, net, meta = load_artifact(folder)
        return cls(kind, version, net, meta)


def _forward(model: LoadedModel, encoded: Encoded) -> np.ndarray:
    with torch.inference_mode():
        out = model.net(torch.from_numpy(encoded.cats), torch.from_numpy(encoded.numeric))
    return out.numpy()


class TypingPredictor:
    """The loaded versions of the three models (module docstring)."""

    def __init__(self, models: dict[str, LoadedModel]) -> None:
        self.models = dict(models)
        # A typist's view is rebuilt only when their features change (another test folded in): returning typists
        # ask again and again between two tests.
        self._views: dict[tuple[int, int, int], TypistView] = {}

    def view(self, features: UserFeatures | None) -> TypistView:
        if features is None:
            return TypistView.of(None)
        key = (features.user_id, features.tests, features.last_ms)
        view = self._views.get(key)
        if view is None:
            if len(self._views) >= VIEW_CACHE:
                self._views.clear()
            view = self._views[key] = TypistView.of(features)
        return view

    def versions(self) -> dict[str, str]:
        return {kind: model.version for kind, model in self.models.items()}

    def predict_typing(self, requests: list[tuple[UserFeatures | None, str, str]]) -> list[dict[str, Any]]:
        """Per request: chars [{char, time_ms, error_prob}], predicted_wpm, predicted_accuracy, model_version."""
        pattern, error = self.models.get("pattern"), self.models.get("error")
        if pattern is None or error is None:
            raise LookupError("no promoted pattern and error models to predict with")
        views: dict[int, TypistView] = {}
        batch = []
        for features, text, layout in requests:
            if id(features) not in views:
                views[id(features)] = self.view(features)
            batch.append((text, layout, views[id(features)]))
        encoded = encode_batch(batch)
        times = np.exp(_forward(pattern, encoded) + encoded.base)
        errors = 1.0 / (1.0 + np.exp(-_forward(error, encoded)))
        # Rounded once for the whole batch: per-value round() calls cost as much as the networks.
        time_values = np.round(times.astype(np.float64), 1).tolist()
        error_values = np.round(errors.astype(np.float64), 4).tolist()
        answers = []
        at = 0
        version = f"pattern:{pattern.version},error:{error.version}"
        lengths = [len(text) for text, _, _ in batch]
        owner = np.repeat(np.arange(len(batch)), lengths)
        error_sums = np.bincount(owner, weights=errors, minlength=len(batch)).tolist()
        for i, (text, _, _) in enumerate(batch):
            n = lengths[i]
            t = times[at : at + n]
            chars = [
                {"char": c, "time_ms": a, "error_prob": b}
                for c, a, b in zip(text, time_values[at : at + n], error_values[at : at + n], strict=True)
            ]
            # WPM of the text: (characters − 1) / 5 per minute over the time from the first press to the last.
            seconds = float(t[1:].sum()) / 1000.0 if n > 1 else 0.0
            wpm = (n - 1) / 5.0 / (seconds / 60.0) if seconds > 0 else None
            answers.append(
                {
                    "model_version": version,
                    "chars": chars,
                    "predicted_wpm": None if wpm is None else round(wpm, 2),
                    "predicted_accuracy": round(1.0 - error_sums[i] / n, 4) if n else None,
                }
            )
            at += n
        return answers

    def pattern_times(self, features: UserFeatures | None, text: str, layout: str) -> np.ndarray:
        """The pattern model's time to type (ms) of each character of `text` (the drift check's prediction)."""
        return self.pattern_times_many([(TypistView.of(features), text, layout)])[0]

    def pattern_times_many(self, requests: list[tuple[TypistView, str, str]]) -> list[np.ndarray]:
        """`pattern_times` of many (typist view, text, layout) in one forward pass: per call the network costs
        ~0.4 ms CPU of overhead, as much as a whole test's characters (the drift check predicts many tests)."""
        pattern = self.models.get("pattern")
        if pattern is None:
            raise LookupError("no promoted pattern model")
        encoded = encode_batch([(text, layout, view) for view, text, layout in requests])
        times = np.exp(_forward(pattern, encoded) + encoded.base)
        return np.split(times, np.cumsum([len(text) for _, text, _ in requests])[:-1])

    def trajectory(self, features: UserFeatures | None, tests: int) -> dict[str, Any]:
        """The predicted WPM after each of the next `tests` tests: [{test, wpm, low, high}] (80 % interval),
        interpolated in log space between the model's horizons (1, 5, 20) and held flat beyond the last."""
        model = self.models.get("trajectory")
        if model is None:
            raise LookupError("no promoted trajectory model")
        wpm = features.recent_wpm() if features is not None else np.zeros(0)
        count = features.tests if features is not None else 0
        ref = current_speed(wpm)
        if not np.isfinite(ref):
            return {"model_version": model.version, "current_wpm": None, "points": [], "reason": "no tests yet"}
        x = np.stack([encode_history(wpm, count, h)[0] for h in HORIZONS])
        with torch.inference_mode():
            quantiles = model.net(torch.from_numpy(x)).numpy()  # [horizons, quantiles] of ln(wpm / ref)
        steps = np.arange(1, tests + 1)
        horizons = np.array(HORIZONS, dtype=np.float64)
        curve = [np.interp(steps, horizons, quantiles[:, q]) for q in range(len(QUANTILES))]
        points = [
            {
                "test": int(step),
                "wpm": round(float(ref * np.exp(curve[_MEDIAN][i])), 2),
                "low": round(float(ref * np.exp(curve[0][i])), 2),
                "high": round(float(ref * np.exp(curve[-1][i])), 2),
            }
            for i, step in enumerate(steps)
        ]
        return {"model_version": model.version, "current_wpm": round(ref, 2), "interval": 0.8, "points": points}
