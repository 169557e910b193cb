"""`keyscope bench insights`: GET /v1/users/{id}/insights latency with many typists stored, three ways:

- cached: answered from Redis (the common case: the ingest job's refresher and the hourly job fill it);
- precomputed: Redis missed, the user's fresh `user_insights` row is served (one point lookup in ClickHouse);
- computed: Redis missed and no fresh row, so the read is computed from the per-test aggregates.

Users are stored once (one simulated test each, produced straight to Kafka and ingested); later runs with the
same `--users` find them and skip that step.

`--refresh` measures the insights refresh instead (pipelines/insights.py `refresh_users`, what the hourly job and
the ingest job's background refresher run): CPU per typist refreshed, in this process and in the ClickHouse
endpoint, with 1, 100 and 10,000 typists per refresh (`--refresh-sizes`), each typist with `--tests-per-typist`
stored tests. The typists are stored once as well: 500 simulated typists, repeated under other ids up to the number
asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
REFRESH_FIRST_USER = 82_000_000
# Typists simulated for the refresh benchmark; more are stored as copies of them under other ids (the simulator
# makes a few hundred tests a second: 10,000 distinct typists with 20 tests each would take most of an hour).
DISTINCT_TYPISTS = 500


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


@dataclass
class RefreshCost:
    typists: int
    batches: int
    wall_s: float
    caller_cpu_s: float
    clickhouse_cpu_s: float

    def row(self) -> str:
        per = 1000.0 / self.typists
        caller, store = self.caller_cpu_s * per, self.clickhouse_cpu_s * per
        return (
            f"| {self.typists:,} | {self.batches} | {self.wall_s:,.2f} | {caller:.1f} | {store:.1f} | "
            f"{caller + store:.1f} | {self.typists / self.wall_s:,.0f} |"
        )


def store_refresh_typists(settings: Settings, typists: int, tests: int, progress=print) -> None:
    """`typists` simulated typists with `tests` tests each, through Kafka and the ingest job (skipped when stored)."""
    from devstack.produce import produce_tests
    from pipelines.ingest import run_ingest

    client = clickhouse_client(settings.clickhouse_url)
    try:
        have = int(
            client.command(
                "SELECT count() FROM test_results WHERE user_id BETWEEN {a:UInt64} AND {b:UInt64}",
                parameters={"a": REFRESH_FIRST_USER, "b": REFRESH_FIRST_USER + typists - 1},
            )
        )
    finally:
        client.close()
    if have >= typists * tests:
        return
    progress(f"storing {typists:,} typists with {tests} tests each through Kafka and the ingest job…")
    distinct = simulate_tests(min(typists, DISTINCT_TYPISTS), tests, seed=SEED + 1, first_user_id=0)
    for first in range(0, typists, DISTINCT_TYPISTS):
        copies = [
            {**test, "user_id": REFRESH_FIRST_USER + first + test["user_id"]}
            for test in distinct
            if first + test["user_id"] < typists
        ]
        asyncio.run(produce_tests(settings, copies))
        progress(f"  produced {min(first + DISTINCT_TYPISTS, typists):,} of {typists:,} typists")
    progress("ingest: " + run_ingest(settings).line())


def clickhouse_pid(settings: Settings) -> int | None:
    """The local ClickHouse endpoint's process, from the stack's state file (None on a stack keyscope did not start)."""
    import json

    state = settings.data_dir / "stack.json"
    try:
        return int(json.loads(state.read_text())["clickhouse"]["pid"])
    except (OSError, KeyError, ValueError):
        return None


def wait_until_store_idle(settings: Settings, progress=print, idle_share: float = 0.05, limit_s: float = 300.0) -> None:
    """Wait until the ClickHouse endpoint uses under `idle_share` of a core over 3 s: merges of what was just stored
    would otherwise be counted as the refresh's cost."""
    from bench.capacity import cpu_seconds

    pid = clickhouse_pid(settings)
    if pid is None:
        return
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        before = cpu_seconds({pid: "clickhouse"}).get(pid, 0.0)
        time.sleep(3.0)
        if cpu_seconds({pid: "clickhouse"}).get(pid, 0.0) - before < 3.0 * idle_share:
            return
    progress(f"the ClickHouse endpoint is still busy after {limit_s:.0f} s; measuring anyway")


def refresh_cost(settings: Settings, user_ids: list[int]) -> RefreshCost:
    """Refresh these typists USERS_PER_BATCH at a time in this process, as the job's tasks do; CPU measured here and
    in the ClickHouse endpoint (Redis, a few pipelined round trips per batch, is not counted)."""
    from bench.capacity import cpu_seconds
    from pipelines.insights import USERS_PER_BATCH, refresh_users

    store_pid = clickhouse_pid(settings)
    pids = {os.getpid(): "caller", **({store_pid: "clickhouse"} if store_pid else {})}
    before, wall = cpu_seconds(pids), time.perf_counter()
    batches = 0
    for first in range(0, len(user_ids), USERS_PER_BATCH):
        done = refresh_users(settings, user_ids[first : first + USERS_PER_BATCH])
        assert done == len(user_ids[first : first + USERS_PER_BATCH]), "a typist of the benchmark has no tests"
        batches += 1
    wall = time.perf_counter() - wall
    after = cpu_seconds(pids)
    spent = {name: after.get(pid, 0.0) - before.get(pid, 0.0) for pid, name in pids.items()}
    return RefreshCost(len(user_ids), batches, wall, spent["caller"], spent.get("clickhouse", 0.0))


def run_refresh(settings: Settings, sizes: list[int], tests: int, progress=print) -> list[RefreshCost]:
    from pipelines.insights import refresh_users

    total = sum(sizes)
    store_refresh_typists(settings, total, tests, progress)
    refresh_users(settings, [REFRESH_FIRST_USER + total - 1])  # imports, the forecaster and connections warm
    costs, first = [], REFRESH_FIRST_USER
    for size in sizes:  # distinct typists for each size: nothing is warm in the store's caches from the last row
        wait_until_store_idle(settings, progress)
        progress(f"refreshing {size:,} typists…")
        costs.append(refresh_cost(settings, list(range(first, first + size))))
        first += size
    return costs


def print_refresh_table(costs: list[RefreshCost], tests: int) -> None:
    from pipelines.insights import USERS_PER_BATCH

    print(
        f"Insights refresh, {tests} stored tests per typist, {USERS_PER_BATCH} typists per batch (CPU ms per typist):"
    )
    print("| typists refreshed | batches | wall s | this process | ClickHouse | total | typists/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for cost in costs:
        print(cost.row())


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
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="measure the insights refresh (CPU per typist, this process and ClickHouse) instead of the reads",
    )
    parser.add_argument(
        "--refresh-sizes",
        type=_sizes,
        default=[1, 100, 10_000],
        help="typists per refresh, comma-separated (default 1,100,10000)",
    )
    parser.add_argument(
        "--tests-per-typist", type=int, default=20, help="stored tests of each refreshed typist (default 20)"
    )


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated typist counts, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"typist counts must be positive, got {text!r}")
    return sizes


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """`keyscope bench insights`: brings the stack up."""
    from devstack.stack import LocalStack

    LocalStack(settings).up(with_serve=not args.refresh, progress=print)
    if args.refresh:
        print_refresh_table(run_refresh(settings, args.refresh_sizes, args.tests_per_typist), args.tests_per_typist)
        return 0
    timings = run(settings, args.users_stored, args.sample, args.concurrency, args.duration)
    print(
        f"GET /v1/users/{{id}}/insights with {args.users_stored:,} typists stored, {args.concurrency} requests in "
        f"flight ({args.sample} typists per row; cached: {args.duration:g} s round and round; misses: each once):"
    )
    print_table(timings)
    return 0
