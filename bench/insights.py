"""`keyscope bench insights`: GET /v1/users/{id}/insights latency with many typists stored, three ways:

- cached: answered from Redis (the common case: the ingest job's refresher and the hourly job fill it);
- precomputed: Redis missed, the user's fresh `user_insights` row is served (one point lookup in ClickHouse);
- computed: Redis missed and no fresh row, so the read is computed from the per-test aggregates.

Users are stored once (one simulated test each, produced straight to Kafka and ingested); later runs with the
same `--users` find them and skip that step.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
import redis

from app.api_client import api_url, service_headers
from app.cache import user_cache_key
from app.clickhouse.client import clickhouse_client
from app.config import Settings
from devstack.simulate import simulate_tests

FIRST_USER = 80_000_000
SEED = 8


@dataclass
class Timing:
    what: str
    latencies_s: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0

    def row(self) -> str:
        if not self.latencies_s:
            return f"| {self.what} | 0 | - | - | - | - | {self.errors} |"
        p50, p95, p99 = (np.percentile(self.latencies_s, q) * 1000 for q in (50, 95, 99))
        rate = len(self.latencies_s) / self.seconds if self.seconds else 0.0
        return (
            f"| {self.what} | {len(self.latencies_s):,} | {rate:,.0f} | {p50:,.1f} | {p95:,.1f} | {p99:,.1f} "
            f"| {self.errors} |"
        )


def stored_users(settings: Settings, users: int) -> int:
    client = clickhouse_client(settings.clickhouse_url)
    try:
        return int(
            client.command(
                "SELECT uniqExact(user_id) FROM test_results WHERE user_id BETWEEN {a:UInt64} AND {b:UInt64}",
                parameters={"a": FIRST_USER, "b": FIRST_USER + users - 1},
            )
        )
    finally:
        client.close()


def store_users(settings: Settings, users: int, progress=print) -> None:
    """One simulated test for each of `users` typists, through Kafka and the ingest job."""
    from devstack.produce import produce_tests
    from pipelines.ingest import run_ingest

    if stored_users(settings, users) >= users:
        return
    progress(f"storing {users:,} simulated typists (one test each) through Kafka and the ingest job…")
    asyncio.run(produce_tests(settings, simulate_tests(users, 1, seed=SEED, first_user_id=FIRST_USER)))
    report = run_ingest(settings)
    progress("ingest: " + report.line())


async def timed_gets(
    settings: Settings, user_ids: list[int], concurrency: int, seconds: float | None, what: str
) -> Timing:
    """GET insights of `user_ids` with `concurrency` requests in flight: each once (seconds None), or round and
    round for `seconds`."""
    timing = Timing(what)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=api_url(settings), headers=service_headers(settings), timeout=60, limits=limits
    ) as client:
        queue = list(reversed(user_ids))
        started = time.perf_counter()
        deadline = None if seconds is None else started + seconds

        async def worker(offset: int) -> None:
            i = offset
            while True:
                if deadline is None:
                    if not queue:
                        return
                    user_id = queue.pop()
                else:
                    if time.perf_counter() >= deadline:
                        return
                    user_id = user_ids[i % len(user_ids)]
                    i += concurrency
                sent = time.perf_counter()
                response = await client.get(f"/v1/users/{user_id}/insights")
                if response.status_code == 200:
                    timing.latencies_s.append(time.perf_counter() - sent)
                else:
                    timing.errors += 1

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        timing.seconds = time.perf_counter() - started
    return timing


def drop_cache(settings: Settings, user_ids: list[int]) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.delete(*(user_cache_key(u) for u in user_ids))
    finally:
        client.close()


def drop_precomputed(settings: Settings, user_ids: list[int]) -> None:
    client = clickhouse_client(settings.clickhouse_url)
    try:
        client.command(
            "ALTER TABLE user_insights DELETE WHERE user_id IN {u:Array(UInt64)} SETTINGS mutations_sync = 2",
            parameters={"u": user_ids},
        )
    finally:
        client.close()


def run(settings: Settings, users: int, sample: int, concurrency: int, seconds: float, progress=print) -> list[Timing]:
    from pipelines.insights import refresh_users

    store_users(settings, users, progress)
    rng = np.random.default_rng(1)
    picked = rng.choice(users, size=2 * sample, replace=False) + FIRST_USER
    precomputed, computed = [int(u) for u in picked[:sample]], [int(u) for u in picked[sample:]]
    progress(f"precomputing {sample} typists' insights (user_insights and Redis)…")
    refresh_users(settings, precomputed)
    drop_precomputed(settings, computed)
    cached = asyncio.run(timed_gets(settings, precomputed, concurrency, seconds, "cached (Redis)"))
    drop_cache(settings, precomputed)
    from_row = asyncio.run(timed_gets(settings, precomputed, concurrency, None, "miss → precomputed row"))
    drop_cache(settings, computed)
    from_aggregates = asyncio.run(timed_gets(settings, computed, concurrency, None, "miss → computed"))
    return [cached, from_row, from_aggregates]


def print_table(timings: list[Timing]) -> None:
    print("| read | requests | req/s | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for timing in timings:
        print(timing.row())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--users-stored", type=int, default=10_000, help="typists stored, one test each (default 10,000)"
    )
    parser.add_argument("--sample", type=int, default=100, help="typists read per row (default 100)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="connections, each with one request in flight (default 32)"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds timed per route (default 5)")


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """`keyscope bench insights`: brings the stack up."""
    from devstack.stack import LocalStack

    LocalStack(settings).up(progress=print)
    timings = run(settings, args.users_stored, args.sample, args.concurrency, args.duration)
    print(
        f"GET /v1/users/{{id}}/insights with {args.users_stored:,} typists stored, {args.concurrency} requests in "
        f"flight ({args.sample} typists per row; cached: {args.duration:g} s round and round; misses: each once):"
    )
    print_table(timings)
    return 0
