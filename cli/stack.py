"""`keyscope up | down | status | simulate | demo`: the local stack, and typing tests fed to it."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import httpx

from app.api_client import api_url, service_headers
from app.config import Settings


def _print_status(statuses) -> None:  # noqa: ANN001 - devstack.stack.ServiceStatus, imported lazily
    for s in statuses:
        mark = "up  " if s.running else "down"
        origin = "started by keyscope" if s.started_by_stack else ("found running" if s.running else "")
        print(f"  {s.name:<11} {mark} {s.address:<55} {origin}")


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-serve", action="store_true", help="start the services but do not deploy the Serve app")


def run_up(settings: Settings, args: argparse.Namespace) -> int:
    from devstack.stack import LocalStack

    stack = LocalStack(settings)
    statuses = stack.up(with_serve=not args.no_serve, progress=lambda m: print(m, flush=True))
    print(f"keyscope stack is up (data under {settings.data_dir}):")
    _print_status(statuses)
    return 0


def add_no_arguments(parser: argparse.ArgumentParser) -> None:
    """For commands without flags (down, status)."""


def run_down(settings: Settings, args: argparse.Namespace) -> int:
    from devstack.stack import LocalStack

    stopped = LocalStack(settings).down(progress=lambda m: print(m, flush=True))
    print("stopped: " + (", ".join(stopped) if stopped else "nothing (keyscope had started nothing)"))
    return 0


def run_status(settings: Settings, args: argparse.Namespace) -> int:
    from devstack.stack import LocalStack

    statuses = LocalStack(settings).status()
    _print_status(statuses)
    return 0 if all(s.running for s in statuses) else 3


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=10, help="number of typists (default 10)")
    parser.add_argument("--tests", type=int, default=5, help="tests per typist (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same tests")
    parser.add_argument("--first-user", type=int, default=1, help="user id of the first typist (default 1)")
    parser.add_argument(
        "--traits",
        action="store_true",
        help="typists with what the models learn: slow letter pairs, error-prone keys, a practice curve, "
        "fatigue and day-to-day form (docs/metrics.md)",
    )
    parser.add_argument(
        "--to",
        choices=("http", "kafka", "stdout"),
        default="http",
        help="POST to the API (default), produce to Kafka directly, or print JSON lines",
    )
    parser.add_argument("--api", help="API base URL for --to http (default: the local Serve app)")


def run_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from devstack.produce import post_tests, produce_tests
    from devstack.simulate import simulate_tests

    tests = simulate_tests(args.users, args.tests, seed=args.seed, first_user_id=args.first_user, traits=args.traits)
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


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=200, help="simulated typists (default 200)")
    parser.add_argument("--tests", type=int, default=10, help="tests per typist (default 10)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    from app.auth import issue_token_from_settings
    from devstack.produce import post_tests
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

    user_token = issue_token_from_settings(stack.settings, "user", user_id=user_id, ttl_s=86_400)
    print("\ntry:")
    print(f"  {api}/dashboard#token={user_token}")
    print(f"      (user {user_id}'s dashboard: keyboard heatmap, trends, practice box; the token is valid for a day)")
    print("  TOKEN=$(keyscope token --service)   # or --admin, or --user ID")
    print(f'  curl -H "Authorization: Bearer $TOKEN" {api}/v1/users/{user_id}/insights')
    print(f'  curl -H "Authorization: Bearer $TOKEN" "{api}/v1/users/{user_id}/tests?limit=5"')
    print("  …/keys (per-key and per-pair table), …/progress (daily series, trend, forecast), …/practice (a drill),")
    print("  …/practice-text (sentences written for the typist; a drill until the model has written them)")
    print(f"  {api}/docs                       (the OpenAPI schema)")
    print(f"  http://127.0.0.1:{settings.ray_dashboard_port}      (Ray dashboard)")
    print("  keyscope status | keyscope down")
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
