"""`keyscope bench failover`: what losing an ingress replica, or a whole Ray node, costs the requests in flight.

    keyscope bench failover [--seconds 20] [--concurrency 32] [--kill-at 8] [--scenarios none,node,replica]

Runs on a two-node stack of its own (devstack/two_nodes.py: the whole stack in one network namespace, a Ray worker
node in another, the Serve app spread over both; data under `<data dir>/failover`), so it needs root and network
namespaces. It stores a few simulated typists' tests, caches their reads, and then, per scenario,
drives a closed loop of cached `GET /v1/users/{id}/insights` at the API as `wrk -c32` would (bench/serve.py's load
process: keep-alive connections, one request in flight each, a lost connection reopened) for `--seconds`, and
`--kill-at` seconds in:

- `none`: kills nothing (the control);
- `node`: SIGKILL to every process of the worker node (its ingress replica and whatever else ran there); the node
  stays down, so the scenarios after it run on the head alone, where Serve has restarted what the node ran;
- `replica`: SIGKILL to the process of an ingress replica on the head (Serve starts another).

Each scenario starts once the app is RUNNING with two ingress replicas.

Failed requests are what an ordinary HTTP client sees: a status other than 2xx/304, a connection lost with a request
in flight, a failed connect, or a request unanswered at the end. The table gives each scenario's requests, failed
requests, their share, and the p99 latency.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from app.api_client import service_headers
from app.config import Settings
from app.text_table import print_table
from bench.serve import LoadResult, LoadSpec, ok_status, prepare_reads, route_requests, run_load
from devstack.cluster_state import replicas, wait_app_running
from devstack.second_node import SecondNode, TwoHosts, namespaces_unavailable
from devstack.simulate import simulate_tests
from devstack.stack import LocalStack
from devstack.two_nodes import Ports, start_job, two_node_settings, two_node_stack

SCENARIOS = ("none", "node", "replica")
NET = TwoHosts("ks-fail", 76)  # tests/e2e/test_scale_out.py uses another subnet
PORTS = Ports(kafka=23092, clickhouse=23123, redis=23379, ray=23380, dashboard=23265, serve=23000)
FIRST_USER = 7_850_001
READ_USERS = 20


# -- the figures (pure; unit-tested) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One scenario as the client saw it."""

    scenario: str
    killed: str
    answered: int  # responses received, any status
    non_2xx: int  # of those, neither 2xx nor 304
    connection_errors: int  # lost with a request in flight, failed connects, unanswered at the end
    p99_ms: float | None
    statuses: tuple[tuple[int, int], ...] = ()  # (status, responses) of the failed responses
    failures: tuple[str, ...] = ()  # the first few connection failures, as the load process described them

    @property
    def requests(self) -> int:
        return self.answered + self.connection_errors

    @property
    def failed(self) -> int:
        return self.non_2xx + self.connection_errors

    @property
    def failed_share(self) -> float:
        return self.failed / self.requests if self.requests else 0.0


def outcome(scenario: str, killed: str, result: LoadResult) -> Outcome:
    """The scenario's figures from the load process's result (its `errors` count bad statuses and connection
    failures together; `requests` counts only the responses)."""
    bad = tuple(sorted((status, n) for status, n in result.statuses.items() if not ok_status(status)))
    non_2xx = sum(n for _, n in bad)
    return Outcome(
        scenario, killed, result.requests, non_2xx, result.errors - non_2xx, result.latency_ms(99), bad,
        tuple(result.failures),
    )  # fmt: skip


def table_rows(outcomes: Sequence[Outcome]) -> list[list[str]]:
    rows = [["scenario", "killed", "requests", "failed", "non-2xx", "connection", "failed %", "p99 ms"]]
    for o in outcomes:
        rows.append(
            [
                o.scenario,
                o.killed,
                f"{o.requests:,}",
                f"{o.failed:,}",
                f"{o.non_2xx:,}",
                f"{o.connection_errors:,}",
                f"{100 * o.failed_share:.3f}",
                "-" if o.p99_ms is None else f"{o.p99_ms:,.1f}",
            ]
        )
    return rows


# -- the run -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailoverConfig:
    scenarios: tuple[str, ...] = SCENARIOS
    seconds: float = 20.0
    concurrency: int = 32
    kill_at_s: float = 8.0
    warmup_s: float = 1.0


def seed_reads(stack: LocalStack, headers: dict[str, str]) -> dict[int, str]:
    """Store a few tests of READ_USERS typists, ingest them and cache every read; returns each user's ETag."""
    tests = simulate_tests(READ_USERS, 3, seed=7850, first_user_id=FIRST_USER)
    with httpx.Client(base_url=stack.serve_url(), headers=headers, timeout=30) as api:
        for test in tests:
            api.post("/v1/tests", json=test).raise_for_status()
    log_path = stack.logs / "bench-failover-ingest.log"
    drain = start_job(stack, [sys.executable, "-m", "pipelines.ingest"], log_path)
    if drain.wait(timeout=300) != 0:
        raise RuntimeError(f"the ingest drain failed; see {log_path}")
    return prepare_reads(stack.settings, stack.serve_url(), headers, range(FIRST_USER, FIRST_USER + READ_USERS))


def kill(scenario: str, stack: LocalStack, node: SecondNode) -> str:
    """Kill what the scenario names; returns what was killed, in words."""
    if scenario == "none":
        return "-"
    ingress = [r for r in replicas(stack.settings, "ingress") if r.state == "RUNNING"]
    if scenario == "replica":
        on_head = [r for r in ingress if r.node_id != node.node_id]
        if not on_head:
            raise RuntimeError("no ingress replica runs on the head")
        target = on_head[0]
        os.kill(target.pid, signal.SIGKILL)
        return f"ingress replica (pid {target.pid}, head)"
    if scenario == "node":
        if not node.pids():
            raise RuntimeError("the worker node is already down")
        on_node = sum(r.node_id == node.node_id for r in ingress)
        processes = node.kill()
        return f"worker node ({processes} processes, {on_node} ingress replica{'s' * (on_node != 1)})"
    raise ValueError(f"unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)})")


def run_scenario(
    scenario: str, stack: LocalStack, node: SecondNode, requests: tuple[bytes, ...], config: FailoverConfig
) -> Outcome:
    """The load with the scenario's kill in the middle of it (a timer thread, while the load process runs)."""
    wait_app_running(stack.settings, min_ingress=2)
    host, port = stack.settings.serve_host, stack.settings.serve_port
    spec = LoadSpec(host, port, requests, config.concurrency, config.seconds, config.warmup_s)
    killed: list[str] = []
    errors: list[BaseException] = []

    def kill_now() -> None:
        try:
            killed.append(kill(scenario, stack, node))
        except BaseException as exc:  # raised again below, in this thread
            errors.append(exc)

    timer = threading.Timer(config.warmup_s + config.kill_at_s, kill_now)
    timer.start()
    try:
        result = run_load(spec)
    finally:
        timer.cancel()
        timer.join()
    if errors:
        raise RuntimeError(f"scenario {scenario}: the kill failed") from errors[0]
    return outcome(scenario, killed[0] if killed else "(the load ended first)", result)


def run(settings: Settings, config: FailoverConfig, progress: Callable[[str], None] = print) -> list[Outcome]:
    """Every scenario of `config`, in order, on a two-node stack started (and stopped) for the run."""
    bench_settings = two_node_settings(settings.data_dir / "failover", NET, PORTS)
    outcomes: list[Outcome] = []
    with two_node_stack(bench_settings, NET, progress=progress) as (stack, node):
        headers = service_headers(stack.settings)
        progress(f"storing and caching the reads of users {FIRST_USER}…{FIRST_USER + READ_USERS - 1}…")
        etags = seed_reads(stack, headers)
        host = f"{stack.settings.serve_host}:{stack.settings.serve_port}"
        requests = route_requests("insights", host, headers, tuple(etags), etags)
        for scenario in config.scenarios:
            progress(f"scenario {scenario}: {config.seconds:g} s of load, the kill {config.kill_at_s:g} s in…")
            outcomes.append(run_scenario(scenario, stack, node, requests, config))
            progress("  " + "  ".join(table_rows(outcomes)[-1]))
    return outcomes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of load per scenario (default 20)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections, one request in flight each (32)")
    parser.add_argument("--kill-at", type=float, default=8.0, help="seconds into the load of the kill (default 8)")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, in order, among {','.join(SCENARIOS)}"
    )


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """`keyscope bench failover`: 1 if the stack could not run or any scenario failed 0.01 % or more."""
    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown or not scenarios:
        raise SystemExit(f"--scenarios: one or more of {', '.join(SCENARIOS)}, not {args.scenarios!r}")
    if scenarios.count("node") > 1:
        raise SystemExit("--scenarios: `node` once (the worker node stays down)")
    if not 0 < args.kill_at < args.seconds:
        raise SystemExit("--kill-at must fall inside --seconds")
    reason = namespaces_unavailable()
    if reason is not None:
        raise SystemExit(f"keyscope bench failover needs network namespaces for its second node: {reason}")
    config = FailoverConfig(scenarios, args.seconds, args.concurrency, args.kill_at)
    started = time.strftime("%Y-%m-%d %H:%M")
    outcomes = run(settings, config)
    print(
        f"\nkeyscope bench failover, {started}: {os.cpu_count()} CPUs; two Ray nodes (a worker node in network "
        f"namespace {NET.node_ns}); cached GET /v1/users/{{id}}/insights, {config.concurrency} connections, "
        f"{config.seconds:g} s per scenario, the kill {config.kill_at_s:g} s in"
    )
    print_table(table_rows(outcomes), numeric_from=2)
    for o in outcomes:
        if o.failed:
            statuses = ", ".join(f"{n} × HTTP {status}" for status, n in o.statuses) or "no bad status"
            print(f"  {o.scenario}: {statuses}; " + "; ".join(o.failures))
    return 0 if all(o.failed_share < 0.0001 for o in outcomes) else 1
