"""`python -m pipelines.warehouse ACTION [flags]`: the warehouse command as a process of its own, the entrypoint of
the Ray job (`ray job submit ... -- python -m pipelines.warehouse export`, cluster/raycronjob-warehouse.yaml). It
reads the settings from the environment once and runs the action (pipelines/warehouse/command.py).
"""

from __future__ import annotations

import argparse
import logging

from app.config import Settings
from pipelines.warehouse.command import add_arguments, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.warehouse",
        description="The warehouse job: export daily Parquet of keyscope's data for BigQuery / Snowflake, sweep "
        "deleted users out of the exported files, or run the cohort example over them.",
    )
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run(Settings.from_env(), args)


if __name__ == "__main__":
    raise SystemExit(main())
