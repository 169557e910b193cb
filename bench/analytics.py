"""`keyscope bench analytics`: keystrokes analysed per second per core by the per-test metrics.

Simulated tests are parsed and batched once; then `analyse_batch` alone is timed on one process (one
core), best of several repeats, and the storage-row building (`tables_from_analysis`) separately.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from app.analytics.metrics import TestBatch, analyse_batch
from app.config import Settings
from app.schemas import parse_submission
from app.tables import tables_from_analysis
from devstack.simulate import simulate_tests


@dataclass(frozen=True)
class AnalyticsBenchmark:
    tests: int
    keystrokes: int
    analyse_s: float
    tables_s: float

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("tests per batch", f"{self.tests:,}"),
            ("keystrokes per batch", f"{self.keystrokes:,}"),
            ("analyse_batch (best)", f"{self.analyse_s * 1000:,.1f} ms"),
            ("per-test metrics, keystrokes/s/core", f"{self.keystrokes / self.analyse_s:,.0f}"),
            ("+ storage rows (best)", f"{self.tables_s * 1000:,.1f} ms"),
            ("metrics + rows, keystrokes/s/core", f"{self.keystrokes / (self.analyse_s + self.tables_s):,.0f}"),
        ]


def run(users: int = 200, tests_per_user: int = 10, repeats: int = 5, seed: int = 1) -> AnalyticsBenchmark:
    """Time the analytics on `users × tests_per_user` simulated tests in one batch."""
    tests = [parse_submission(s) for s in simulate_tests(users, tests_per_user, seed=seed)]
    batch = TestBatch.from_tests(tests)
    partitions = np.zeros(len(tests), np.int64)
    offsets = np.arange(len(tests), dtype=np.int64)
    analyse_best = tables_best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        analysis = analyse_batch(batch)
        middle = time.perf_counter()
        tables_from_analysis(tests, batch, analysis, partitions, offsets)
        end = time.perf_counter()
        analyse_best = min(analyse_best, middle - start)
        tables_best = min(tables_best, end - middle)
    return AnalyticsBenchmark(len(tests), int(batch.key_codes.shape[0]), analyse_best, tables_best)


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>16}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=200, help="simulated typists (default 200)")
    parser.add_argument("--tests", type=int, default=10, help="tests per typist (default 10)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed repeats, the best is reported (default 5)"
    )


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """`keyscope bench analytics`: one process, no stack."""
    result = run(users=args.users, tests_per_user=args.tests, repeats=args.repeats)
    print("per-test analytics on simulated tests, one process:")
    print_table(result.rows())
    return 0
