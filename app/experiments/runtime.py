"""The experiment layer inside a serving process: which value of a factor a user gets, answered from memory.

A background thread keeps the experiments running or yet to start (re-read from ClickHouse every `refresh_s`; a
failed read keeps the last list) and flushes the exposures `choose` records every `flush_s`. `choose` itself does
no I/O: a hash, a list scan and an append, so an experiment never slows a route, and a ClickHouse outage only
delays the exposures (bounded, app/experiments/exposures.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from clickhouse_connect.driver.client import Client

from app.clickhouse.client import clickhouse_client
from app.config import Settings
from app.experiments.assignment import assign
from app.experiments.definition import Experiment
from app.experiments.exposures import ExposureRecorder
from app.experiments.store import Exposure, unfinished_experiments, write_exposures

log = logging.getLogger("keyscope.experiments")

REFRESH_S = 30.0
FLUSH_S = 2.0

T = TypeVar("T")


@dataclass(frozen=True)
class Assignment:
    """The variant a user got, and the value of the factor it sets."""

    experiment: str
    variant: str
    value: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.experiment, "variant": self.variant}


class ExperimentRuntime:
    """Running experiments in memory, exposures recorded in batches (see the module docstring)."""

    def __init__(
        self, connect: Callable[[], Client], *, refresh_s: float = REFRESH_S, flush_s: float = FLUSH_S
    ) -> None:
        self._connect = connect
        self._client: Client | None = None
        self._refresh_s = refresh_s
        self._flush_s = flush_s
        self._experiments: tuple[Experiment, ...] = ()
        self._refreshed_at = float("-inf")
        self.recorder = ExposureRecorder(self._write)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the route's side: memory only ---------------------------------------------------------------------------

    def choose(self, user_id: int, factor: str, now: datetime | None = None) -> Assignment | None:
        """The user's variant of the experiment running on `factor`, recorded as an exposure; None when none runs."""
        now = now or datetime.now(UTC)
        for experiment in self._experiments:
            if experiment.factor == factor and experiment.running(now):
                variant = assign(experiment, user_id)
                self.recorder.record(Exposure(user_id, experiment.name, variant.name, now))
                return Assignment(experiment.name, variant.name, variant.value)
        return None

    def experiments(self) -> tuple[Experiment, ...]:
        return self._experiments

    # -- the background thread's side ----------------------------------------------------------------------------

    def start(self) -> ExperimentRuntime:
        self._thread = threading.Thread(target=self._run, name="keyscope-experiments", daemon=True)
        self._thread.start()
        return self

    @classmethod
    def started(cls, settings: Settings) -> ExperimentRuntime:
        """A runtime on the configured ClickHouse, its background thread running: what a serving process holds."""
        return cls(lambda: clickhouse_client(settings.clickhouse_url)).start()

    def refresh(self) -> None:
        """Re-read the experiments running or yet to start (`choose` checks each one's start and end itself, so an
        experiment starts and ends on time between refreshes)."""
        self._experiments = tuple(self._with_client(unfinished_experiments))
        self._refreshed_at = time.monotonic()

    def flush(self) -> int:
        return self.recorder.flush()

    def _write(self, batch: list[Exposure]) -> int:
        return self._with_client(lambda client: write_exposures(client, batch))

    def _with_client(self, call: Callable[[Client], T]) -> T:
        if self._client is None:
            self._client = self._connect()
        try:
            return call(self._client)
        except Exception:
            self._drop_client()  # a broken connection is not reused
            raise

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # already broken
                pass

    def _run(self) -> None:
        while True:
            if time.monotonic() - self._refreshed_at >= self._refresh_s:
                try:
                    self.refresh()
                except Exception as exc:
                    log.warning("reading the running experiments failed (keeping the last list): %r", exc)
                    self._refreshed_at = time.monotonic()
            try:
                self.flush()
            except Exception as exc:
                log.warning("writing %d exposures failed (kept for the next flush): %r", self.recorder.pending(), exc)
            if self._stop.wait(self._flush_s):
                break

    def close(self) -> None:
        """Stop the thread and write what is buffered (a failure is logged: the exposures are lost)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.flush()
        except Exception as exc:
            log.warning("writing %d exposures on close failed: %r", self.recorder.pending(), exc)
        self._drop_client()

