"""`python -m pipelines.warehouse ACTION [flags]`: the warehouse command as a process of its own, the entrypoint of
the Ray job (`ray job submit ... -- python -m pipelines.warehouse export`, the RayCronJob keyscope-warehouse-cron of
cluster/jobs.py). It reads the settings from the environment once and runs the action (pipelines/warehouse/command.py).
"""

from __future__ import annotations

import argparse

from pipelines.entry import job_main, job_parser
from pipelines.warehouse.command import DESCRIPTION, add_arguments, run


def build_parser() -> argparse.ArgumentParser:
    return job_parser("python -m pipelines.warehouse", DESCRIPTION, add_arguments)


def main(argv: list[str] | None = None) -> int:
    return job_main(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
