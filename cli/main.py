"""`keyscope …` commands: thin over the stack, simulator, ingest job and API."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx
from tqdm import tqdm

from app.api_client import api_url, service_headers
from app.config import Settings, apply_local_ray_env

log = logging.getLogger("keyscope")


def _print_status(statuses) -> None:
    for s in statuses:
        mark = "up  " if s.running else "down"
        origin = "started by keyscope" if s.started_by_stack else ("found running" if s.running else "")
        print(f"  {s.name:<11} {mark} {s.address:<55} {origin}")


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from devstack.stack import LocalStack

    stack = LocalStack(settings)
    statuses = stack.up(with_serve=not args.no_serve, progress=lambda m: print(m, flush=True))
    print(f"keyscope stack is up (data under {settings.data_dir}):")
    _print_status(statuses)
    return 0


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    from devstack.stack import LocalStack

    stopped = LocalStack(settings).down(progress=lambda m: print(m, flush=True))
    print("stopped: " + (", ".join(stopped) if stopped else "nothing (keyscope had started nothing)"))
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from devstack.stack import LocalStack

    statuses = LocalStack(settings).status()
    _print_status(statuses)
    return 0 if all(s.running for s in statuses) else 3


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.ingest import StopRequest, run_ingest

    if args.max_messages is not None:
        if args.max_messages < 0:
            raise ValueError("--max-messages must be ≥ 0")
        settings = settings.with_overrides(ingest_max_messages=args.max_messages)
    stop = StopRequest()
    if args.follow:
        stop.install()
    report = run_ingest(settings, follow=args.follow, stop=stop)
    print(report.line())
    return 0


async def post_tests(
    api_url: str, tests: list[dict[str, Any]], headers: dict[str, str], concurrency: int = 16
) -> list[int]:
    """POST each test to the API (with a progress bar); returns the status codes in order."""
    statuses = [0] * len(tests)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(tests)):
        queue.put_nowait(i)
    bar = tqdm(total=len(tests), desc="POST /v1/tests", unit="test", disable=None)
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                for _ in range(5):
                    response = await client.post("/v1/tests", json=tests[i])
                    if response.status_code != 503:
                        break
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                statuses[i] = response.status_code
                bar.update(1)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    bar.close()
    return statuses


async def produce_tests(settings: Settings, tests: list[dict[str, Any]]) -> int:
    """Validate, encode and produce tests straight to Kafka; returns how many were acknowledged."""
    from app.codec import encode_test
    from app.kafka import TestProducer
    from app.schemas import parse_submission

    producer = TestProducer(settings)
    try:
        for submission in tqdm(tests, desc="produce", unit="test", disable=None):
            test = parse_submission(submission, settings.max_keystrokes)
            await producer.send(test.user_id, encode_test(test))
    finally:
        await producer.close()
    return len(tests)


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from devstack.simulate import simulate_tests

    tests = simulate_tests(args.users, args.tests, seed=args.seed, first_user_id=args.first_user)
    if args.to == "http":
        codes = asyncio.run(post_tests(args.api or api_url(settings), tests, service_headers(settings)))
        accepted = sum(1 for c in codes if c == 202)
        print(f"submitted {len(tests)} tests over HTTP: {accepted} accepted (202)")
        return 0 if accepted == len(tests) else 1
    if args.to == "kafka":
        produced = asyncio.run(produce_tests(settings, tests))
        print(f"produced {produced} tests to {settings.keystroke_topic}")
        return 0
    for test in tests:
        print(json.dumps(test))
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from devstack.simulate import simulate_tests
    from devstack.stack import LocalStack
    from pipelines.ingest import run_ingest

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    stack = LocalStack(settings)
    stack.up(progress=lambda m: print(m, flush=True))
    timings["stack up"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    tests = simulate_tests(args.users, args.tests, seed=args.seed)
    api = stack.serve_url()
    headers = service_headers(stack.settings)
    codes = asyncio.run(post_tests(api, tests, headers))
    accepted = sum(1 for c in codes if c == 202)
    timings["simulate + POST"] = time.perf_counter() - t1
    print(f"submitted {len(tests)} simulated tests ({args.users} users × {args.tests}) over HTTP: {accepted} accepted")

    t2 = time.perf_counter()
    report = run_ingest(settings)
    timings["ingest job"] = time.perf_counter() - t2
    print("ingest job: " + report.line())

    user_id = tests[0]["user_id"]
    insights = httpx.get(f"{api}/v1/users/{user_id}/insights", headers=headers, timeout=60)
    insights.raise_for_status()
    print_insights(insights.json())
    print("\ntimings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    from app.auth import issue_token

    user_token = issue_token(stack.settings.token_secrets[0], "user", user_id=user_id, ttl_s=86_400)
    print("\ntry:")
    print(f"  {api}/dashboard#token={user_token}")
    print(f"      (user {user_id}'s dashboard: keyboard heatmap, trends, practice box; the token is valid for a day)")
    print('  TOKEN=$(keyscope token --service)   # or --admin, or --user ID')
    print(f'  curl -H "Authorization: Bearer $TOKEN" {api}/v1/users/{user_id}/insights')
    print(f'  curl -H "Authorization: Bearer $TOKEN" "{api}/v1/users/{user_id}/tests?limit=5"')
    print("  …/keys (per-key and per-pair table), …/progress (daily series, trend, forecast), …/practice (a drill)")
    print(f"  {api}/docs                       (the OpenAPI schema)")
    print(f"  http://127.0.0.1:{settings.ray_dashboard_port}      (Ray dashboard)")
    print("  keyscope status | keyscope down")
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from app.auth import issue_token, parse_service_key

    if args.service:
        if args.ttl is not None:
            raise ValueError("service keys do not expire; --ttl is for --user and --admin")
        if not settings.service_keys:
            raise ValueError(
                "no service key configured: run `keyscope up` (it writes secrets.json) or set KEYSCOPE_SERVICE_KEYS"
            )
        print(parse_service_key(settings.service_keys[0])[1].decode())
        return 0
    if not settings.token_secrets:
        raise ValueError(
            "no token secret configured: run `keyscope up` (it writes secrets.json) or set KEYSCOPE_TOKEN_SECRETS"
        )
    if args.admin:
        ttl = settings.admin_token_ttl_s if args.ttl is None else args.ttl
        print(issue_token(settings.token_secrets[0], "admin", ttl_s=ttl))
    else:
        ttl = settings.user_token_ttl_s if args.ttl is None else args.ttl
        print(issue_token(settings.token_secrets[0], "user", user_id=args.user, ttl_s=ttl))
    return 0


def cmd_user(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.user_data import delete_user, export_user

    if args.action == "export":
        out = Path(args.out or f"keyscope-user-{args.user_id}.zip")
        manifest = export_user(settings, args.user_id, out)
        print(f"wrote {out}: {manifest['total']} records about user {args.user_id}")
        for name, entry in manifest["stores"].items():
            parts = ", ".join(f"{part} {n}" for part, n in entry["parts"].items() if n)
            print(f"  {name:<11} {entry['count']:>9}" + (f"  ({parts})" if parts else ""))
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise ValueError("not a terminal: pass --yes to delete without a prompt")
        answer = input(f"Delete everything keyscope holds about user {args.user_id}? Type the user id to confirm: ")
        if answer.strip() != str(args.user_id):
            print("nothing deleted")
            return 1
    result = delete_user(settings, args.user_id)
    print(f"deleted user {args.user_id}: {result['total']} records; tombstone at {result['deleted_at']}")
    for name, entry in result["stores"].items():
        parts = ", ".join(f"{part} {n}" for part, n in entry["parts"].items() if n)
        print(f"  {name:<11} {entry['count']:>9}" + (f"  ({parts})" if parts else ""))
    return 0


def cmd_insights(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.insights import run_refresh

    print(run_refresh(settings, all_users=args.all).line())
    return 0


def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    from app.dlq import list_dead_letters, replay_dead_letters

    if args.action == "list":
        letters = list_dead_letters(settings, args.limit)
        print(f"{len(letters)} dead letters on {settings.dlq_topic} (oldest first, at most {args.limit}):")
        for item in letters:
            letter = item.letter
            print(
                f"  dlq {item.dlq_partition}:{item.dlq_offset}  from {settings.keystroke_topic} "
                f"{letter.partition}:{letter.offset}  {len(letter.value)} bytes  {letter.reason}"
            )
        return 0
    report = replay_dead_letters(settings, args.limit)
    print(
        f"replayed {report.replayed} dead letters to {settings.keystroke_topic}"
        + ("; more remain (run again)" if report.remaining else "")
        + "; the next ingest pass stores the ones that now decode and dead-letters the rest again"
    )
    return 0


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    if args.keystrokes is None:  # each workload's own default
        args.keystrokes = 10_000_000 if args.workload == "storage" else 2_000_000
    if args.workload == "tables":
        from bench.tables import print_report as print_tables_report
        from bench.tables import run as run_tables_bench

        print_tables_report(run_tables_bench(args.keystrokes, args.seed, args.clickhouse_dir))
        return 0
    if args.workload == "analytics":
        from bench.analytics import print_table, run

        result = run(users=args.users, tests_per_user=args.tests, repeats=args.repeats)
        print("per-test analytics on simulated tests, one process:")
        print_table(result.rows())
        return 0
    if args.workload == "ingest":
        from bench.ingest import print_table as print_ingest_table
        from bench.ingest import run as run_ingest_bench

        result = run_ingest_bench(
            settings, args.keystrokes, args.produce_only, args.skip_produce, 0 if args.produce_only else args.seed_tests
        )
        if result.keyscope is not None:
            print("ingest throughput, Kafka → Ray Data → ClickHouse, against the seed's synchronous MariaDB path:")
            print_ingest_table(result)
        return 0
    if args.workload == "insights":
        from bench.insights import print_table as print_insights_table
        from bench.insights import run as run_insights_bench
        from devstack.stack import LocalStack

        LocalStack(settings).up(progress=print)
        timings = run_insights_bench(settings, args.users_stored, args.sample, args.concurrency, args.duration)
        print(
            f"GET /v1/users/{{id}}/insights with {args.users_stored:,} typists stored, {args.concurrency} requests in "
            f"flight ({args.sample} typists per row; cached: {args.duration:g} s round and round; misses: each once):"
        )
        print_insights_table(timings)
        return 0
    if args.workload in ("latency", "soak"):
        from bench.load import print_latency, print_soak, run_latency, run_soak
        from devstack.stack import LocalStack

        seconds = args.seconds if args.seconds is not None else (600.0 if args.workload == "soak" else 60.0)
        if args.first_user is None:  # new users every run: a test stored by an earlier run would look instant
            args.first_user = 10**12 + int(time.time()) * 100_000
        LocalStack(settings).up(progress=print)
        if args.workload == "latency":
            result = run_latency(settings, args.rate, seconds, args.first_user)
            print(f"POST /v1/tests → visible in /v1/users/{{id}}/tests, {args.rate:g} tests/s for {seconds:g} s:")
            print_latency(result, args.rate)
            return 0 if result.visible == result.submitted else 1
        result, series = run_soak(settings, args.rate, seconds, args.first_user, args.warm_up)
        print(
            f"memory of every stack process, sampled every 10 s after {args.warm_up:g} s of warm-up, "
            f"{args.rate:g} tests/s for {seconds:g} s:"
        )
        flat = print_soak(series)
        print_latency(result, args.rate)
        print("memory flat in every process" if flat else "memory grew in some process (see the table)")
        return 0 if flat and result.visible == result.submitted else 1
    if args.workload == "passes":
        from bench.passes import print_table as print_passes_table
        from bench.passes import run as run_passes
        from devstack.stack import LocalStack

        LocalStack(settings).up(progress=print)
        first_user = args.first_user if args.first_user is not None else 10**12 + int(time.time()) * 100_000
        timings = run_passes(settings, args.tests, args.repeats, first_user)
        print(f"one ingest pass over {args.tests} new tests, by how it reads ({args.repeats} rounds after a warm-up):")
        print_passes_table(timings)
        return 0
    if args.workload == "serve":
        from bench.serve import run_and_print
        from devstack.stack import LocalStack

        LocalStack(settings).up(progress=print)
        return run_and_print(
            settings,
            routes=args.routes,
            concurrency=args.concurrency,
            duration_s=args.duration,
            warmup_s=args.warmup,
            read_users=args.read_users,
            uvicorn_workers=args.uvicorn_workers,
        )
    if args.workload == "storage":
        from bench.storage import print_report
        from bench.storage import run as run_storage_bench

        maria_subset = "all" if args.mariadb_keystrokes is None else f"{args.mariadb_keystrokes:,}"
        print(
            f"keyscope bench storage: keystrokes={args.keystrokes:,} tests per typist={args.tests} seed={args.seed} "
            f"clickhouse=chdb://{args.clickhouse_dir or '<fresh temporary directory>'} mariadb={args.mariadb} "
            f"mariadb keystrokes={maria_subset}"
        )
        print_report(
            run_storage_bench(
                keystrokes=args.keystrokes,
                tests_per_user=args.tests,
                seed=args.seed,
                clickhouse_dir=args.clickhouse_dir,
                mariadb_url=args.mariadb,
                mariadb_keystrokes=args.mariadb_keystrokes,
            )
        )
        return 0
    raise ValueError(f"unknown benchmark {args.workload!r}")


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    import os

    from pipelines.migrate_mysql import DSN_ENV, report_exit_code, run_migration

    dsn = args.dsn or os.environ.get(DSN_ENV)
    if not dsn:
        raise ValueError(f"--dsn is required (or set {DSN_ENV}): mysql://USER[:PASS]@HOST[:PORT]/DB")
    report = run_migration(settings, dsn, args.table, batch_size=args.batch_size, from_start=args.from_start)
    print("\n".join(report.lines()))
    return report_exit_code(report)


def cmd_warehouse(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.warehouse.cohorts import cohort_report, print_cohorts
    from pipelines.warehouse.export import parse_day
    from pipelines.warehouse.files import warehouse_uri
    from pipelines.warehouse.job import run_export

    if args.action == "export":
        if args.days < 1:
            raise ValueError("--days must be ≥ 1")
        for report in run_export(settings, args.day and parse_day(args.day), args.out, args.days):
            print(report.line())
        return 0
    if args.action == "erase":
        from app.clickhouse.client import clickhouse_client
        from pipelines.warehouse.erasure import sweep_deleted_users

        client = clickhouse_client(settings.clickhouse_url, background=True)
        try:
            print(sweep_deleted_users(client, warehouse_uri(settings, args.out)).line())
        finally:
            client.close()
        return 0
    uri = warehouse_uri(settings, args.source)
    table = cohort_report(uri)
    print(f"weekly retention and WPM gain by signup week, over {uri}/user_daily:")
    print_cohorts(table)
    return 0


def _fmt(value: float | None, pattern: str = "{:.1f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def print_insights(body: dict[str, Any]) -> None:
    """A short human summary of one user's insights."""
    health = body["health"]
    print(
        f"\ninsights of user {body['user_id']}: {body['test_count']} tests, mean WPM {_fmt(body['mean_wpm'])}, "
        f"mean accuracy {_fmt(body['mean_accuracy'], '{:.1%}')}, health {_fmt(health['score'], '{:.0f}')}/100 "
        f"(" + ", ".join(f"{k} {_fmt(v, '{:.0f}')}" for k, v in health["components"].items()) + ")"
    )
    print("  weak keys:")
    for unit in body["weak_keys"][:3]:
        print(f"    {unit['reason']}")
    print("  weak letter pairs:")
    for unit in body["weak_pairs"][:3]:
        print(f"    {unit['reason']}")
    confusions = body["error_patterns"]["top_confusions"][:3]
    if confusions:
        print("  typed instead: " + ", ".join(f"{c['key']!r}→{c['typed']!r} ×{c['count']}" for c in confusions))
    forecast = body["progress"]["forecast"]
    sessions = forecast.get("sessions_to_target")
    print(
        f"  trend {_fmt(body['progress']['trend'].get('wpm_per_test'), '{:+.2f}')} WPM per test; "
        + (
            f"about {sessions} more tests to {forecast['target_wpm']:.0f} WPM"
            if sessions is not None
            else f"no forecast ({forecast.get('reason')})"
        )
    )
    print("  recommendations:")
    for item in body["recommendations"][:3]:
        print(f"    {item['priority']}. {item['title']}")


def cmd_archive(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "cold":  # keyscope cold query SQL
        from app.cold import cold_query

        table = cold_query(settings, args.sql)
        print("\t".join(table.column_names))
        for row in zip(*(column.to_pylist() for column in table.columns)):
            print("\t".join("" if v is None else str(v) for v in row))
        return 0
    from pipelines.archive import parse_now, run_archive

    print(run_archive(settings, parse_now(args.now) if args.now else None).line())
    return 0


WAREHOUSE_ROOT_HELP = "root directory or URI (default: KEYSCOPE_WAREHOUSE_URI or <data_dir>/warehouse)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keyscope",
        description="keyscope: typing analytics on Kafka, Ray and ClickHouse. Service addresses come from "
        "KAFKA_BOOTSTRAP, CLICKHOUSE_URL, REDIS_URL and RAY_ADDRESS (local defaults); data lives under "
        "KEYSCOPE_DATA_DIR (default .keyscope/).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start the local stack (broker, ClickHouse endpoint, Redis, Ray, Serve app)")
    up.add_argument("--no-serve", action="store_true", help="start the services but do not deploy the Serve app")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what `keyscope up` started").set_defaults(func=cmd_down)
    sub.add_parser("status", help="say what is running and where (exit 3 if something is down)").set_defaults(
        func=cmd_status
    )

    ingest = sub.add_parser("ingest", help="run the ingest job (Kafka → metrics → ClickHouse) on the running stack")
    ingest.add_argument("--follow", action="store_true", help="keep ingesting micro-batches until interrupted")
    ingest.add_argument(
        "--max-messages",
        type=int,
        metavar="N",
        help="at most N messages per partition in one pass (0 = no limit; default from KEYSCOPE_INGEST_MAX_MESSAGES)",
    )
    ingest.set_defaults(func=cmd_ingest)

    simulate = sub.add_parser("simulate", help="generate typing tests from synthetic typists")
    simulate.add_argument("--users", type=int, default=10, help="number of typists (default 10)")
    simulate.add_argument("--tests", type=int, default=5, help="tests per typist (default 5)")
    simulate.add_argument("--seed", type=int, default=0, help="random seed; same seed, same tests")
    simulate.add_argument("--first-user", type=int, default=1, help="user id of the first typist (default 1)")
    simulate.add_argument(
        "--to",
        choices=("http", "kafka", "stdout"),
        default="http",
        help="POST to the API (default), produce to Kafka directly, or print JSON lines",
    )
    simulate.add_argument("--api", help="API base URL for --to http (default: the local Serve app)")
    simulate.set_defaults(func=cmd_simulate)

    insights = sub.add_parser(
        "insights",
        help="precompute insights of every typist with tests stored since the last run (ClickHouse user_insights and "
        "Redis); hourly in a cluster",
    )
    insights.add_argument("--all", action="store_true", help="every typist, not only those with new tests")
    insights.set_defaults(func=cmd_insights)

    dlq = sub.add_parser("dlq", help="list the dead-letter topic, or replay it after a fix")
    dlq.add_argument(
        "action",
        choices=("list", "replay"),
        help="list: show dead letters and their reasons; "
        "replay: re-submit those not replayed before to the keystroke topic",
    )
    dlq.add_argument("--limit", type=int, default=100, help="at most this many letters (default 100)")
    dlq.set_defaults(func=cmd_dlq)

    bench = sub.add_parser("bench", help="run a benchmark and print its table")
    bench.add_argument(
        "workload",
        choices=("analytics", "ingest", "tables", "storage", "latency", "soak", "passes", "serve", "insights"),
        help="analytics: keystrokes analysed per second per core; "
        "latency: POST → visible p50/p95/p99 under a steady load, ingest job in follow mode (starts the stack); "
        "soak: the same load for 10 minutes, sampling every stack process's memory (RSS and its private, anonymous "
        "part; a process is flat when its private memory grows under 5 %%); "
        "passes: one small ingest pass through a Ray Data Dataset against the follow mode's long-lived readers; "
        "ingest: end-to-end ingest throughput against the seed's MariaDB path (needs the stack; starts it); "
        "tables: ClickHouse's own CPU per stored keystroke, table by table (inserts, then one final merge), in "
        "process, and the most keystrokes/s the machine's cores could store if nothing else ran; "
        "storage: bytes per keystroke on disk, ClickHouse vs the seed's MariaDB JSON table; "
        "serve: req/s and p50/p95/p99 of each API route, Ray Serve next to the same app under plain uvicorn; "
        "insights: insights reads cached / from the precomputed row / computed, with --users-stored typists stored",
    )
    bench.add_argument("--users", type=int, default=200, help="simulated typists (default 200)")
    bench.add_argument(
        "--tests", type=int, default=10, help="analytics: tests per typist; passes: new tests per pass (default 10)"
    )
    bench.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="analytics: timed repeats, the best is reported; passes: rounds timed (default 5)",
    )
    bench.add_argument(
        "--keystrokes",
        type=int,
        default=None,
        help="ingest: keystrokes to produce and ingest (default 2,000,000); tables: keystrokes to simulate, analyse "
        "and store (default 2,000,000); storage: keystrokes to simulate and store, whole tests (default 10,000,000)",
    )
    bench.add_argument(
        "--warm-up", type=float, default=60.0, help="soak: seconds of the same load before sampling starts (default 60)"
    )
    bench.add_argument("--rate", type=float, default=10.0, help="latency, soak: tests submitted a second (default 10)")
    bench.add_argument(
        "--seconds", type=float, default=None, help="latency, soak: how long to load (default 60; soak 600)"
    )
    bench.add_argument(
        "--first-user",
        type=int,
        default=None,
        help="latency, soak: id of the first simulated user (default: fresh ids from the clock, so no test of an "
        "earlier run is already visible)",
    )
    bench.add_argument("--produce-only", action="store_true", help="ingest: produce the tests to Kafka, time nothing")
    bench.add_argument(
        "--skip-produce",
        action="store_true",
        help="ingest: time the ingest of what is on the topic now (e.g. after --produce-only; no warm-up pass)",
    )
    bench.add_argument(
        "--seed-tests", type=int, default=1000, help="ingest: tests timed on the seed's MariaDB path (0 = skip)"
    )
    bench.add_argument("--seed", type=int, default=1, help="storage, tables: simulator seed (default 1)")
    bench.add_argument(
        "--clickhouse-dir",
        help="storage, tables: a fresh chDB directory to fill (default: a temporary one, removed after)",
    )
    bench.add_argument(
        "--mariadb",
        default="mysql://root@127.0.0.1:3306/test",
        help="storage: MariaDB for the seed's keystroke_analytics table (default mysql://root@127.0.0.1:3306/test)",
    )
    bench.add_argument(
        "--mariadb-keystrokes",
        type=int,
        metavar="N",
        help="storage: store only the tests of the first N keystrokes in MariaDB; its bytes per keystroke then "
        "stand for the whole run (default: all)",
    )
    bench.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="serve, insights: connections, each with one request in flight (default 32)",
    )
    bench.add_argument(
        "--duration", type=float, default=5.0, help="serve, insights: seconds timed per route (default 5)"
    )
    bench.add_argument("--warmup", type=float, default=1.0, help="serve: load before each timing, s (default 1)")
    bench.add_argument(
        "--routes",
        default=None,
        help="serve: comma-separated routes among insights,revalidate,keys,progress,tests,healthz,readyz,submit "
        "(default all)",
    )
    bench.add_argument("--read-users", type=int, default=20, help="serve: read the users 1..N (default 20)")
    bench.add_argument(
        "--uvicorn-workers",
        type=int,
        nargs="*",
        default=[1],
        metavar="N",
        help="serve: also run the app under plain uvicorn with N workers, once per N given (default 1; none: skip)",
    )
    bench.add_argument(
        "--users-stored", type=int, default=10_000, help="insights: typists stored, one test each (default 10,000)"
    )
    bench.add_argument("--sample", type=int, default=100, help="insights: typists read per row (default 100)")
    bench.set_defaults(func=cmd_bench)

    demo = sub.add_parser("demo", help="the main job: stack up, simulate tests over HTTP, ingest, show insights")
    demo.add_argument("--users", type=int, default=200)
    demo.add_argument("--tests", type=int, default=10)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)

    token = sub.add_parser("token", help="print a bearer credential for the API (send it as `Authorization: Bearer …`)")
    who = token.add_mutually_exclusive_group(required=True)
    who.add_argument("--service", action="store_true", help="the first configured service key (platform backend)")
    who.add_argument(
        "--admin", action="store_true", help="an admin token (default lifetime KEYSCOPE_ADMIN_TOKEN_TTL_S)"
    )
    who.add_argument("--user", type=int, metavar="ID", help="a token that reads only user ID's data")
    token.add_argument("--ttl", type=int, metavar="SECONDS", help="token lifetime (default from the settings)")
    token.set_defaults(func=cmd_token)
    user = sub.add_parser("user", help="export or delete everything keyscope holds about one user (GDPR)")
    user_actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    user_export = user_actions.add_parser(
        "export", help="write a zip archive of the user's data in every store, with manifest.json of the counts"
    )
    user_export.add_argument("user_id", type=int, metavar="USER_ID")
    user_export.add_argument("--out", metavar="FILE", help="archive path (default keyscope-user-USER_ID.zip)")
    user_delete = user_actions.add_parser(
        "delete", help="delete the user from every store and record a tombstone (queued messages are dropped)"
    )
    user_delete.add_argument("user_id", type=int, metavar="USER_ID")
    user_delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    user.set_defaults(func=cmd_user)
    warehouse = sub.add_parser("warehouse", help="export daily Parquet for a data warehouse; run the cohort example")
    warehouse_actions = warehouse.add_subparsers(dest="action", required=True, metavar="ACTION")
    warehouse_export = warehouse_actions.add_parser(
        "export",
        help="one UTC day of per-test results and per-user / per-key daily aggregates → Parquet (replaces the day)",
    )
    warehouse_export.add_argument("--day", help="UTC day YYYY-MM-DD (default: yesterday)")
    warehouse_export.add_argument(
        "--days", type=int, default=1, help="export this many days ending with --day (default 1)"
    )
    warehouse_export.add_argument(
        "--out", metavar="URI", help=WAREHOUSE_ROOT_HELP
    )
    warehouse_erase = warehouse_actions.add_parser(
        "erase",
        help="remove the users deleted since the last sweep from every exported day (each export also does)",
    )
    warehouse_erase.add_argument(
        "--out", metavar="URI", help=WAREHOUSE_ROOT_HELP
    )
    warehouse_cohorts = warehouse_actions.add_parser(
        "cohorts", help="weekly retention and WPM gain by signup week (pipelines/warehouse_cohorts.sql) over the files"
    )
    warehouse_cohorts.add_argument(
        "--from", dest="source", metavar="URI", help="warehouse root (default as for export)"
    )
    warehouse.set_defaults(func=cmd_warehouse)
    migrate = sub.add_parser("migrate", help="import data from the seed's current architecture")
    migrate_sources = migrate.add_subparsers(dest="source", required=True, metavar="SOURCE")
    mysql = migrate_sources.add_parser(
        "mysql",
        help="the seed's MySQL keystroke_analytics table (JSON columns) → ClickHouse; resumable, idempotent",
        description="Import the seed's MySQL/MariaDB keystroke_analytics table into keyscope's ClickHouse "
        "(CLICKHOUSE_URL) in batches, resuming after the last stored batch. Ends with a reconciliation: rows read = "
        "tests written + rows already present + rows rejected (see README, Migrating from the MySQL table).",
    )
    mysql.add_argument(
        "--dsn",
        help="mysql://USER[:PASS]@HOST[:PORT]/DB (default: $KEYSCOPE_MYSQL_DSN; a password left out is taken from "
        "$MYSQL_PWD)",
    )
    mysql.add_argument("--table", default="keystroke_analytics", help="source table (default keystroke_analytics)")
    mysql.add_argument(
        "--batch-size", type=int, default=1000, metavar="N", help="rows read and stored at a time (default 1000)"
    )
    mysql.add_argument(
        "--from-start",
        action="store_true",
        help="ignore the stored progress and read from the first row (stored tests are skipped, not duplicated)",
    )
    mysql.set_defaults(func=cmd_migrate)
    archive = sub.add_parser(
        "archive", help="retention: keystrokes past KEYSCOPE_HOT_DAYS to cold Parquet, expire and anonymize old data"
    )
    archive_actions = archive.add_subparsers(dest="action", required=True, metavar="ACTION")
    archive_run = archive_actions.add_parser(
        "run",
        help="one run of the archive job (pipelines/archive.py): archive, delete cold data past KEYSCOPE_COLD_DAYS, "
        "anonymize per-test results as old",
    )
    archive_run.add_argument("--now", metavar="ISO", help="run as of this ISO-8601 time instead of the clock (tests)")
    archive.set_defaults(func=cmd_archive)
    cold = sub.add_parser("cold", help="read the cold store (Parquet) with ClickHouse SQL")
    cold_actions = cold.add_subparsers(dest="action", required=True, metavar="ACTION")
    cold_sql = cold_actions.add_parser(
        "query",
        help="run SQL in chDB; the table name cold_keystrokes reads every cold file (columns + day, user_bucket)",
    )
    cold_sql.add_argument("sql", help="e.g. 'SELECT user_id, count() FROM cold_keystrokes GROUP BY user_id'")
    cold.set_defaults(func=cmd_archive)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    for noisy in ("aiokafka", "kafka", "urllib3", "httpx", "ray"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    apply_local_ray_env()  # before anything imports ray
    try:
        settings = Settings.from_env()
        return int(args.func(settings, args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a CLI user wants the reason, not a traceback
        if args.verbose:
            raise
        print(f"keyscope {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
