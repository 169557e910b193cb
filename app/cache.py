"""Redis: cached per-user reads, dropped when new tests for the user land.

Each user's cached reads live in one hash (`keyscope:user:{id}`, field per read), so the ingest job
invalidates everything about a user with one DEL, and a TTL bounds staleness if an invalidation is lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from app.config import Settings

# Cached "no such data" (a user with no tests yet): clients poll for a first test, and each poll would otherwise
# query ClickHouse. Safe to cache like any read: the ingest job drops it when the user's first test lands.
NOT_FOUND = b"null"


def encode_read(value: Any) -> bytes:
    """The JSON a read is cached and served as: compact UTF-8, NaN and infinities (undefined metrics) as null, since
    JSON has neither."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def read_field(read: str, params: dict[str, Any]) -> str:
    """The field of a user's cache hash a read is kept under: `read:param=value...`, params sorted (a first test
    page is `tests:limit=20`; app/result_pages.py carries those forward)."""
    return read + "".join(f":{k}={v}" for k, v in sorted(params.items()))


def user_cache_key(user_id: int) -> str:
    return f"keyscope:user:{user_id}"


def user_generation_key(user_id: int) -> str:
    # Bumped on every invalidation, so a read that began before new data landed cannot cache stale data.
    return f"keyscope:user:{user_id}:gen"


class InsightsCache:
    """Async read-through cache used by the Serve app."""

    def __init__(self, settings: Settings) -> None:
        self._redis = aioredis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._ttl = settings.insights_ttl_s

    async def get(self, user_id: int, read: str) -> Any | None:
        """The cached JSON value of one read of a user, or None."""
        raw = await self._redis.hget(user_cache_key(user_id), read)
        return None if raw is None else json.loads(raw)

    async def get_raw(self, user_id: int, read: str) -> bytes | None:
        """The cached JSON bytes of one read, served as they are (no decode and re-encode per request)."""
        return await self._redis.hget(user_cache_key(user_id), read)

    async def generation(self, user_id: int) -> bytes | None:
        """The user's invalidation generation; pass it to `put` to refuse caching stale reads."""
        return await self._redis.get(user_generation_key(user_id))

    async def put(self, user_id: int, read: str, value: Any, generation: bytes | None) -> bool:
        """Cache a read unless the user was invalidated since `generation` was taken; True if cached."""
        return await self.put_raw(user_id, read, encode_read(value), generation)

    async def put_raw(self, user_id: int, read: str, body: bytes, generation: bytes | None) -> bool:
        """`put` of an already encoded JSON value."""
        key, gen_key = user_cache_key(user_id), user_generation_key(user_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(gen_key)
                if await pipe.get(gen_key) != generation:
                    return False
                pipe.multi()
                pipe.hset(key, read, body)
                pipe.expire(key, self._ttl)
                await pipe.execute()
                return True
            except aioredis.WatchError:
                return False

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()


def invalidate_users(
    settings: Settings,
    user_ids: Iterable[int],
    client: redis.Redis | None = None,
    carried: dict[int, tuple[bytes, dict[str, bytes]]] | None = None,
    ttl_s: int = 0,
) -> int:
    """Drop the cached reads of these users (sync, for the ingest job); returns keys deleted. A caller that
    invalidates often passes its own `client`; otherwise one is opened for this call.

    `carried`: for some of these users, (generation, {field: JSON}) of reads that stay valid after the change, from
    `cached_first_pages` with the new tests merged in. They are written back with a TTL of `ttl_s` in the same
    step as the drop, unless the user's generation moved since it was read (another writer was there first)."""
    users = sorted({int(u) for u in user_ids})
    if not users:
        return 0
    carried = carried or {}
    own = client is None
    if client is None:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        script = client.register_script(_INVALIDATE_KEEPING)
        deleted = 0
        for start in range(0, len(users), 1000):
            pipe = client.pipeline(transaction=False)
            for user_id in users[start : start + 1000]:
                generation, bodies = carried.get(user_id, (b"", {}))
                fields = [item for pair in bodies.items() for item in pair]
                script(keys=[user_cache_key(user_id), user_generation_key(user_id)],
                       args=[generation, ttl_s, *fields], client=pipe)
            deleted += sum(int(answer) for answer in pipe.execute())
        return deleted
    finally:
        if own:
            client.close()


# A user's cached first test pages (app/result_pages.py) and generation, in one round trip for many users: the fields
# are few, and HKEYS spares reading the large ones (insights, keys).
_FIRST_PAGES = """
local fields = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.match(field, '^tests:limit=%d+$') then fields[#fields + 1] = field end
end
local out = {redis.call('GET', KEYS[2]) or ''}
if #fields > 0 then
  local values = redis.call('HMGET', KEYS[1], unpack(fields))
  for i, field in ipairs(fields) do out[#out + 1] = field; out[#out + 1] = values[i] end
end
return out
"""

# Invalidate one user (bump the generation, drop every read; answers the DEL) and write back the carried reads, if
# any, unless the generation is no longer the one they were read at.
_INVALIDATE_KEEPING = """
local unchanged = (redis.call('GET', KEYS[2]) or '') == ARGV[1]
redis.call('INCR', KEYS[2])
local deleted = redis.call('DEL', KEYS[1])
if unchanged and #ARGV > 2 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return deleted
"""


def cached_first_pages(client: redis.Redis, user_ids: Iterable[int]) -> dict[int, tuple[bytes, dict[str, bytes]]]:
    """For each of these users with a cached first test page: (generation, {field: cached JSON}), in one round trip
    (pass them to `invalidate_users` as `carried` once the new tests are merged in)."""
    users = sorted({int(u) for u in user_ids})
    if not users:
        return {}
    script = client.register_script(_FIRST_PAGES)
    pipe = client.pipeline(transaction=False)
    for user_id in users:
        script(keys=[user_cache_key(user_id), user_generation_key(user_id)], client=pipe)
    pages = {}
    for user_id, answer in zip(users, pipe.execute()):
        if len(answer) > 1:
            pages[user_id] = (answer[0], dict(zip(answer[1::2], answer[2::2])))
    return pages


def generations(client: redis.Redis, user_ids: list[int]) -> list[bytes | None]:
    """The users' invalidation generations (sync, for batch jobs); pass them to `put_many_reads`."""
    pipe = client.pipeline(transaction=False)
    for user_id in user_ids:
        pipe.get(user_generation_key(user_id))
    return pipe.execute()


# Compare-and-set of one user's reads: written only if the generation is still what the caller read (a pass that
# landed meanwhile bumped it), in one script so a batch of users costs one pipelined round trip, not a WATCH each.
_PUT_IF_GENERATION = """
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


def put_many_reads(
    client: redis.Redis, generations_by_user: dict[int, bytes | None], bodies: dict[int, dict[str, bytes]], ttl_s: int
) -> int:
    """`put_reads` for many users in one pipelined round trip; returns how many were written (the others were
    invalidated since their generation was read)."""
    if not bodies:
        return 0
    script = client.register_script(_PUT_IF_GENERATION)
    pipe = client.pipeline(transaction=False)
    for user_id, reads in bodies.items():
        generation = generations_by_user.get(user_id) or b""
        fields = [item for pair in reads.items() for item in pair]
        keys = [user_cache_key(user_id), user_generation_key(user_id)]
        script(keys=keys, args=[generation, ttl_s, *fields], client=pipe)
    return sum(int(done) for done in pipe.execute())


def put_reads(
    client: redis.Redis, user_id: int, generation: bytes | None, bodies: dict[str, bytes], ttl_s: int
) -> bool:
    """`InsightsCache.put_raw` for several reads at once, sync (batch jobs): refused if the user was invalidated since
    `generation` was read."""
    return put_many_reads(client, {user_id: generation}, {user_id: bodies}, ttl_s) == 1
