"""Steady-load benchmarks of the running stack: how long a submitted test takes to become visible, and whether
every process's memory stays flat over a long run.

    keyscope bench latency [--rate 10] [--seconds 60]
    keyscope bench soak [--rate 10] [--seconds 600]

Both start the ingest job in follow mode (`python -m pipelines.ingest --follow`) as its own process, then POST
simulated tests at a steady rate, each for a new user, and poll `GET /v1/users/{id}/tests?limit=1` until the
test is there: the time from the POST to that answer is what a typist waits to see a finished test.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from app.api_client import api_url, service_headers
from app.config import Settings, child_environment
from bench import add_first_user_argument, first_user
from devstack.simulate import simulate_tests

# Each waiting test polls 5 times a second for its first 2 s, then twice a second: the polls' own load must not
# grow with the latency it measures (at 5 a second, 60 tests waiting 6 s make 300 requests/s on these 2 cores, and
# the slowdown feeds itself). A time over 2 s is known to within 0.5 s, never under-stated.
POLL_INTERVAL_S = 0.2
POLL_INTERVAL_LATE_S = 0.5
POLL_LATE_AFTER_S = 2.0
VISIBLE_TIMEOUT_S = 60.0
SAMPLE_EVERY_S = 10.0
GROWTH_LIMIT = 0.05  # memory "flat": the second half's mean private memory within 5 % of the first half's,
GROWTH_FLOOR_BYTES = 8 << 20  # or within 8 MiB of it (a 1 MiB step in a 4 MiB process is not a leak)
SOAK_WARM_UP_S = 60.0  # load before sampling starts: caches, pools and first-run code pages fill up first


@contextmanager
def follower(settings: Settings) -> Iterator[subprocess.Popen]:
    """The ingest job in follow mode (its settings: idle interval, readers) as a child process, stopped with SIGINT
    (it finishes its pass)."""
    env = child_environment(settings.as_env())
    log = open(Path(settings.data_dir) / "logs" / "bench-follower.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.ingest", "--follow"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass
class LoadResult:
    submitted: int = 0
    visible: int = 0
    refused: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s else None


async def steady_load(settings: Settings, rate: float, seconds: float, first_user_id: int) -> LoadResult:
    """POST `rate` tests a second for `seconds`, each for a new user; time each until it is visible."""
    count = max(1, int(rate * seconds))
    tests = simulate_tests(count, 1, seed=first_user_id, first_user_id=first_user_id)
    result = LoadResult()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=api_url(settings), headers=service_headers(settings), timeout=30, limits=limits
    ) as client:

        async def one(test: dict) -> None:
            posted = time.perf_counter()
            response = await client.post("/v1/tests", json=test)
            if response.status_code != 202:
                result.refused += 1
                return
            result.submitted += 1
            path = f"/v1/users/{test['user_id']}/tests"
            while time.perf_counter() - posted < VISIBLE_TIMEOUT_S:
                answer = await client.get(path, params={"limit": 1})
                if answer.status_code == 200 and answer.json()["tests"][0]["test_id"] == test["test_id"]:
                    result.visible += 1
                    result.latencies_s.append(time.perf_counter() - posted)
                    return
                late = time.perf_counter() - posted > POLL_LATE_AFTER_S
                await asyncio.sleep(POLL_INTERVAL_LATE_S if late else POLL_INTERVAL_S)

        started = time.perf_counter()
        pending = []
        for i, test in enumerate(tests):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one(test)))
        await asyncio.gather(*pending)
        result.seconds = time.perf_counter() - started
    return result


def run_latency(settings: Settings, rate: float, seconds: float, first_user_id: int) -> LoadResult:
    with follower(settings):
        asyncio.run(steady_load(settings, rate, min(5.0, seconds), first_user_id + 50_000))  # warm-up
        return asyncio.run(steady_load(settings, rate, seconds, first_user_id))


def print_latency(result: LoadResult, rate: float) -> None:
    def ms(q: float) -> str:
        value = result.percentile(q)
        return "-" if value is None else f"{value * 1000:,.0f}"

    print("| rate (tests/s) | submitted | visible | refused | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {rate:g} | {result.submitted} | {result.visible} | {result.refused} | {ms(50)} | {ms(95)} | {ms(99)} "
        f"| {ms(100)} |"
    )


# -- soak: memory of every process over a long steady load --------------------------------------------------------


def memory_bytes(pid: int) -> tuple[int, int] | None:
    """(resident set, its private anonymous part) of a process, from /proc/PID/status. The rest of the RSS is file
    pages: mostly shared libraries, paged in as code paths run the first time (chDB's library alone is 555 MB), and
    the kernel drops them under pressure. What a process allocates, and a leak grows, is the anonymous part."""
    fields: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon"):
                fields[name] = int(value.split()[0]) * 1024
    except OSError:
        return None
    if "VmRSS" not in fields:
        return None  # a kernel thread or a process gone
    return fields["VmRSS"], fields.get("RssAnon", fields["VmRSS"])


def process_name(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in raw if w]
    if not words:
        return "?"
    if words[0].startswith("ray::"):
        return words[0]
    interesting = [w for w in words[1:] if not w.startswith("-")]
    base = Path(words[0]).name
    if base.startswith("python") and interesting:
        return " ".join(interesting[:2])
    return base


def stack_processes(settings: Settings, extra: dict[str, int]) -> dict[int, str]:
    """pid → name of every process of the running stack (Ray's whole session included) and `extra`."""
    import json

    from devstack.stack import _session_members

    state = json.loads((Path(settings.data_dir) / "stack.json").read_text())
    pids: dict[int, str] = {}
    for service, info in state.items():
        pid = info.get("pid") if isinstance(info, dict) else None
        if not pid:
            continue
        members = _session_members(pid) if service == "ray" else [pid]
        for member in members:
            pids[member] = f"{service}: {process_name(member)}"
    for name, pid in extra.items():
        pids[pid] = name
    return pids


@dataclass
class MemorySeries:
    name: str
    samples: list[int] = field(default_factory=list)  # RSS
    private: list[int] = field(default_factory=list)  # its anonymous part (see memory_bytes)

    def add(self, rss: int, private: int) -> None:
        self.samples.append(rss)
        self.private.append(private)

    def growth(self) -> float | None:
        """Mean private memory of the second half of the samples over the first half's, minus one."""
        return _half_growth(self.private)

    def flat(self) -> bool:
        growth = self.growth()
        if growth is None or growth <= GROWTH_LIMIT:
            return True
        half = len(self.private) // 2
        return float(np.mean(self.private[half:]) - np.mean(self.private[:half])) < GROWTH_FLOOR_BYTES

    def rss_growth(self) -> float | None:
        return _half_growth(self.samples)


def _half_growth(values: list[int]) -> float | None:
    if len(values) < 4:
        return None
    half = len(values) // 2
    first, second = np.mean(values[:half]), np.mean(values[half:])
    return float(second / first - 1) if first else None


def run_soak(
    settings: Settings, rate: float, seconds: float, first_user_id: int, warm_up_s: float = SOAK_WARM_UP_S
) -> tuple[LoadResult, list[MemorySeries]]:
    series: dict[int, MemorySeries] = {}
    with follower(settings) as proc:
        done = asyncio.Event()

        async def main() -> LoadResult:
            await steady_load(settings, rate, warm_up_s, first_user_id + 50_000)  # warm-up, not sampled
            sampler = asyncio.create_task(sample_memory(settings, {"ingest follower": proc.pid}, series, done))
            result = await steady_load(settings, rate, seconds, first_user_id)
            done.set()
            await sampler
            return result

        result = asyncio.run(main())
    return result, steady_series(series)


async def sample_memory(settings: Settings, extra: dict[str, int], series: dict[int, MemorySeries],
                        done: asyncio.Event) -> None:
    """Every stack process's memory (and `extra`'s) every SAMPLE_EVERY_S until `done`."""
    while not done.is_set():
        for pid, name in stack_processes(settings, extra).items():
            if (memory := memory_bytes(pid)) is not None:
                series.setdefault(pid, MemorySeries(name)).add(*memory)
        try:
            await asyncio.wait_for(done.wait(), SAMPLE_EVERY_S)
        except TimeoutError:
            pass


def steady_series(series: dict[int, MemorySeries]) -> list[MemorySeries]:
    """The processes sampled for most of the run, largest first: those that came and went (Ray's short-lived
    workers) have few samples."""
    expected = max((len(s.samples) for s in series.values()), default=0)
    steady = [s for s in series.values() if len(s.samples) >= max(4, expected // 2)]
    return sorted(steady, key=lambda s: -max(s.samples))


def print_soak(series: list[MemorySeries]) -> bool:
    """The memory table (then, for each process not flat, its private memory once a minute); True when every steady
    process's private memory stayed flat (GROWTH_LIMIT or GROWTH_FLOOR_BYTES)."""
    flat = True
    grown = []
    print(
        "| process | samples | RSS first MiB | RSS last MiB | RSS max MiB | RSS 2nd half vs 1st "
        "| private first MiB | private last MiB | private 2nd half vs 1st | flat |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for s in series:
        growth = s.growth()
        ok = s.flat()
        flat &= ok
        if not ok:
            grown.append(s)
        mib = [v / 2**20 for v in (s.samples[0], s.samples[-1], max(s.samples), s.private[0], s.private[-1])]
        print(
            f"| {s.name[:60]} | {len(s.samples)} | {mib[0]:,.0f} | {mib[1]:,.0f} | {mib[2]:,.0f} "
            f"| {_percent(s.rss_growth())} | {mib[3]:,.0f} | {mib[4]:,.0f} | {_percent(growth)} "
            f"| {'yes' if ok else 'NO'} |"
        )
    per_minute = max(1, round(60 / SAMPLE_EVERY_S))
    for s in grown:
        minutes = " ".join(f"{v / 2**20:.0f}" for v in s.private[::per_minute])
        print(f"{s.name[:60]}: private MiB once a minute: {minutes}")
    return flat


def _percent(growth: float | None) -> str:
    return "-" if growth is None else f"{growth * 100:+.1f} %"


def _add_load_arguments(parser: argparse.ArgumentParser, seconds: float) -> None:
    parser.add_argument("--rate", type=float, default=10.0, help="tests submitted a second (default 10)")
    parser.add_argument("--seconds", type=float, default=seconds, help=f"how long to load (default {seconds:g})")
    add_first_user_argument(parser)


def add_latency_arguments(parser: argparse.ArgumentParser) -> None:
    _add_load_arguments(parser, seconds=60.0)


def add_soak_arguments(parser: argparse.ArgumentParser) -> None:
    _add_load_arguments(parser, seconds=600.0)
    parser.add_argument(
        "--warm-up",
        type=float,
        default=SOAK_WARM_UP_S,
        help=f"seconds of the same load before sampling starts (default {SOAK_WARM_UP_S:g})",
    )


def _stack_up(settings: Settings) -> None:
    from devstack.stack import LocalStack

    LocalStack(settings).up(progress=print)


def run_latency_command(settings: Settings, args: argparse.Namespace) -> int:
    """`keyscope bench latency`: brings the stack up; 1 if some test never became visible."""
    _stack_up(settings)
    result = run_latency(settings, args.rate, args.seconds, first_user(args))
    print(f"POST /v1/tests → visible in /v1/users/{{id}}/tests, {args.rate:g} tests/s for {args.seconds:g} s:")
    print_latency(result, args.rate)
    return 0 if result.visible == result.submitted else 1


def run_soak_command(settings: Settings, args: argparse.Namespace) -> int:
    """`keyscope bench soak`: brings the stack up; 1 if memory grew somewhere or some test never became visible."""
    _stack_up(settings)
    result, series = run_soak(settings, args.rate, args.seconds, first_user(args), args.warm_up)
    print(
        f"memory of every stack process, sampled every 10 s after {args.warm_up:g} s of warm-up, "
        f"{args.rate:g} tests/s for {args.seconds:g} s:"
    )
    flat = print_soak(series)
    print_latency(result, args.rate)
    print("memory flat in every process" if flat else "memory grew in some process (see the table)")
    return 0 if flat and result.visible == result.submitted else 1
