"""Benchmark workloads behind `keyscope bench …`; each prints a table of measured figures.

Each module defines its command line once: `add_arguments(parser)` and `run_command(settings, args) -> int`
(bench/load.py has two, latency and soak), registered by cli/bench.py.
"""

from __future__ import annotations

import time


def fresh_user_id() -> int:
    """A first user id no earlier run used (from the clock): a test stored by an earlier run would look instant."""
    return 10**12 + int(time.time()) * 100_000
