"""The practice deployment's background writer: texts for the signatures requests missed, written while the replica
keeps serving, so the typist's next request gets a language-model text instead of a drill.

Every POLL_S it reads the queue of wanted signatures (app/practice/texts.py). When one is queued it claims up to
BATCH of them, each with a Redis lock (`keyscope:practice:writing:{signature}`, SET NX EX CLAIM_TTL_S) so replicas
never write the same signature at once, writes texts for them in one batched generation, stores them, and takes
them off the queue; then it rests three times as long as the round took (CPU_SHARE), so a long queue never starves
the serving beside it. The model loads on the first queued signature, not at replica start: a stack starts fast and an
idle one never holds the 0.5 GB model. Generation runs in a worker thread with torch on one thread, so the
replica's event loop and its other threads keep answering requests. A failed round is logged, its claims released
and retried after a back-off; it never stops the loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from app.config import Settings
from app.practice.signature import SignatureError, parse_signature
from app.practice.texts import WANTED_KEY, PracticeText, TextCache, claim_key

log = logging.getLogger("keyscope.practice.writer")

POLL_S = 1.0
BATCH = 4  # signatures per generation: one batched `generate` call of BATCH × prompts × candidates rows
CLAIM_TTL_S = 300  # a claim outlives any writing round; a crashed replica's claims lapse on their own
MAX_BACKOFF_S = 60.0
FAILED_COOLDOWN_S = 600  # a signature none of whose candidates passed is not written again for this long
TORCH_THREADS = 1  # generation shares the replica's CPU with serving
CPU_SHARE = 0.25  # of its time the writer spends writing while the queue is long; it rests the rest


class BackgroundWriter:
    """Writes texts for the wanted signatures; `run` is the replica's background task, `step` one round."""

    def __init__(
        self,
        settings: Settings,
        cache: TextCache,
        *,
        written: Callable[[int], None] = lambda n: None,
        failed: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.written = written
        self.failed = failed
        self._writer: Any = None  # app.practice.lm.PracticeWriter, loaded on the first queued signature

    async def run(self) -> None:
        backoff = POLL_S
        while True:
            try:
                started = time.monotonic()
                await self.step()
                # Rest in proportion to the round (milliseconds when nothing was queued): writing takes at most
                # CPU_SHARE of the replica's time, so a long queue never starves the serving beside it.
                await asyncio.sleep((time.monotonic() - started) * (1 / CPU_SHARE - 1))
                backoff = POLL_S
            except Exception:  # not CancelledError (a BaseException): the replica's shutdown still stops the loop
                self.failed()
                backoff = min(MAX_BACKOFF_S, backoff * 4)
                log.exception("writing practice texts failed; retrying in %.0f s", backoff)
            await asyncio.sleep(backoff)

    async def step(self) -> list[PracticeText]:
        """One round: claim queued signatures, write and store their texts. Returns the texts stored."""
        queued = await asyncio.to_thread(self.cache.queued, WANTED_KEY, BATCH * 8)
        if not queued:
            return []
        claimed = await asyncio.to_thread(self._claim, queued)
        if not claimed:
            return []
        release = list(claimed)
        try:
            texts, seconds = await asyncio.to_thread(self._write, claimed)
            await asyncio.to_thread(self.cache.put, texts)
            # Off the queue even when none passed: a later miss queues it again, and that request waits no longer.
            await asyncio.to_thread(self.cache.done, claimed)
            per_signature = {s: sum(t.signature == s for t in texts) for s in claimed}
            # A signature no candidate passed for keeps its claim a while: misses meanwhile get drills without
            # costing a writing round each.
            release = [s for s, n in per_signature.items() if n]
            for signature in set(claimed) - set(release):
                await asyncio.to_thread(self.cache.redis.set, claim_key(signature), "failed", ex=FAILED_COOLDOWN_S)
        finally:
            if release:
                await asyncio.to_thread(self.cache.redis.delete, *(claim_key(s) for s in release))
        self.written(len(texts))
        log.info("wrote practice texts in %.1f s: %s", seconds, per_signature)
        return texts

    def _claim(self, queued: list[str]) -> list[str]:
        """Up to BATCH signatures this replica now holds the lock of; malformed ones leave the queue."""
        claimed: list[str] = []
        for signature in queued:
            try:
                parse_signature(signature)
            except SignatureError:
                log.warning("dropping malformed queued signature %r", signature)
                self.cache.done([signature])
                continue
            if self.cache.redis.set(claim_key(signature), str(time.time()), nx=True, ex=CLAIM_TTL_S):
                claimed.append(signature)
            if len(claimed) == BATCH:
                break
        return claimed

    def _write(self, signatures: list[str]) -> tuple[list[PracticeText], float]:
        """Texts for the signatures (in a worker thread: seconds of CPU) and how long writing took."""
        from app.practice.generate import write_texts  # torch and transformers load only in a writing replica

        started = time.monotonic()
        writer = self._load()
        texts, stats = write_texts(writer, signatures, seed=random.randrange(2**31))
        log.info("generated %d tokens at %.0f tokens/s", stats.new_tokens, stats.tokens_per_s)
        return texts, time.monotonic() - started

    def _load(self) -> Any:
        if self._writer is None:
            import torch

            from app.practice.lm import PracticeWriter
            from app.practice.model_files import model_folder

            torch.set_num_threads(TORCH_THREADS)
            self._writer = PracticeWriter(model_folder(self.settings))  # CUDA when torch sees a GPU
        return self._writer
