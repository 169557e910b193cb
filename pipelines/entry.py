"""What `python -m pipelines.X` runs for every job (the entrypoint of `ray job submit` and of the RayJobs and
RayCronJobs): a parser from the job's own `add_arguments` and `DESCRIPTION`, INFO logs, the Settings read once
from the environment, and the job's `run`. `keyscope X` uses the same two functions (cli/registry.py)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from app.config import Settings

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[Settings, argparse.Namespace], int]


def job_parser(prog: str, description: str, add_arguments: AddArguments) -> argparse.ArgumentParser:
    """The job's parser as `python -m` presents it."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    return parser


def job_main(parser: argparse.ArgumentParser, run: Run, argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: the process's arguments), log at INFO and run the job; its exit status."""
    args = parser.parse_args(None if argv is None else list(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run(Settings.from_env(), args)
