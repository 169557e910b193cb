"""Feeding typing tests to the local stack: POSTed to the API (as a platform backend sends them) or produced
straight to Kafka (as the API would, without its HTTP cost); used by `keyscope simulate`, `keyscope demo` and the
benchmarks that store typists first."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from tqdm import tqdm

from app.codec import encode_test
from app.config import Settings
from app.kafka import TestProducer
from app.schemas import parse_submission


async def post_tests(
    api_url: str, tests: list[dict[str, Any]], headers: dict[str, str], concurrency: int = 16
) -> list[int]:
    """POST each test to the API (with a progress bar); returns the status codes in order."""
    statuses = [0] * len(tests)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(tests)):
        queue.put_nowait(i)
    bar = tqdm(total=len(tests), desc="POST /v1/tests", unit="test", disable=None)
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                for _ in range(5):
                    response = await client.post("/v1/tests", json=tests[i])
                    if response.status_code != 503:
                        break
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                statuses[i] = response.status_code
                bar.update(1)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    bar.close()
    return statuses


async def produce_tests(settings: Settings, tests: list[dict[str, Any]]) -> int:
    """Validate, encode and produce tests straight to Kafka; returns how many were acknowledged."""
    producer = TestProducer(settings)
    try:
        for submission in tqdm(tests, desc="produce", unit="test", disable=None):
            test = parse_submission(submission, settings.max_keystrokes)
            await producer.send(test.user_id, encode_test(test))
    finally:
        await producer.close()
    return len(tests)
