"""`keyscope bench redis-memory`: Redis bytes per typist, key family by key family, on the running stack.

    keyscope bench redis-memory [--sample 500] [--seed 1] [--min-tests 1]

Samples `--sample` typists among those with a key under `keyscope:user:` (cached reads and their generation,
written for every typist whose tests were stored or read) and asks Redis `MEMORY USAGE` (every element sampled)
for each per-typist key keyscope keeps: the cached reads, their generation, the online features, the practice
records, the rate-limit bucket and the live sessions' resume window. Per family it prints how many sampled
typists hold one, its bytes where held (mean, p50, p95) and the mean per typist; and how many tests the sampled
typists have stored (ClickHouse), since a read grows with the keys and pairs a typist has typed; `--min-tests`
samples only typists with at least that many. Reads only.
"""

from __future__ import annotations

import argparse
import random

import numpy as np

from app.config import Settings
from app.text_table import print_table

FAMILIES = (  # (label, key pattern), as app/user_data.py and the modules that own them name them
    ("cached reads", "keyscope:user:{id}"),
    ("cache generation", "keyscope:user:{id}:gen"),
    ("online features", "keyscope:features:{id}"),
    ("practice signature", "keyscope:practice:signature:{id}"),
    ("practice served", "keyscope:practice:served:{id}"),
    ("rate-limit bucket", "keyscope:rl:user:{id}"),
    ("live resume window", "keyscope:user:{id}:live"),
)
USER_PATTERN = "keyscope:user:*"


def typists_in_cache(client) -> list[int]:
    """Every typist with a key under `keyscope:user:`, in id order."""
    return sorted({int(key.split(b":")[2]) for key in client.scan_iter(USER_PATTERN, count=10_000)})


def sample_typists(ids: list[int], size: int, seed: int) -> list[int]:
    """Up to `size` of these typist ids drawn at random, in id order."""
    ids = list(ids)
    random.Random(seed).shuffle(ids)
    return sorted(ids[:size])


def family_bytes(client, typists: list[int]) -> dict[str, list[int]]:
    """Per family, the bytes of each sampled typist's key (0 where the typist has none)."""
    pipe = client.pipeline(transaction=False)
    for user_id in typists:
        for _, pattern in FAMILIES:
            pipe.memory_usage(pattern.format(id=user_id), samples=0)
    answers = pipe.execute()
    out: dict[str, list[int]] = {label: [] for label, _ in FAMILIES}
    for i, answer in enumerate(answers):
        out[FAMILIES[i % len(FAMILIES)][0]].append(int(answer or 0))
    return out


def tests_per_typist(settings: Settings, typists: list[int]) -> np.ndarray:
    from app.clickhouse.client import clickhouse_client

    client = clickhouse_client(settings.clickhouse_url)
    try:
        rows = client.query(
            "SELECT user_id, count() FROM test_results FINAL WHERE user_id IN {u:Array(UInt64)} GROUP BY user_id",
            parameters={"u": typists},
        ).result_rows
    finally:
        client.close()
    counts = dict(rows)
    return np.array([counts.get(u, 0) for u in typists])


def report_rows(measured: dict[str, list[int]]) -> list[list[str]]:
    rows = [["key family", "typists holding one", "mean bytes", "p50 bytes", "p95 bytes", "mean per typist"]]
    total = 0.0
    for label, _ in FAMILIES:
        values = np.array(measured[label])
        held = values[values > 0]
        per_typist = float(values.mean()) if values.size else 0.0
        total += per_typist
        if held.size:
            rows.append([label, f"{held.size}/{values.size}", f"{held.mean():,.0f}", f"{np.percentile(held, 50):,.0f}",
                         f"{np.percentile(held, 95):,.0f}", f"{per_typist:,.0f}"])  # fmt: skip
        else:
            rows.append([label, f"0/{values.size}", "-", "-", "-", "0"])
    rows.append(["total", "", "", "", "", f"{total:,.0f}"])
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sample", type=int, default=500, help="typists to sample (default 500)")
    parser.add_argument("--seed", type=int, default=1, help="sampling seed (default 1)")
    parser.add_argument("--min-tests", type=int, default=1,
                        help="sample only typists with at least this many stored tests (default 1: any)")


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """`keyscope bench redis-memory`: reads the running stack's Redis and ClickHouse; starts nothing."""
    import redis

    if args.sample < 1 or args.min_tests < 1:
        raise SystemExit("--sample and --min-tests must be at least 1")
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
    try:
        candidates = typists_in_cache(client)
        if args.min_tests > 1 and candidates:
            counts = tests_per_typist(settings, candidates)
            candidates = [u for u, n in zip(candidates, counts.tolist()) if n >= args.min_tests]
        typists = sample_typists(candidates, args.sample, args.seed)
        if not typists:
            raise SystemExit(f"no typist with {args.min_tests}+ stored tests has a key in {settings.redis_url}")
        measured = family_bytes(client, typists)
    finally:
        client.close()
    tests = tests_per_typist(settings, typists)
    print(f"Redis bytes per typist ({settings.redis_url}), {len(typists)} typists sampled; their stored tests: "
          f"p50 {np.percentile(tests, 50):.0f}, p95 {np.percentile(tests, 95):.0f}, max {tests.max()}")
    print_table(report_rows(measured))
    return 0
