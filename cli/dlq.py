"""`keyscope dlq list | replay`: the dead-letter topic, read or re-submitted after a fix."""

from __future__ import annotations

import argparse

from app.config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("list", "replay"),
        help="list: show dead letters and their reasons; "
        "replay: re-submit those not replayed before to the keystroke topic",
    )
    parser.add_argument("--limit", type=int, default=100, help="at most this many letters (default 100)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from app.dlq import list_dead_letters, replay_dead_letters

    if args.action == "list":
        letters = list_dead_letters(settings, args.limit)
        print(f"{len(letters)} dead letters on {settings.dlq_topic} (oldest first, at most {args.limit}):")
        for item in letters:
            letter = item.letter
            print(
                f"  dlq {item.dlq_partition}:{item.dlq_offset}  from {settings.keystroke_topic} "
                f"{letter.partition}:{letter.offset}  {len(letter.value)} bytes  {letter.reason}"
            )
        return 0
    report = replay_dead_letters(settings, args.limit)
    print(
        f"replayed {report.replayed} dead letters to {settings.keystroke_topic}"
        + ("; more remain (run again)" if report.remaining else "")
        + "; the next ingest pass stores the ones that now decode and dead-letters the rest again"
    )
    return 0
