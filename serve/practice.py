"""The `practice` deployment: practice texts written for a kind of typist, served from the cache
(app/practice/serving.py), with the rule-based drill at once on a miss.

- `text(user_id, words)`: the typist's text (the generator chosen by a running experiment, if one varies it:
  app/experiments/runtime.py). Their insights come from the Redis cache, else from the insights
  deployment (a user with no tests gets general practice text); choosing and recording the text is Redis and, on a
  cold signature, ClickHouse, so it runs in a worker thread.
- `texts(signature)`: a signature's texts with no personal data, for the CDN route; a signature with none is queued.
- With `Settings.practice_live_generation`, a background writer (serve/practice_writer.py) writes texts for the
  signatures requests missed, so the next request gets one.

It scales apart from the ingress (serve/config.yaml) and, on a cluster with GPUs, holds one for the writer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from app.cache import InsightsCache, encode_read
from app.config import Settings
from app.experiments.runtime import ExperimentRuntime
from app.practice.served import ServedTexts
from app.practice.serving import PracticeTexts, warm
from app.practice.texts import TextCache
from serve.metrics import PracticeMetrics
from serve.practice_writer import BackgroundWriter

log = logging.getLogger("keyscope.practice")


@serve.deployment(name="practice", ray_actor_options={"num_cpus": 0.25})
class PracticeDeployment:
    """Practice texts per typist and per signature; writes missing ones in the background when configured to."""

    async def __init__(self, insights: DeploymentHandle) -> None:  # async: the writer task needs the replica's loop
        settings = Settings.from_env()
        await asyncio.to_thread(warm)
        self.insights = insights
        self.metrics = PracticeMetrics()
        self.cache = TextCache(settings)
        self.served = ServedTexts(settings)
        # Which generator a user gets while an experiment on it runs; its thread reads the experiments and writes
        # exposures, so the request path stays in memory.
        self.experiments = ExperimentRuntime.started(settings)
        self.practice = PracticeTexts(self.cache, self.served, self.experiments)
        self.insights_cache = InsightsCache(settings)
        self._writer_task: asyncio.Task[None] | None = None
        # A cache of its own for the writer: its ClickHouse writes run in a thread beside the serving threads' reads.
        self._writer_cache = TextCache(settings) if settings.practice_live_generation else None
        if self._writer_cache is not None:
            writer = BackgroundWriter(
                settings, self._writer_cache, written=self.metrics.written, failed=self.metrics.write_failed
            )
            self._writer_task = asyncio.get_running_loop().create_task(writer.run())

    async def text(self, user_id: int, words: int) -> bytes:
        """The typist's practice text as JSON (app/practice/serving.py's answer)."""
        started = time.perf_counter()
        insights = await self._insights(user_id)
        answer = await asyncio.to_thread(self.practice.for_user, user_id, insights, words)
        self.metrics.answered("user", answer["generator"] == "lm", time.perf_counter() - started)
        return encode_read(answer)

    async def texts(self, signature: str) -> bytes:
        """A signature's texts as JSON, best first (already checked by the gateway); none yet queues it."""
        started = time.perf_counter()
        found = await asyncio.to_thread(self.cache.texts, signature)
        if not found:
            await asyncio.to_thread(self.cache.want, signature)
        self.metrics.answered("signature", bool(found), time.perf_counter() - started)
        return encode_read({"signature": signature, "texts": [text.public() for text in found]})

    async def _insights(self, user_id: int) -> dict[str, Any] | None:
        """The user's insights: the Redis cache, else the insights deployment; None for a user without tests."""
        try:
            raw = await self.insights_cache.get_raw(user_id, "insights")
        except Exception as exc:  # a cache outage: the insights deployment still answers
            log.warning("insights cache unavailable: %s", exc)
            raw = None
        if raw is None:
            raw = await self.insights.read.remote(user_id, "insights", {})
        return None if raw is None else json.loads(raw)

    async def __del__(self) -> None:  # Serve awaits it when the replica shuts down
        if self._writer_task is not None:
            self._writer_task.cancel()
        await self.insights_cache.close()
        await asyncio.to_thread(self.cache.close)
        if self._writer_cache is not None:
            await asyncio.to_thread(self._writer_cache.close)
        await asyncio.to_thread(self.served.close)
        await asyncio.to_thread(self.experiments.close)


class HandlePractice:
    """PracticeSource (serve/gateway.py) that calls the practice deployment."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    async def text(self, user_id: int, words: int) -> bytes:
        return await self.handle.text.remote(user_id, words)

    async def texts(self, signature: str) -> bytes:
        return await self.handle.texts.remote(signature)
