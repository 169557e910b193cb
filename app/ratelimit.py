"""Rate limits per principal, shared by every Serve replica through Redis.

The limiter is GCRA (the generic cell rate algorithm: a token bucket that stores one number, the "theoretical
arrival time" of the next request) run as one Lua script, so a check is atomic and costs one round trip
(EVALSHA; only the first call after Redis restarts adds an EVAL). Time comes from Redis's clock, so replicas
with skewed clocks share one notion of "now". A key (`keyscope:rl:<principal name>`) expires as soon as its
bucket is full again, so idle callers cost no memory.

When Redis is down or slow the limiter fails open: the request is allowed, a warning is logged (at most once a
minute), and Redis is not asked again for a second, so an outage adds no latency to every request. Rate limiting
protects capacity, not correctness; authentication still holds, and refusing every test because the cache is
down would turn a Redis outage into an ingest outage.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.auth import Principal
from app.config import Settings

log = logging.getLogger("keyscope.ratelimit")

KEY_PREFIX = "keyscope:rl:"

# KEYS[1]: the bucket. ARGV: emission interval (µs per request), burst (requests), cost (requests).
# Returns {allowed 0/1, retry after (µs), remaining (requests)}. Integers only: Lua numbers become Redis integers.
_GCRA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, allow_at - now, math.floor((now + interval * burst - tat) / interval)}
end
-- %.0f: Lua would write a number this large as 1.7e+15 (%.14g) and lose the microseconds
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
return {1, 0, math.floor((now + interval * burst - new_tat) / interval)}
"""


@dataclass(frozen=True)
class RateLimit:
    """`per_s` requests a second sustained, up to `burst` at once; per_s 0 means unlimited."""

    per_s: float
    burst: int

    def __post_init__(self) -> None:
        if self.per_s < 0 or (self.per_s > 0 and self.burst < 1):
            raise ValueError(f"a rate limit needs per_s ≥ 0 and burst ≥ 1, got {self.per_s}/s burst {self.burst}")


class RateDecision(NamedTuple):
    """Whether to serve the request; if not, when to retry. `remaining` is -1 when unknown (no limit, Redis down)."""

    allowed: bool
    retry_after_s: float
    remaining: int


def limits_from_settings(settings: Settings) -> dict[str, RateLimit]:
    """The limit of each principal scope; admins share the service limit."""
    service = RateLimit(settings.rate_limit_service_per_s, settings.rate_limit_service_burst)
    return {
        "service": service,
        "admin": service,
        "user": RateLimit(settings.rate_limit_user_per_s, settings.rate_limit_user_burst),
    }


def rate_limit_key(name: str) -> str:
    return KEY_PREFIX + name


class RateLimiter:
    """Async limiter over Redis; one per replica, shared by its requests."""

    def __init__(
        self,
        redis_url: str,
        limits: dict[str, RateLimit],
        timeout_s: float = 0.25,
        pause_after_error_s: float = 1.0,
    ) -> None:
        # A short timeout: a request waits for the limiter at most this long before it is let through.
        self._redis = aioredis.from_url(redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._script = self._redis.register_script(_GCRA)
        self._limits = limits
        self._pause_after_error_s = pause_after_error_s
        self._paused_until = 0.0
        self._last_warning = -math.inf

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(settings.redis_url, limits_from_settings(settings))

    async def check(self, principal: Principal, cost: int = 1) -> RateDecision:
        """The decision for one request of `principal`, under the limit of its scope."""
        return await self.hit(principal.name, self._limits[principal.scope], cost)

    async def hit(self, name: str, limit: RateLimit, cost: int = 1) -> RateDecision:
        """Take `cost` requests from the bucket `name`; a denied request takes nothing."""
        if limit.per_s == 0:
            return RateDecision(True, 0.0, -1)
        if time.monotonic() < self._paused_until:
            return RateDecision(True, 0.0, -1)
        interval_us = max(1, round(1_000_000 / limit.per_s))
        try:
            allowed, retry_us, remaining = await self._script(
                keys=[rate_limit_key(name)], args=[interval_us, limit.burst, cost]
            )
        except (RedisError, OSError) as exc:
            self._fail_open(exc)
            return RateDecision(True, 0.0, -1)
        return RateDecision(bool(allowed), int(retry_us) / 1_000_000, max(0, int(remaining)))

    def _fail_open(self, exc: Exception) -> None:
        now = time.monotonic()
        self._paused_until = now + self._pause_after_error_s
        if now - self._last_warning >= 60:
            self._last_warning = now
            log.warning("rate limiter cannot reach Redis (%s); letting requests through unlimited", exc)

    async def close(self) -> None:
        await self._redis.aclose()
