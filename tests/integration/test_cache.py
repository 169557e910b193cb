"""The Redis insights cache on the real Redis: read-through values, invalidation, and no stale writes."""

from __future__ import annotations

import asyncio

from app.cache import InsightsCache, invalidate_users


def test_invalidation_drops_a_users_reads_and_refuses_a_stale_write(stack, stack_settings):
    async def scenario() -> None:
        cache = InsightsCache(stack_settings)
        try:
            generation = await cache.generation(77)
            assert await cache.put(77, "insights", {"test_count": 1}, generation)
            assert await cache.get(77, "insights") == {"test_count": 1}
            assert await cache.get(78, "insights") is None

            # A read that began before new tests landed must not cache what it read.
            stale_generation = await cache.generation(77)
            assert invalidate_users(stack_settings, [77, 77]) == 1
            assert await cache.get(77, "insights") is None
            assert not await cache.put(77, "insights", {"test_count": 1}, stale_generation)
            assert await cache.get(77, "insights") is None
            assert await cache.put(77, "insights", {"test_count": 2}, await cache.generation(77))
            assert await cache.get(77, "insights") == {"test_count": 2}
        finally:
            await cache.close()

    asyncio.run(scenario())
