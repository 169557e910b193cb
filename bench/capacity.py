"""`keyscope bench capacity`: the whole local stack under a realistic mixed load, the figure we steer by.

    keyscope bench capacity [--rate 100] [--seconds 45] [--users 5000] [--find-knee] [--memory]

Returning typists: a pool of `--users` fresh user ids (a new pool each run), test i from typist i mod users, each a
simulated test (the simulator's texts and typing) stamped with the time it is sent, POSTed at a steady offered rate
(open loop) while the ingest job runs in follow mode. One test in `--sample` is polled (every 250 ms for 2 s, then
every second) until `GET /v1/users/{id}/tests` lists it: POST → visible. One visible test in `--insights-sample` is
then followed until `GET /v1/users/{id}/insights` counts it (its `test_count` reaches the typist's tests so far):
visible → insights fresh. After the load, the run waits for the backlog: every accepted test stored (counted in
ClickHouse against the accepted ones; a shortfall after `--drain-timeout` is reported as lost or late).

CPU: each stack process's CPU time over the load window (from /proc), as a share of one core, grouped by process.
`--memory` also samples every stack process's memory every 10 s of the load and reports whether each stayed flat,
as `keyscope bench soak` does.

`--find-knee` runs rates from `--rate` up, ×1.5 each step, until visible p95 passes 2 s (or a test is lost), and
reports the last rate that held.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import numpy as np

from app.api_client import api_url, service_headers
from app.config import Settings
from app.text_table import print_table
from bench import add_first_user_argument, first_user
from bench.load import SAMPLE_EVERY_S, MemorySeries, follower, print_soak, sample_memory, stack_processes, steady_series

POLL_S = 0.25
POLL_LATE_S = 1.0
POLL_LATE_AFTER_S = 2.0
VISIBLE_TIMEOUT_S = 120.0
FRESH_TIMEOUT_S = 60.0
KNEE_VISIBLE_P95_S = 2.0
KNEE_STEP = 1.5
KNEE_MAX_STEPS = 8
TICKS = os.sysconf("SC_CLK_TCK")
# Before the timed load, the machine must be this quiet (cores busy over a window, every process counted): a stack
# just started still settles for a minute or so (Serve replicas, the first merges, Ray's agents), and a 30-s step
# begun meanwhile measures that start-up rather than the load.
SETTLE_BUSY_CORES = 0.45
SETTLE_WINDOW_S = 5.0
STAMP_PLACEHOLDER = b"0000-00-00T00:00:00.000Z"  # as long as a real stamp
JSON = {"Content-Type": "application/json"}


@dataclass
class CapacityResult:
    offered: float
    seconds: float = 0.0  # from the first scheduled POST to the last POST answered
    accepted: int = 0
    refused: int = 0
    post_s: list[float] = field(default_factory=list)
    visible_s: list[float] = field(default_factory=list)
    fresh_s: list[float] = field(default_factory=list)
    not_visible: int = 0  # sampled tests not visible within VISIBLE_TIMEOUT_S
    not_fresh: int = 0
    poll_errors: int = 0  # polls that timed out or lost their connection
    stored: int = 0  # accepted tests found stored after the drain
    drain_s: float | None = None  # load end → every accepted test stored (None: not within the timeout)
    cpu: dict[str, float] = field(default_factory=dict)  # process group → share of one core over the load
    window_s: float = 0.0  # the load window the CPU shares are over
    clickhouse: dict[str, int] = field(default_factory=dict)  # ClickHouse's own counters over the load window
    memory: dict[int, MemorySeries] | None = None  # with --memory: each stack process's memory over the load

    @property
    def achieved(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    @property
    def lost(self) -> int:
        return self.accepted - self.stored

    def held(self) -> bool:
        """Visible p95 within 2 s, every sampled test visible, nothing lost."""
        p95 = percentile(self.visible_s, 95)
        return p95 is not None and p95 <= KNEE_VISIBLE_P95_S and not self.not_visible and not self.lost


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def stamp(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def returning_typists(count: int, users: int, first_user_id: int, seed: int) -> list[dict]:
    """`count` simulated tests from a pool of `users` typists, typist i mod users for test i (each typist's tests in
    their order)."""
    from devstack.simulate import simulate_tests

    users = min(users, count)
    per_user = -(-count // users)
    tests = simulate_tests(users, per_user, seed=seed, first_user_id=first_user_id)
    by_user = [tests[u * per_user : (u + 1) * per_user] for u in range(users)]
    return [by_user[i % users][i // users] for i in range(count)]


# ClickHouse's own counters (system.events of the endpoint's engine), as (row label, events summed).
CLICKHOUSE_COUNTERS = (
    ("SELECT queries", ("SelectQuery",)),
    ("INSERT queries", ("InsertQuery",)),
    ("all engine queries (SET, USE, DDL included)", ("Query",)),
    ("rows inserted", ("InsertedRows",)),
    ("merges", ("Merge",)),
    ("rows merged", ("MergedRows",)),
    ("SELECT time, ms", ("SelectQueryTimeMicroseconds",)),
    ("INSERT time, ms", ("InsertQueryTimeMicroseconds",)),
    ("merge time, ms", ("MergeTotalMilliseconds",)),
    ("query threads' CPU, ms", ("UserTimeMicroseconds", "SystemTimeMicroseconds")),
)
_MICROSECONDS = ("SelectQueryTimeMicroseconds", "InsertQueryTimeMicroseconds", "UserTimeMicroseconds",
                 "SystemTimeMicroseconds")


def clickhouse_events(settings: Settings) -> dict[str, int]:
    """The engine's event counters now (microsecond counters in ms); empty if the endpoint does not answer."""
    from app.clickhouse.client import clickhouse_client

    names = sorted({name for _, events in CLICKHOUSE_COUNTERS for name in events})
    try:
        client = clickhouse_client(settings.clickhouse_url)
        try:
            rows = client.query("SELECT event, value FROM system.events WHERE event IN {e:Array(String)}",
                                parameters={"e": names}).result_rows
        finally:
            client.close()
    except Exception:  # a counter table is a bonus: the load's own figures stand without it
        return {}
    return {name: int(value) // (1000 if name in _MICROSECONDS else 1) for name, value in rows}


def cpu_seconds(pids: dict[int, str]) -> dict[int, float]:
    """Each process's user + system CPU seconds so far (processes gone are left out)."""
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return found


def cpu_shares(
    pids: dict[int, str], before: dict[int, float], after: dict[int, float], wall_s: float
) -> dict[str, float]:
    """Share of one core per process group (the service, or for a Ray worker its actor or task); a process started
    during the window counts from 0."""
    shares: Counter[str] = Counter()
    for pid, name in pids.items():
        if pid in after:
            shares[group_of(name)] += (after[pid] - before.get(pid, 0.0)) / wall_s
    return dict(shares)


def group_of(name: str) -> str:
    """`ray: ray::ServeReplica:keyscope:ingress` → `ray::ServeReplica:keyscope:ingress`; `kafka: noida-db` → kafka."""
    service, _, process = name.partition(": ")
    if process.startswith("ray::"):
        return process.split("(")[0]
    return service if process else name


async def offered_load(settings: Settings, tests: list[dict], rate: float, sample: int, insights_sample: int,
                       result: CapacityResult, extra: dict[str, int] | None = None) -> None:
    """POST `tests` at `rate` (emptying the list once they are encoded), polling the sample; fills `result`."""
    # aiohttp, not httpx: the load generator shares the stack's 2 cores, and httpx spends about ten times more CPU
    # per request than aiohttp does, CPU the stack would otherwise have.
    placeholder = STAMP_PLACEHOLDER.decode()
    bodies = [json.dumps({**t, "started_at": placeholder}, separators=(",", ":")).encode() for t in tests]
    # Only the ids from here on: the simulated tests with their keystroke lists weigh several times their JSON, and a
    # ten-minute run holds ~100 k of them on a machine whose memory the stack needs.
    ids = [{"user_id": t["user_id"], "test_id": t["test_id"]} for t in tests]
    tests.clear()
    seen: Counter[int] = Counter()  # tests accepted per typist so far: what a fresh insights read must count
    connector = aiohttp.TCPConnector(limit=128)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url=api_url(settings), headers=service_headers(settings),
                                     connector=connector, timeout=timeout) as client:
        started = time.perf_counter()

        async def get(path: str, params: dict[str, str] | None = None) -> bytes | None:
            """A poll's body on 200; None on any other answer, a timeout or a dropped connection (an overloaded
            stack: the poll goes on until its own deadline)."""
            try:
                async with client.get(path, params=params) as answer:
                    body = await answer.read()
            except (TimeoutError, aiohttp.ClientError):
                result.poll_errors += 1
                return None
            return body if answer.status == 200 else None

        async def visible(test: dict, posted: float) -> bool:
            path = f"/v1/users/{test['user_id']}/tests"
            while time.perf_counter() - posted < VISIBLE_TIMEOUT_S:
                if (body := await get(path, {"limit": "5"})) is not None and any(
                    t["test_id"] == test["test_id"] for t in json.loads(body)["tests"]
                ):
                    result.visible_s.append(time.perf_counter() - posted)
                    return True
                late = time.perf_counter() - posted > POLL_LATE_AFTER_S
                await asyncio.sleep(POLL_LATE_S if late else POLL_S)
            result.not_visible += 1
            return False

        async def fresh(user_id: int, count: int) -> None:
            shown = time.perf_counter()
            while time.perf_counter() - shown < FRESH_TIMEOUT_S:
                body = await get(f"/v1/users/{user_id}/insights")
                if body is not None and json.loads(body).get("test_count", 0) >= count:
                    result.fresh_s.append(time.perf_counter() - shown)
                    return
                await asyncio.sleep(POLL_S)
            result.not_fresh += 1

        async def one(i: int, test: dict) -> None:
            scheduled = started + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            # The body was encoded ahead (a test is kilobytes of JSON): only its time is written in now.
            body = bodies[i].replace(STAMP_PLACEHOLDER, stamp(datetime.now(UTC)).encode(), 1)
            posted = time.perf_counter()
            try:
                async with client.post("/v1/tests", data=body, headers=JSON) as response:
                    await response.read()
            except (TimeoutError, aiohttp.ClientError):
                result.refused += 1
                return
            result.post_s.append(time.perf_counter() - scheduled)
            if response.status != 202:
                result.refused += 1
                return
            result.accepted += 1
            seen[test["user_id"]] += 1
            count = seen[test["user_id"]]
            if i % sample == 0 and await visible(test, posted) and (i // sample) % insights_sample == 0:
                await fresh(test["user_id"], count)

        done = asyncio.Event()
        sampler = (asyncio.create_task(sample_memory(settings, extra or {}, result.memory, done))
                   if result.memory is not None else None)  # fmt: skip
        tasks = [asyncio.create_task(one(i, test)) for i, test in enumerate(ids)]
        await asyncio.gather(*tasks)
        done.set()
        if sampler is not None:
            await sampler
        result.seconds = max(result.seconds, len(ids) / rate)


async def warm_up(settings: Settings, user_id: int, timeout_s: float = VISIBLE_TIMEOUT_S) -> float:
    """One test through the whole path before the timed load: the follower's first pass starts its Kafka readers
    and Ray Data (seconds), which would otherwise land on the first tests of the load. Returns the seconds it took."""
    from devstack.simulate import simulate_tests

    test = simulate_tests(1, 1, seed=user_id % 1_000_003, first_user_id=user_id)[0]
    started = time.perf_counter()
    async with aiohttp.ClientSession(base_url=api_url(settings), headers=service_headers(settings)) as client:
        async with client.post("/v1/tests", json=test) as response:
            if response.status != 202:
                raise SystemExit(f"the warm-up test was refused: HTTP {response.status} {await response.text()}")
        while time.perf_counter() - started < timeout_s:
            async with client.get(f"/v1/users/{user_id}/tests", params={"limit": "1"}) as answer:
                if answer.status == 200 and (await answer.json())["tests"]:
                    return time.perf_counter() - started
            await asyncio.sleep(POLL_S)
    raise SystemExit(f"the warm-up test was not visible within {timeout_s:g} s: is the ingest job running?")


def busy_cores(window_s: float) -> float:
    """Cores the whole machine kept busy over the next `window_s` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait

    total0, idle0 = sample()
    time.sleep(window_s)
    total1, idle1 = sample()
    elapsed = total1 - total0
    return 0.0 if elapsed <= 0 else (elapsed - (idle1 - idle0)) / elapsed * (os.cpu_count() or 1)


def settle(timeout_s: float, progress=print, measure=busy_cores) -> bool:
    """Wait until the machine is quiet (SETTLE_BUSY_CORES) or `timeout_s` has passed; says which. True if quiet."""
    started = time.monotonic()
    while True:
        busy = measure(SETTLE_WINDOW_S)
        waited = time.monotonic() - started
        if busy <= SETTLE_BUSY_CORES:
            progress(f"settled: {busy:.2f} cores busy after {waited:.0f} s")
            return True
        if waited >= timeout_s:
            progress(f"not settled: {busy:.2f} cores still busy after {waited:.0f} s; loading anyway")
            return False


def stored_tests(settings: Settings, first_user_id: int, users: int) -> int:
    from app.clickhouse.client import clickhouse_client

    client = clickhouse_client(settings.clickhouse_url)
    try:
        return int(client.command(
            "SELECT count() FROM test_results WHERE user_id BETWEEN {a:UInt64} AND {b:UInt64}",
            parameters={"a": first_user_id, "b": first_user_id + users - 1},
        ))
    finally:
        client.close()


def run_rate(settings: Settings, rate: float, seconds: float, users: int, first_user_id: int, sample: int,
             insights_sample: int, drain_timeout_s: float, extra: dict[str, int],
             progress=print, memory: bool = False) -> CapacityResult:
    """One rate: load, then drain; the follower (ingest in follow mode) must be running."""
    count = max(1, int(rate * seconds))
    progress(f"simulating {count} tests of {min(users, count)} typists")
    tests = returning_typists(count, users, first_user_id, seed=first_user_id % 1_000_003)
    result = CapacityResult(offered=rate, memory={} if memory else None)
    extra = {**extra, "load generator (this process)": os.getpid()}
    pids = stack_processes(settings, extra)
    events_before = clickhouse_events(settings)
    before, wall = cpu_seconds(pids), time.perf_counter()
    asyncio.run(offered_load(settings, tests, rate, sample, insights_sample, result, extra))
    pids.update(stack_processes(settings, extra))  # Ray workers started during the load count too
    result.window_s = time.perf_counter() - wall
    result.cpu = cpu_shares(pids, before, cpu_seconds(pids), result.window_s)
    events_after = clickhouse_events(settings)
    result.clickhouse = {name: events_after[name] - events_before.get(name, 0) for name in events_after}
    ended = time.perf_counter()
    while True:
        result.stored = stored_tests(settings, first_user_id, users)
        if result.stored >= result.accepted:
            result.drain_s = time.perf_counter() - ended
            break
        if time.perf_counter() - ended > drain_timeout_s:
            break
        time.sleep(1.0)
    progress(f"{rate:g} tests/s: accepted {result.accepted}, stored {result.stored}")
    return result


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def print_results(results: list[CapacityResult]) -> None:
    rows = [["offered/s", "achieved/s", "accepted", "POST p50 ms", "POST p95 ms", "visible p50 ms", "visible p95 ms",
             "visible p99 ms", "insights fresh p95 ms", "drained after s", "lost"]]
    for r in results:
        rows.append([
            f"{r.offered:g}", f"{r.achieved:.0f}", str(r.accepted), _ms(percentile(r.post_s, 50)),
            _ms(percentile(r.post_s, 95)), _ms(percentile(r.visible_s, 50)), _ms(percentile(r.visible_s, 95)),
            _ms(percentile(r.visible_s, 99)), _ms(percentile(r.fresh_s, 95)),
            "-" if r.drain_s is None else f"{r.drain_s:.0f}", str(r.lost),
        ])
    print_table(rows, numeric_from=0)
    for r in results:
        if r.not_visible or r.not_fresh or r.refused or r.poll_errors:
            print(f"  {r.offered:g}/s: {r.not_visible} sampled tests never visible, {r.not_fresh} never in the "
                  f"insights, {r.refused} POSTs refused or failed, {r.poll_errors} polls timed out or dropped")
    print("\nCPU over the load, share of one core (2 cores = 2.00):")
    groups = sorted({g for r in results for g in r.cpu}, key=lambda g: -max(r.cpu.get(g, 0) for r in results))
    rows = [["process", *(f"{r.offered:g}/s" for r in results)]]
    for g in groups:
        rows.append([g, *(f"{r.cpu.get(g, 0.0):.2f}" for r in results)])
    rows.append(["total", *(f"{sum(r.cpu.values()):.2f}" for r in results)])
    print_table(rows, numeric_from=1)
    print("\nCPU per accepted test, ms (the shares above × the load window ÷ tests accepted):")
    rows = [["process", *(f"{r.offered:g}/s" for r in results)]]
    for g in [*groups, "total"]:
        rows.append([g, *(_per_test_ms(r, g) for r in results)])
    print_table(rows, numeric_from=1)
    if any(r.clickhouse for r in results):
        print("\nClickHouse's own counters over the load (system.events), per accepted test:")
        rows = [["counter", *(f"{r.offered:g}/s" for r in results)]]
        for label, events in CLICKHOUSE_COUNTERS:
            rows.append([label, *(_per_test(r, events) for r in results)])
        print_table(rows, numeric_from=1)


def _per_test_ms(result: CapacityResult, group: str) -> str:
    share = sum(result.cpu.values()) if group == "total" else result.cpu.get(group, 0.0)
    return f"{1000 * share * result.window_s / result.accepted:.2f}" if result.accepted else "-"


def _per_test(result: CapacityResult, events: tuple[str, ...]) -> str:
    if not result.accepted or not all(e in result.clickhouse for e in events):
        return "-"
    return f"{sum(result.clickhouse[e] for e in events) / result.accepted:,.2f}"


def knee(results: list[CapacityResult]) -> CapacityResult | None:
    """The highest rate that held, of the rates run in rising order up to the first that did not."""
    last = None
    for result in results:
        if not result.held():
            break
        last = result
    return last


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=100.0, help="offered finished tests/s (default 100)")
    parser.add_argument("--seconds", type=float, default=45.0, help="seconds of load per rate (default 45)")
    parser.add_argument("--users", type=int, default=5000, help="typists in the pool (default 5000)")
    parser.add_argument("--sample", type=int, default=10, help="poll one test in N for visibility (default 10)")
    parser.add_argument("--insights-sample", type=int, default=5,
                        help="of the visible sampled tests, follow one in N into the insights (default 5)")
    parser.add_argument("--drain-timeout", type=float, default=180.0,
                        help="seconds to wait after the load for every accepted test to be stored (default 180)")
    parser.add_argument("--settle", type=float, default=120.0,
                        help=f"before the load, wait up to this many seconds for the machine to have at most "
                             f"{SETTLE_BUSY_CORES:g} cores busy (a stack just started settles for a minute or so; "
                             "0: no wait; default 120)")
    parser.add_argument("--memory", action="store_true",
                        help=f"sample every stack process's memory every {SAMPLE_EVERY_S:g} s of the load and report "
                             "whether each stayed flat (as `keyscope bench soak` does)")
    parser.add_argument("--find-knee", action="store_true",
                        help=f"raise the rate x{KNEE_STEP:g} until visible p95 passes {KNEE_VISIBLE_P95_S:g} s")
    add_first_user_argument(parser)


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """`keyscope bench capacity`: brings the stack up, runs the ingest job in follow mode, loads it."""
    from devstack.stack import LocalStack

    for name in ("rate", "seconds"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"--{name} must be positive")
    if args.users < 1 or args.sample < 1 or args.insights_sample < 1:
        raise SystemExit("--users, --sample and --insights-sample must be at least 1")
    LocalStack(settings).up(progress=print)
    base = first_user(args)
    results: list[CapacityResult] = []
    with follower(settings) as ingest:
        print(f"warm-up: one test visible after {asyncio.run(warm_up(settings, base - 1)):.1f} s")
        if args.settle > 0:
            settle(args.settle)
        rate = args.rate
        for step in range(KNEE_MAX_STEPS if args.find_knee else 1):
            pool = base + step * 10_000_000  # a fresh pool of typists per rate
            results.append(run_rate(settings, rate, args.seconds, args.users, pool, args.sample,
                                    args.insights_sample, args.drain_timeout, {"ingest --follow": ingest.pid},
                                    memory=args.memory))
            if not results[-1].held():
                break
            rate *= KNEE_STEP
    print(f"\ncapacity: {args.users} returning typists, {args.seconds:g} s per rate, ingest in follow mode, "
          f"one test in {args.sample} polled")
    print_results(results)
    flat = True
    for r in results:
        if r.memory is not None:
            print(f"\nMemory over the load at {r.offered:g}/s, every {SAMPLE_EVERY_S:g} s:")
            flat &= print_soak(steady_series(r.memory))
    if args.memory:
        print("memory flat in every process" if flat else "memory NOT flat in every process")
    if args.find_knee:
        held = knee(results)
        print(f"\nknee: {held.offered:g} tests/s held (visible p95 ≤ {KNEE_VISIBLE_P95_S:g} s, nothing lost)"
              if held else "\nknee: not even the first rate held")
    return 0 if all(r.lost == 0 for r in results) else 1
