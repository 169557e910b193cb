"""What one small ingest pass costs, by how it reads: a Ray Data Dataset per pass (`read_kafka`, what a drain runs)
against the follow mode's long-lived readers (pipelines/ingest/readers.py), on the running stack.

    keyscope bench passes [--tests 20] [--repeats 5]

Each round produces `--tests` simulated tests (new typists) to Kafka, then times one pass of each kind over them
with the same job (`Ingestor`): the Ray Data pass forced by a reader share of 0 messages, the readers' pass as is.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass, field

import pipelines.ingest as ingest
from app.config import Settings
from bench import add_first_user_argument, first_user
from devstack.produce import produce_tests
from devstack.simulate import simulate_tests


@dataclass
class PassTimings:
    tests: int
    dataset_s: list[float] = field(default_factory=list)
    readers_s: list[float] = field(default_factory=list)
    idle_s: list[float] = field(default_factory=list)


def run(settings: Settings, tests_per_pass: int, repeats: int, first_user_id: int) -> PassTimings:
    import ray

    if not ray.is_initialized():
        ray.init(address=settings.ray_address, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    timings = PassTimings(tests_per_pass)
    with ingest.Ingestor(settings, readers=settings.ingest_readers) as job:
        share = job.reader_max_messages
        job.run_pass()  # drain what is there; warms the readers and the connections
        user = first_user_id
        for round_ in range(repeats + 1):  # the first round warms Ray Data's workers and is not counted
            for kind in ("dataset", "readers"):
                asyncio.run(produce_tests(settings, simulate_tests(tests_per_pass, 1, seed=user, first_user_id=user)))
                user += tests_per_pass
                job.reader_max_messages = 0 if kind == "dataset" else share
                started = time.perf_counter()
                report = job.run_pass()
                seconds = time.perf_counter() - started
                if report.tests_written != tests_per_pass:
                    raise RuntimeError(f"a pass stored {report.tests_written} of {tests_per_pass} tests")
                if round_:
                    (timings.dataset_s if kind == "dataset" else timings.readers_s).append(seconds)
            started = time.perf_counter()
            job.run_pass()
            timings.idle_s.append(time.perf_counter() - started)
    return timings


def print_table(timings: PassTimings) -> None:
    def ms(values: list[float], q: str) -> str:
        value = statistics.median(values) if q == "median" else max(values)
        return f"{value * 1000:,.0f}"

    print("| pass | passes | tests each | median ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    rows = (
        ("Ray Data Dataset per pass", timings.dataset_s, timings.tests),
        ("long-lived readers", timings.readers_s, timings.tests),
        ("nothing new (a look)", timings.idle_s, 0),
    )
    for name, values, tests in rows:
        print(f"| {name} | {len(values)} | {tests} | {ms(values, 'median')} | {ms(values, 'max')} |")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tests", type=int, default=10, help="new tests per pass (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds timed (default 5)")
    add_first_user_argument(parser)


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """`keyscope bench passes`: brings the stack up."""
    from devstack.stack import LocalStack

    LocalStack(settings).up(progress=print)
    timings = run(settings, args.tests, args.repeats, first_user(args))
    print(f"one ingest pass over {args.tests} new tests, by how it reads ({args.repeats} rounds after a warm-up):")
    print_table(timings)
    return 0
