"""The Redis insights cache on the real Redis: read-through values, invalidation, and no stale writes."""

from __future__ import annotations

import asyncio

import redis

from app.cache import InsightsCache, clear_refreshing, invalidate_users, mark_refreshing, user_cache_key


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


def test_a_read_of_a_user_being_refreshed_waits_for_the_refreshers_write(stack, stack_settings):
    """The refresher marks whom it holds; a miss of a marked user gets what the refresher writes, an unmarked user
    gets None at once (the reader computes), and a mark that goes away ends the wait."""
    db = redis.Redis.from_url(stack_settings.redis_url)
    marked, unmarked, abandoned = 91_001, 91_002, 91_003
    db.delete(*(user_cache_key(u) for u in (marked, unmarked, abandoned)))
    clear_refreshing(db, [unmarked])
    mark_refreshing(db, [marked, abandoned])

    async def refresher() -> None:
        await asyncio.sleep(0.3)
        db.hset(user_cache_key(marked), "insights", b'{"test_count":3}')
        clear_refreshing(db, [marked, abandoned])  # the abandoned user's refresh wrote nothing

    async def scenario() -> tuple:
        cache = InsightsCache(stack_settings)
        try:
            assert await cache.refreshed(unmarked, "insights", 5.0) is None
            return await asyncio.gather(
                cache.refreshed(marked, "insights", 5.0), cache.refreshed(abandoned, "insights", 5.0), refresher()
            )
        finally:
            await cache.close()

    try:
        got, none, _ = asyncio.run(scenario())
        assert got == b'{"test_count":3}'
        assert none is None
        assert not db.exists(*(f"keyscope:user:{u}:refreshing" for u in (marked, abandoned)))
    finally:
        db.delete(*(user_cache_key(u) for u in (marked, unmarked, abandoned)))
        db.close()
