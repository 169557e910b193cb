"""`keyscope bench ingest`: end-to-end ingest throughput (Kafka → Ray Data → ClickHouse) against the seed's
architecture (synchronous per-test analysis and one INSERT per test into a MariaDB table with JSON columns).

Untimed: simulate fresh users' tests, drain the topic and run one small pass (the job's modules loaded, as in a
running job), produce the tests straight to Kafka, wait until the broker has digested them, and have a Ray task
worker up for each read task the timed pass runs at once (as a running job keeps them). Timed: one run of the
ingest job (`pipelines.ingest.run_ingest`, this process being the Ray driver) draining them into
ClickHouse; then ClickHouse's background merges of what it wrote are counted apart, until it is idle.
CPU time is utime + stime from /proc/PID/stat, read before and after: this driver, the Ray workers (processes of
the Ray head's session named `ray::…`, and exited children of Ray's processes), the ClickHouse endpoint (the
process listening on its port), and shown apart Ray's own daemons, the Kafka broker and MariaDB. The seed's
path runs on the first `--seed-tests` of the same tests, in this process, into a scratch table it drops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from app.config import Settings
from app.schemas import TypingTest, parse_submission
from bench.storage import DEFAULT_MARIADB_URL
from devstack.simulate import simulate_tests
from pipelines.migrate_mysql import parse_dsn

TESTS_PER_USER = 10
USERS_PER_CHUNK = 100
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# What the CPU figure sums; the other groups are printed for context.
CORE_GROUPS = ("driver", "Ray workers", "ClickHouse endpoint")


# --- CPU accounting from /proc ---


def _cpu_seconds(pid: int) -> tuple[float, float] | None:
    """(utime + stime of a process and all its threads, the same of its exited children), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    own, children = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
    return own / CLOCK_TICKS, children / CLOCK_TICKS


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def listening_pid(port: int) -> int | None:
    """The process listening on a local TCP port (found through /proc/net/tcp and the processes' sockets)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(f"socket:[{parts[9]}]")
    for pid in _pids():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return pid
        except OSError:
            continue
    return None


def _port(address: str, default: int) -> int:
    tail = address.rsplit("/", 1)[0] if "://" in address else address
    tail = tail.split("://")[-1].split(",")[0]
    return int(tail.rsplit(":", 1)[1]) if ":" in tail else default


def _is_task_worker(cmdline: str) -> bool:
    """A Ray worker process (named `ray::IDLE`, `ray::MapBatches(...)`, …), not an agent or a Serve actor."""
    name = cmdline.split(" ", 1)[0]
    if name.endswith("/raylet"):  # a daemon, though its arguments name default_worker.py (what it starts)
        return False
    if "default_worker.py" in cmdline:
        return True
    return name.startswith("ray::") and not name.endswith("Agent") and not name.startswith(("ray::Serve", "ray::Proxy"))


Sample = dict[tuple[int, bool], tuple[str, float]]


@dataclass
class ProcessGroups:
    """Which processes to account for, by group name; Ray's are re-listed at each sample (workers come and go)."""

    fixed: dict[str, int]
    ray_session: int | None

    def current(self) -> dict[int, str]:
        groups = {pid: name for name, pid in self.fixed.items()}
        if self.ray_session is not None:
            for pid in _pids():
                try:
                    in_session = os.getsid(pid) == self.ray_session
                except OSError:
                    continue
                if in_session and pid not in groups:
                    groups[pid] = "Ray workers" if _is_task_worker(_cmdline(pid)) else "Ray daemons"
        return groups

    def sample(self) -> Sample:
        """CPU seconds per (pid, of its exited children?) with the group they count for. Ray workers that exit
        are reaped by Ray's daemons, so exited children of Ray's processes count as Ray workers."""
        out = {}
        for pid, name in self.current().items():
            seconds = _cpu_seconds(pid)
            if seconds is not None:
                out[(pid, False)] = (name, seconds[0])
                out[(pid, True)] = (_reaped_into(name), seconds[1])
        return out


def process_groups(settings: Settings, mysql_port: int | None = None) -> ProcessGroups:
    fixed = {"driver": os.getpid()}
    for name, port in (
        ("ClickHouse endpoint", _port(settings.clickhouse_url, 8123)),
        ("Kafka broker", _port(settings.kafka_bootstrap, 9092)),
        *((("MariaDB", mysql_port),) if mysql_port else ()),
    ):
        pid = listening_pid(port)
        if pid is not None:
            fixed[name] = pid
    gcs = listening_pid(_port(settings.ray_address, 6380))
    return ProcessGroups(fixed, os.getsid(gcs) if gcs is not None else None)


def _reaped_into(name: str) -> str:
    """The group whose exited-children counter takes a process's whole CPU once it exits (see `sample`)."""
    return "Ray workers" if name.startswith("Ray") else name


def cpu_by_group(before: Sample, after: Sample) -> dict[str, float]:
    """CPU seconds spent between two samples, per group. A process born in between counts from zero. One that exited
    in between has its whole lifetime in its reaper's exited-children counter by then, so what it had spent by the
    first sample is taken off again: counting it would bill a warm-up worker's imports to the timed pass."""
    spent: dict[str, float] = {}
    for key, (name, seconds) in after.items():
        spent[name] = spent.get(name, 0.0) + seconds - before.get(key, (name, 0.0))[1]
    for key, (name, seconds) in before.items():
        if key not in after:
            group = _reaped_into(name)
            spent[group] = spent.get(group, 0.0) - seconds
    return spent


def _workers(sample: Sample) -> set[int]:
    return {pid for (pid, children), (name, _) in sample.items() if name == "Ray workers" and not children}


def worker_turnover(before: Sample, after: Sample) -> tuple[int, int]:
    """(Ray worker processes started, exited) between two samples."""
    workers_before, workers_after = _workers(before), _workers(after)
    return len(workers_after - workers_before), len(workers_before - workers_after)


@dataclass
class Measured:
    """One system's timed run."""

    tests: int
    keystrokes: int
    wall_s: float
    cpu_s: dict[str, float] = field(default_factory=dict)
    core_groups: tuple[str, ...] = CORE_GROUPS
    cpu_after_s: float | None = None  # ClickHouse's background merges of what the run wrote, after it ended
    workers: tuple[int, int] = (0, 0)  # Ray worker processes started and exited during the run

    @property
    def keystrokes_per_s(self) -> float:
        return self.keystrokes / self.wall_s if self.wall_s else 0.0

    @property
    def tests_per_s(self) -> float:
        return self.tests / self.wall_s if self.wall_s else 0.0

    def per_million(self, seconds: float) -> float:
        return seconds / self.keystrokes * 1e6 if self.keystrokes else 0.0

    def cpu_per_million(self, groups: Iterable[str] | None = None) -> float:
        chosen = self.core_groups if groups is None else tuple(groups)
        return self.per_million(sum(v for k, v in self.cpu_s.items() if k in chosen))


def timed(action: Callable[[], tuple[int, int]], groups: ProcessGroups) -> Measured:
    """Run `action` (returning tests and keystrokes done) under the wall clock and the CPU counters."""
    before = groups.sample()
    started = time.perf_counter()
    tests, keystrokes = action()
    wall = time.perf_counter() - started
    after = groups.sample()
    return Measured(tests, keystrokes, wall, cpu_by_group(before, after), workers=worker_turnover(before, after))


# --- workload ---


def simulate(keystrokes: int, first_user_id: int, seed: int = 3) -> list[dict[str, Any]]:
    """Simulated submissions of fresh users until they hold at least `keystrokes` keystrokes."""
    submissions: list[dict[str, Any]] = []
    total = 0
    with tqdm(total=keystrokes, desc="simulate", unit="keystroke", unit_scale=True, disable=None) as bar:
        while total < keystrokes:
            chunk = simulate_tests(USERS_PER_CHUNK, TESTS_PER_USER, seed=seed, first_user_id=first_user_id)
            first_user_id += USERS_PER_CHUNK
            for submission in chunk:
                submissions.append(submission)
                total += len(submission["keystrokes"])
                bar.update(len(submission["keystrokes"]))
                if total >= keystrokes:
                    break
    return submissions


async def produce(settings: Settings, tests: list[TypingTest]) -> None:
    """Encode and produce the tests keyed by user, batched (many sends in flight), and wait for every ack."""
    from aiokafka import AIOKafkaProducer

    from app.codec import encode_test
    from app.kafka import user_key

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=1 << 20,
        max_request_size=settings.max_message_bytes,
    )
    await producer.start()
    try:
        pending = []
        for test in tqdm(tests, desc="produce", unit="test", disable=None):
            pending.append(await producer.send(settings.keystroke_topic, encode_test(test), key=user_key(test.user_id)))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def wait_until_idle(pid: int | None, quiet_s: float = 2.0, timeout_s: float = 120.0) -> float:
    """Wait until a process has used under 5 % of a core for `quiet_s`; returns the CPU seconds it used until
    then. The local broker digests what it acknowledged for seconds afterwards, in bursts, and ClickHouse merges
    the parts a run wrote after the run."""
    deadline = time.monotonic() + timeout_s
    quiet = used = 0.0
    while pid is not None and quiet < quiet_s and time.monotonic() < deadline:
        before = _cpu_seconds(pid)
        time.sleep(0.5)
        after = _cpu_seconds(pid)
        if before is None or after is None:
            break
        used += after[0] - before[0]
        quiet = quiet + 0.5 if after[0] - before[0] < 0.025 else 0.0
    return used


def run_ingest_job(settings: Settings) -> tuple[int, int]:
    from pipelines.ingest import run_ingest

    report = run_ingest(settings)
    return report.tests_written, report.keystrokes_written


# --- the seed's architecture: synchronous analysis and one INSERT per test into MariaDB ---

SEED_MARIADB = parse_dsn(DEFAULT_MARIADB_URL)  # the machine's MariaDB, as the storage benchmark uses it


def _seed_table_sql(table: str) -> str:
    return (
        f"CREATE TABLE `{table}` (id BIGINT AUTO_INCREMENT PRIMARY KEY, user_id BIGINT NOT NULL, "
        "test_result_id VARCHAR(64) NOT NULL, key_timings JSON NOT NULL, key_errors JSON NOT NULL, "
        "health_score DOUBLE NULL, created_at DATETIME(3) NOT NULL, "
        "INDEX idx_analytics_user_time (user_id, created_at)) ENGINE=InnoDB"
    )


def seed_request(body: str, cursor: Any, table: str) -> int:
    """What the seed's API server does per finished test: parse the JSON, analyse the one test, INSERT its
    analytics row with JSON columns, commit (autocommit). Returns the test's keystroke count."""
    from app.tables import build_tables

    test = parse_submission(json.loads(body))
    tables = build_tables([test], [0], [0])
    key_stats = tables.key_stats.to_pydict()
    key_errors = {k: e for k, e in zip(key_stats["key"], key_stats["errors"]) if e}
    downs, ups = test.down_ms.tolist(), test.up_ms.tolist()
    key_timings = [
        {"key": key, "time": d, "duration": None if u < 0 else u - d} for key, d, u in zip(test.keys(), downs, ups)
    ]
    health = tables.results.column("health_score")[0].as_py()
    cursor.execute(
        f"INSERT INTO `{table}` (user_id, test_result_id, key_timings, key_errors, health_score, created_at) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (test.user_id, test.test_id, json.dumps(key_timings), json.dumps(key_errors), health, datetime.now(UTC)),
    )
    return test.keystroke_count


def run_seed(bodies: list[str], groups: ProcessGroups) -> Measured:
    """Time the seed's path over `bodies` (JSON submissions) into a scratch table, dropped afterwards."""
    table = f"keystroke_analytics_bench_{uuid.uuid4().hex[:12]}"
    connection = SEED_MARIADB.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(_seed_table_sql(table))

            def work() -> tuple[int, int]:
                keystrokes = 0
                for body in tqdm(bodies, desc="seed: analyse + INSERT", unit="test", disable=None):
                    keystrokes += seed_request(body, cursor, table)
                return len(bodies), keystrokes

            try:
                measured = timed(work, groups)
            finally:
                cursor.execute(f"DROP TABLE IF EXISTS `{table}`")
    finally:
        connection.close()
    measured.core_groups = ("driver", "MariaDB")
    return measured


# --- the command ---


@dataclass
class IngestBenchmark:
    keyscope: Measured | None
    seed: Measured | None
    seed_subset: bool


def ensure_stack(settings: Settings) -> bool:
    """Start the local stack (without Serve) if a service is down; True if something had to start."""
    from devstack.stack import LocalStack

    stack = LocalStack(settings)
    needed = [s for s in stack.status() if not s.name.startswith("serve") and not s.running]
    if needed:
        print("starting the local stack (" + ", ".join(s.name for s in needed) + " down)…", flush=True)
        stack.up(with_serve=False, progress=lambda m: print("  " + m, flush=True))
    return bool(needed)


def warm_up(settings: Settings, first_user_id: int) -> None:
    """Drain what is on the topic, then ingest a few fresh tests (untimed): the Ray workers are started and
    have imported the job's modules, as they have in a running job, and the timed pass reads only its tests."""
    from pipelines.ingest import run_ingest

    drained = run_ingest(settings)
    if drained.messages:
        print(f"drained an earlier backlog first (untimed): {drained.line()}", flush=True)
    # Two typists only: each pass hands its typists to the background insights refresher (≈ 0.3 CPU s each), and
    # refreshing the warm-up's typists must not run into the timed pass (20 of them did, inflating its CPU).
    warm = [parse_submission(s) for s in simulate_tests(2, 50, seed=4, first_user_id=first_user_id)]
    asyncio.run(produce(settings, warm))
    run_ingest(settings)


def _hold_a_worker(until: float) -> int:
    """A Ray task that imports what the ingest job's read tasks run, then keeps its CPU until `until`."""
    import ray.data  # noqa: F401 - read_kafka's module, as a read task loads it

    import pipelines.ingest.analyse  # noqa: F401

    time.sleep(max(0.0, until - time.time()))
    return os.getpid()


def start_workers(settings: Settings, hold_s: float = 3.0) -> tuple[int, int]:
    """Have as many Ray task workers up for this driver as the timed pass runs read tasks at once (one per topic
    partition, at most one per free CPU); returns (wanted, up). A small warm-up pass runs its few tasks one after
    another on one or two workers, and the timed pass then started the rest while timed: each of those costs a
    process start and the job's imports (≈ 2 CPU s), and the runs that started 3 took twice the workers' CPU per
    keystroke. Each task here keeps its CPU until a moment shared by all, so no worker can take two of them."""
    import ray

    wanted = max(1, min(settings.topic_partitions, int(ray.available_resources().get("CPU", 1))))
    holder = ray.remote(num_cpus=1)(_hold_a_worker)
    up = 0
    for attempt in range(1, 4):  # a slow worker start can outlast the shared moment: hold longer and try again
        until = time.time() + hold_s * attempt
        up = len(set(ray.get([holder.remote(until) for _ in range(wanted)])))
        if up == wanted:
            break
    return wanted, up


def run(
    settings: Settings,
    keystrokes: int = 2_000_000,
    produce_only: bool = False,
    skip_produce: bool = False,
    seed_tests: int = 1_000,
) -> IngestBenchmark:
    """Produce (unless skipped), time the ingest job, then time the seed's path on the first `seed_tests` tests."""
    import ray

    ensure_stack(settings)
    # Fresh user ids per run, so every test is new to ClickHouse (no duplicate skipping in the timed part).
    first_user = 10**12 + int(time.time() * 1000) * 10**5
    submissions = simulate(keystrokes, first_user + 100) if not skip_produce or seed_tests else []
    if not ray.is_initialized():
        ray.init(address=settings.ray_address, log_to_driver=False)
    if not skip_produce:
        warm_up(settings, first_user)
        tests = [parse_submission(s, settings.max_keystrokes) for s in tqdm(submissions, desc="parse", disable=None)]
        asyncio.run(produce(settings, tests))
        print(f"produced {len(tests):,} tests ({sum(t.keystroke_count for t in tests):,} keystrokes)", flush=True)
        wait_until_idle(listening_pid(_port(settings.kafka_bootstrap, 9092)))
    if produce_only:
        return IngestBenchmark(None, None, False)
    wanted, up = start_workers(settings)
    print(f"Ray task workers up before the timed pass: {up} of the {wanted} it runs at once", flush=True)
    groups = process_groups(settings, SEED_MARIADB.port)
    print("ingest job running (timed)…", flush=True)
    keyscope = timed(lambda: run_ingest_job(settings), groups)
    keyscope.cpu_after_s = wait_until_idle(groups.fixed.get("ClickHouse endpoint"))
    seed = None
    subset = False
    if seed_tests:
        bodies = [json.dumps(s) for s in submissions[:seed_tests]]
        subset = len(bodies) < len(submissions)
        seed = run_seed(bodies, groups)
    return IngestBenchmark(keyscope, seed, subset)


def _rows(result: IngestBenchmark) -> list[tuple[str, str, str]]:
    k, s = result.keyscope, result.seed
    assert k is not None

    def both(fmt: Callable[[Measured], str]) -> tuple[str, str]:
        return fmt(k), (fmt(s) if s is not None else "-")

    def summed(name: str) -> Callable[[Measured], str]:
        # CPU per M keystrokes of one group; in parentheses where it is not in that column's total.
        def fmt(m: Measured) -> str:
            value = f"{m.per_million(m.cpu_s.get(name, 0.0)):,.2f}"
            return value if name in m.core_groups else f"({value})"

        return fmt

    rows = [
        ("tests" + (" (seed: a subset)" if result.seed_subset else ""), *both(lambda m: f"{m.tests:,}")),
        ("keystrokes", *both(lambda m: f"{m.keystrokes:,}")),
        ("wall seconds", *both(lambda m: f"{m.wall_s:,.2f}")),
        ("keystrokes/s", *both(lambda m: f"{m.keystrokes_per_s:,.0f}")),
        ("tests/s", *both(lambda m: f"{m.tests_per_s:,.0f}")),
        ("CPU s per M keystrokes", *both(lambda m: f"{m.cpu_per_million():,.2f}")),
    ]
    for name in ("driver", "Ray workers", "ClickHouse endpoint", "MariaDB", "Ray daemons", "Kafka broker"):
        rows.append((f"  {name}", *both(summed(name))))
    rows.append(
        (
            "ClickHouse merges after the run",
            *both(lambda m: "-" if m.cpu_after_s is None else f"({m.per_million(m.cpu_after_s):,.2f})"),
        )
    )
    return rows


def print_table(result: IngestBenchmark) -> None:
    rows = [("", "keyscope ingest", "seed: sync + MariaDB"), *_rows(result)]
    width = max(len(r[0]) for r in rows)
    for name, a, b in rows:
        print(f"  {name:<{width}}  {a:>16}  {b:>20}")
    print("  (CPU in parentheses is not in the column's total)")
    k, s = result.keyscope, result.seed
    if k is not None:
        # A worker started during the pass imports the job's modules on the pass's time (seconds of CPU each).
        print(f"  Ray worker processes during the keyscope run: {k.workers[0]} started, {k.workers[1]} exited")
    if k is not None and s is not None and s.keystrokes_per_s:
        cpu = s.cpu_per_million() / k.cpu_per_million() if k.cpu_per_million() else float("nan")
        print(
            f"  keyscope / seed: {k.keystrokes_per_s / s.keystrokes_per_s:,.1f}× keystrokes/s, "
            f"{cpu:,.1f}× less CPU per keystroke"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keystrokes", type=int, default=2_000_000, help="keystrokes to produce and ingest (default 2,000,000)"
    )
    parser.add_argument("--produce-only", action="store_true", help="produce the tests to Kafka, time nothing")
    parser.add_argument(
        "--skip-produce",
        action="store_true",
        help="time the ingest of what is on the topic now (e.g. after --produce-only; no warm-up pass)",
    )
    parser.add_argument(
        "--seed-tests", type=int, default=1000, help="tests timed on the seed's MariaDB path (0 = skip)"
    )


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """`keyscope bench ingest`: brings the stack up if it is down."""
    seed_tests = 0 if args.produce_only else args.seed_tests
    result = run(settings, args.keystrokes, args.produce_only, args.skip_produce, seed_tests)
    if result.keyscope is not None:
        print("ingest throughput, Kafka → Ray Data → ClickHouse, against the seed's synchronous MariaDB path:")
        print_table(result)
    return 0
