"""The ingest command, defined once: its flags (`add_arguments`) and what it runs (`run`), for both
`python -m pipelines.ingest` (what `ray job submit` and the RayJob / RayCronJob run) and `keyscope ingest`."""

from __future__ import annotations

import argparse
import logging

from app.config import Settings
from pipelines.ingest.job import StopRequest, run_ingest

log = logging.getLogger("keyscope.ingest")

DESCRIPTION = (
    "Move typing tests from Kafka into ClickHouse with their metrics. Without --follow, drain what is on the topic "
    "now and exit (for `ray job submit` and RayJob)."
)


def _messages_per_pass(text: str) -> int:
    """--max-messages: a whole number ≥ 0 (argparse names the flag in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 0 (0 = no limit), not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0 (0 = no limit), not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ingest command's flags."""
    parser.add_argument("--follow", action="store_true", help="keep ingesting micro-batches until interrupted")
    parser.add_argument(
        "--max-messages",
        type=_messages_per_pass,
        metavar="N",
        help="at most N messages per partition in one pass (0 = no limit; default from KEYSCOPE_INGEST_MAX_MESSAGES)",
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Drain the topic (or with --follow keep ingesting until SIGINT/SIGTERM, finishing the pass in flight) and print
    what was done; 130 when interrupted at once (a second signal)."""
    if args.max_messages is not None:
        settings = settings.with_overrides(ingest_max_messages=args.max_messages)
    stop = StopRequest()
    if args.follow:
        stop.install()
    try:
        report = run_ingest(settings, follow=args.follow, stop=stop)
    except KeyboardInterrupt:
        log.info("interrupted; offsets up to the last finished pass are stored")
        return 130
    print(report.line())
    if stop.event.is_set():
        print("stopped on request after a finished pass")
    return 0
