"""The Redis rate limiter on the real Redis (DB 12, flushed here and nowhere else): bursts, refill, independent
buckets, atomicity under concurrency, key expiry, and failing open when Redis is unreachable."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest
import redis

from app.auth import Principal
from app.config import Settings
from app.ratelimit import RateDecision, RateLimit, RateLimiter, limits_from_settings, rate_limit_key

REDIS_URL = os.environ.get("KEYSCOPE_TEST_RATELIMIT_REDIS_URL", "redis://127.0.0.1:6379/12")


@pytest.fixture
def clean_db():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"these tests need the real Redis at {REDIS_URL}: {exc}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def run(scenario, timeout_s: float = 0.25):
    """Run `scenario(limiter)` with a limiter on the test DB, closing it afterwards."""

    async def main():
        limiter = RateLimiter(REDIS_URL, {}, timeout_s=timeout_s)
        try:
            return await scenario(limiter)
        finally:
            await limiter.close()

    return asyncio.run(main())


def test_a_burst_is_allowed_then_denied_with_a_sane_retry_after(clean_db):
    limit = RateLimit(per_s=10, burst=5)

    async def scenario(limiter: RateLimiter) -> list[RateDecision]:
        return [await limiter.hit("burst", limit) for _ in range(7)]

    decisions = run(scenario)
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    for denied in decisions[5:]:
        # One request refills every 0.1 s, and the test's own calls took a little of that already.
        assert 0.0 < denied.retry_after_s <= 0.1
        assert denied.remaining == 0


def test_the_bucket_refills_over_time(clean_db):
    limit = RateLimit(per_s=20, burst=2)

    async def scenario(limiter: RateLimiter) -> tuple[list[bool], RateDecision, list[bool]]:
        drained = [(await limiter.hit("refill", limit)).allowed for _ in range(3)]
        denied = await limiter.hit("refill", limit)
        await asyncio.sleep(denied.retry_after_s + 0.01)
        after_retry = await limiter.hit("refill", limit)
        await asyncio.sleep(0.2)  # four intervals: a full bucket of 2 again, no more
        refilled = [(await limiter.hit("refill", limit)).allowed for _ in range(3)]
        return drained, after_retry, refilled

    drained, after_retry, refilled = run(scenario)
    assert drained == [True, True, False]
    assert after_retry.allowed  # retry_after_s was honest
    assert refilled == [True, True, False]


def test_buckets_are_independent(clean_db):
    limit = RateLimit(per_s=1, burst=2)

    async def scenario(limiter: RateLimiter) -> dict[str, list[bool]]:
        outcome: dict[str, list[bool]] = {"user:1": [], "user:2": []}
        for _ in range(3):
            outcome["user:1"].append((await limiter.hit("user:1", limit)).allowed)
        for _ in range(2):
            outcome["user:2"].append((await limiter.hit("user:2", limit)).allowed)
        return outcome

    assert run(scenario) == {"user:1": [True, True, False], "user:2": [True, True]}
    assert sorted(clean_db.keys()) == [rate_limit_key("user:1").encode(), rate_limit_key("user:2").encode()]


def test_concurrent_requests_never_exceed_the_burst(clean_db):
    limit = RateLimit(per_s=0.1, burst=20)  # no refill within the test

    async def scenario(limiter: RateLimiter) -> list[RateDecision]:
        return list(await asyncio.gather(*(limiter.hit("crowd", limit) for _ in range(60))))

    # 60 connections opened at once: on a loaded machine some took longer than the limiter's 0.25 s, and it let them
    # through as it should when Redis is slow (a CI run). The timeout is not what this test is about.
    decisions = run(scenario, timeout_s=10)
    assert sum(d.allowed for d in decisions) == 20
    assert all(d.retry_after_s > 9 for d in decisions if not d.allowed)  # 10 s per request at 0.1/s


def test_a_key_expires_when_its_bucket_would_be_full_again(clean_db):
    limit = RateLimit(per_s=10, burst=3)

    async def scenario(limiter: RateLimiter) -> None:
        await limiter.hit("ttl", limit)
        await limiter.hit("ttl", limit)

    run(scenario)
    ttl_ms = clean_db.pttl(rate_limit_key("ttl"))
    assert 100 < ttl_ms <= 200  # two requests take 0.2 s to refill
    time.sleep(0.25)
    assert not clean_db.exists(rate_limit_key("ttl"))


def test_principals_are_limited_by_their_scope(clean_db):
    settings = Settings(
        redis_url=REDIS_URL,
        rate_limit_user_per_s=1,
        rate_limit_user_burst=2,
        rate_limit_service_per_s=1,
        rate_limit_service_burst=4,
    )
    assert limits_from_settings(settings)["admin"] == limits_from_settings(settings)["service"]

    async def main() -> dict[str, int]:
        limiter = RateLimiter.from_settings(settings)
        try:
            counts = {}
            for principal in (
                Principal("user", 1, "user:1"),
                Principal("service", None, "service:typeracer"),
                Principal("admin", None, "admin"),
            ):
                decisions = [await limiter.check(principal) for _ in range(6)]
                counts[principal.name] = sum(d.allowed for d in decisions)
            return counts
        finally:
            await limiter.close()

    assert asyncio.run(main()) == {"user:1": 2, "service:typeracer": 4, "admin": 4}
    assert clean_db.exists(rate_limit_key("user:1"), rate_limit_key("service:typeracer"), rate_limit_key("admin")) == 3


def test_a_zero_rate_means_unlimited_and_touches_no_key(clean_db):
    async def scenario(limiter: RateLimiter) -> list[RateDecision]:
        return [await limiter.hit("free", RateLimit(per_s=0, burst=0)) for _ in range(100)]

    assert all(d == RateDecision(True, 0.0, -1) for d in run(scenario))
    assert clean_db.dbsize() == 0


def test_one_round_trip_per_request(clean_db, monkeypatch):
    limit = RateLimit(per_s=100, burst=100)
    sent: list[str] = []

    async def scenario(limiter: RateLimiter) -> None:
        await limiter.hit("warm", limit)  # loads the script (EVALSHA, then SCRIPT LOAD on a fresh Redis)
        connection_class = limiter._redis.connection_pool.connection_class
        original = connection_class.send_command

        async def spy(self, *args, **kwargs):
            sent.append(args[0])
            return await original(self, *args, **kwargs)

        monkeypatch.setattr(connection_class, "send_command", spy)
        for _ in range(10):
            await limiter.hit("count", limit)

    run(scenario)
    assert sent == ["EVALSHA"] * 10


def test_an_unreachable_redis_fails_open_with_one_warning(caplog):
    caplog.set_level(logging.WARNING, logger="keyscope.ratelimit")

    async def main() -> tuple[list[RateDecision], float]:
        limiter = RateLimiter("redis://127.0.0.1:1/0", {}, timeout_s=0.2, pause_after_error_s=5)
        try:
            started = time.perf_counter()
            decisions = [await limiter.hit("down", RateLimit(per_s=1, burst=1)) for _ in range(20)]
            return decisions, time.perf_counter() - started
        finally:
            await limiter.close()

    decisions, elapsed = asyncio.run(main())
    assert all(d == RateDecision(True, 0.0, -1) for d in decisions)
    assert elapsed < 1.0  # after the first failure the limiter stops asking Redis for a while
    warnings = [r for r in caplog.records if r.name == "keyscope.ratelimit"]
    assert len(warnings) == 1 and "Redis" in warnings[0].getMessage()
