"""Benchmark workloads behind `keyscope bench …`; each prints a table of measured figures.

Each module defines its command line once: `add_arguments(parser)` and `run_command(settings, args) -> int`
(bench/load.py has two, latency and soak), registered by cli/bench.py.
"""

from __future__ import annotations

import argparse
import time


def fresh_user_id() -> int:
    """A first user id no earlier run used (from the clock): a test stored by an earlier run would look instant."""
    return 10**12 + int(time.time()) * 100_000


def add_first_user_argument(parser: argparse.ArgumentParser) -> None:
    """`--first-user`, for the benchmarks that time tests becoming visible."""
    parser.add_argument(
        "--first-user",
        type=int,
        default=None,
        help="id of the first simulated user (default: fresh ids from the clock, so no test of an earlier run is "
        "already visible)",
    )


def first_user(args: argparse.Namespace) -> int:
    """The `--first-user` given, else a fresh one."""
    return args.first_user if args.first_user is not None else fresh_user_id()


def add_clickhouse_dir_argument(parser: argparse.ArgumentParser) -> None:
    """`--clickhouse-dir`, for the benchmarks that fill an in-process chDB directory."""
    parser.add_argument(
        "--clickhouse-dir", help="a fresh chDB directory to fill (default: a temporary one, removed after)"
    )
