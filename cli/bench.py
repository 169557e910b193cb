"""`keyscope bench NAME`: one subcommand per benchmark, each with only its own flags (defined in bench/NAME.py)."""

from __future__ import annotations

from cli.registry import Command


def _bench(name: str, help: str, module: str | None = None, kind: str = "") -> Command:
    """A benchmark whose `add_arguments` / `run_command` (or `add_KIND_arguments` / `run_KIND_command`) live in
    bench/MODULE.py (default bench/NAME.py)."""
    module = f"bench.{module or name}"
    prefix = f"{kind}_" if kind else ""
    return Command(name, help, arguments=f"{module}:add_{prefix}arguments", run=f"{module}:run_{prefix}command")


BENCHMARKS: tuple[Command, ...] = (
    _bench("analytics", "keystrokes analysed per second per core"),
    _bench("ingest", "end-to-end ingest throughput against the seed's MariaDB path (needs the stack; starts it)"),
    _bench(
        "tables",
        "ClickHouse's own CPU per stored keystroke, table by table (inserts, then one final merge), in process, and "
        "the most keystrokes/s the machine's cores could store if nothing else ran",
    ),
    _bench("storage", "bytes per keystroke on disk, ClickHouse vs the seed's MariaDB JSON table"),
    _bench(
        "latency",
        "POST → visible p50/p95/p99 under a steady load, ingest job in follow mode (starts the stack)",
        module="load",
        kind="latency",
    ),
    _bench(
        "soak",
        "the same load for 10 minutes, sampling every stack process's memory (RSS and its private, anonymous part; "
        "a process is flat when its private memory grows under 5 %%)",
        module="load",
        kind="soak",
    ),
    _bench(
        "capacity",
        "the whole stack under returning typists at a steady rate, ingest in follow mode: POST, visible and insights "
        "freshness percentiles, backlog drain, lost tests, CPU per process; --find-knee raises the rate until "
        "visible p95 passes 2 s (starts the stack)",
    ),
    _bench(
        "redis-memory",
        "Redis bytes per typist, key family by key family, sampled from the running stack (reads only)",
        module="redis_memory",
    ),
    _bench(
        "passes",
        "one small ingest pass through a Ray Data Dataset against the follow mode's long-lived readers (starts the "
        "stack)",
    ),
    _bench(
        "pattern-bound",
        "how far below its baselines any pattern model could get: an oracle of each interval's noiseless time "
        "against the baselines, on simulated typists (no stack)",
        module="models",
        kind="bound",
    ),
    _bench(
        "train",
        "samples/s per Ray Train worker for each model on the stack's stored tests (--use-gpu on a GPU cluster)",
        module="models",
        kind="train",
    ),
    _bench("serve", "req/s and p50/p95/p99 of each API route, Ray Serve next to the same app under plain uvicorn"),
    _bench(
        "predict",
        "POST /v1/predict/typing at offered loads (achieved req/s, p50/p95/p99, errors) and the predictor's batch "
        "path in characters per CPU ms (starts the stack)",
    ),
    _bench(
        "practice",
        "practice-text quality (language model vs rule-based drill vs common words, on simulated typists), the "
        "model's tokens/s, and the practice-text route's p50/p95 for cache hits and misses (starts the stack)",
    ),
    _bench(
        "live",
        "N concurrent /v1/live sessions at a batch every 200 ms each: answer latency p50/p95/p99 and a check that "
        "every answer belongs to its own session (starts the stack)",
    ),
    _bench(
        "failover",
        "failed requests and p99 of cached insights reads under load when an ingress replica, or a whole Ray node, "
        "is killed (a two-node stack of its own: a worker node in a network namespace; needs root)",
    ),
    _bench(
        "insights",
        "insights reads cached / from the precomputed row / computed, with --users-stored typists stored; or with "
        "--refresh the insights refresh's CPU per typist at 1, 100 and 10,000 typists per refresh (starts the stack)",
    ),
)
