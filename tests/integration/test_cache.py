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


def test_an_invalidation_carries_first_pages_forward_unless_another_writer_came_first(stack, stack_settings):
    import redis

    from app.cache import cached_first_pages, user_cache_key, user_generation_key

    client = redis.Redis.from_url(stack_settings.redis_url)
    users = (9_101, 9_102, 9_103)
    for user_id in users:
        client.delete(user_cache_key(user_id), user_generation_key(user_id))
        client.hset(user_cache_key(user_id), mapping={
            "tests:limit=20": b'{"old":1}', "tests:before=x:limit=20": b"{}", "insights": b"{}",
        })
    client.delete(user_cache_key(9_104))  # nothing cached: nothing to carry

    pages = cached_first_pages(client, [*users, 9_104])
    assert set(pages) == set(users)
    assert pages[9_101] == (b"", {b"tests:limit=20": b'{"old":1}'})  # deeper pages and other reads are not read

    client.incr(user_generation_key(9_102))  # another pass landed between the read and the write
    carried = {user_id: (generation, {"tests:limit=20": b'{"new":1}'}) for user_id, (generation, _) in pages.items()}
    del carried[9_103]  # its page did not parse: it is only dropped
    assert invalidate_users(stack_settings, [*users, 9_104], client, carried, ttl_s=600) == 3

    assert client.hgetall(user_cache_key(9_101)) == {b"tests:limit=20": b'{"new":1}'}
    assert 590 < client.ttl(user_cache_key(9_101)) <= 600
    assert client.exists(user_cache_key(9_102), user_cache_key(9_103)) == 0
    assert [client.get(user_generation_key(u)) for u in users] == [b"1", b"2", b"1"]  # every user invalidated
