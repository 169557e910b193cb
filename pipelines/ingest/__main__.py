"""`python -m pipelines.ingest [--follow] [--max-messages N]`: the ingest job as `ray job submit` and the cluster's
RayJob / RayCronJob run it (the flags are command.py's, shared with `keyscope ingest`)."""

from __future__ import annotations

import argparse
import logging

from app.config import Settings
from pipelines.ingest.command import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.ingest",
        description="Move typing tests from Kafka into ClickHouse with their metrics. Without --follow, "
        "drain what is on the topic now and exit (for `ray job submit` and RayJob).",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run(Settings.from_env(), args)


if __name__ == "__main__":
    raise SystemExit(main())
