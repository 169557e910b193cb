"""The promoted versions of some models, loaded and kept current: the one mechanism behind the predictor
deployment, the ingest job's drift check and the insights' model forecast.

`refresh()` asks the registry for each model's promoted version, loads the ones that changed (unchanged ones are
kept), builds a new TypingPredictor holding them all and swaps it in with one assignment, so a caller that took the
previous predictor finishes on it. A version whose artifact fails to load, or holds another model's network, is
logged and skipped: the loaded one keeps serving. `current(interval)` refreshes at most once per interval. torch is
imported by the first load, not by importing this module.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from app.models.registry import MODELS, ModelVersion

if TYPE_CHECKING:
    from app.models.predictor import LoadedModel, TypingPredictor

log = logging.getLogger("keyscope.models")


class Registry(Protocol):
    """Where the promoted versions come from: the model registry (app/models/registry.py)."""

    def promoted(self, model: str) -> ModelVersion | None: ...

    def artifact_path(self, version: ModelVersion) -> Path: ...


class PromotedVersions:
    def __init__(
        self,
        registry: Registry,
        kinds: tuple[str, ...] = MODELS,
        on_swap: Callable[[list[str]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.kinds = kinds
        self.on_swap = on_swap  # told "model version" of each change swapped in
        self._clock = clock
        self._predictor: TypingPredictor | None = None
        self._entries: dict[str, ModelVersion] = {}
        self._refreshing = threading.Lock()  # two refreshes never load the same version twice
        self._checked_at: float | None = None

    @property
    def predictor(self) -> TypingPredictor | None:
        return self._predictor

    def entry(self, kind: str) -> ModelVersion | None:
        """The registry's record of the loaded version of `kind` (its metrics, data window, …)."""
        return self._entries.get(kind)

    def refresh(self) -> list[str]:
        """Swap in each model's promoted version (module docstring); returns "model version" of each change. A
        registry that fails to answer raises with nothing swapped."""
        # Here, not at the top: torch loads only in a process that has a model to load (the ingest job's Ray Data
        # workers and the insights job import the modules that hold one of these, and never need it).
        from app.models.predictor import LoadedModel, TypingPredictor

        with self._refreshing:
            current = self._predictor
            models: dict[str, LoadedModel] = dict(current.models) if current is not None else {}
            entries = dict(self._entries)
            changed = []
            for kind in self.kinds:
                entry = self.registry.promoted(kind)
                if entry is None or (kind in models and models[kind].version == entry.version):
                    continue
                path = self.registry.artifact_path(entry)
                try:
                    loaded = LoadedModel.load(path, entry.version)
                except Exception as exc:
                    log.error("cannot load %s version %s from %s: %r; serving what is loaded", kind, entry.version,
                              path, exc)  # fmt: skip
                    continue
                if loaded.kind != kind:
                    log.error("%s version %s: its artifact %s holds a %s model; not served", kind, entry.version,
                              path, loaded.kind)  # fmt: skip
                    continue
                models[kind] = loaded
                entries[kind] = entry
                changed.append(f"{kind} {entry.version}")
            if changed:
                self._entries = entries
                self._predictor = TypingPredictor(models)  # built fully, then one reference assignment
                log.info("loaded %s", ", ".join(changed))
                if self.on_swap is not None:
                    self.on_swap(changed)
            return changed

    def current(self, interval: float) -> TypingPredictor | None:
        """The predictor, the registry asked again once `interval` seconds passed since the last look (a look that
        failed, raising, waits as long)."""
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= interval:
            self._checked_at = now
            self.refresh()
        return self._predictor
