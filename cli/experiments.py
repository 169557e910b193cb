"""`keyscope experiment create | list | stop | report`: A/B experiments (app/experiments/, docs/experiments.md)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from app.config import Settings

CREATE_EPILOG = """examples:
  keyscope experiment create practice-gen-1 --factor practice_generator --variant lm=50 --variant rules=50
  keyscope experiment create aa-check --factor practice_generator --variant a:lm=1 --variant b:lm=1 \\
      --starts 2026-12-07T00:00:00Z --ends 2027-01-07T00:00:00Z

A variant is NAME[:VALUE]=WEIGHT; the value defaults to the name. Weights are relative (50/50 = 1/1). The first
variant is the control the report compares the others with. Definitions never change once created."""


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def add_create_arguments(parser: argparse.ArgumentParser) -> None:
    from app.experiments.definition import FACTORS, METRICS

    parser.epilog = CREATE_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("name", metavar="NAME", help="lower-case letters, digits, '-' and '_'")
    parser.add_argument("--factor", required=True, choices=sorted(FACTORS), help="what the experiment varies")
    parser.add_argument(
        "--variant", action="append", required=True, metavar="NAME[:VALUE]=WEIGHT",
        help="a variant (twice or more); practice_generator takes the values lm and rules",
    )
    parser.add_argument("--starts", type=_moment, metavar="TIME", help="ISO-8601 start (default: now)")
    parser.add_argument(
        "--ends", type=_moment, metavar="TIME", help="ISO-8601 end (default: open; `keyscope experiment stop` ends it)"
    )
    parser.add_argument(
        "--metric", choices=METRICS, default="wpm",
        help="the outcome the experiment is about (the report marks it and shows both)",
    )
    parser.add_argument("--description", default="", help="what the experiment tests, for the list")


def run_create(settings: Settings, args: argparse.Namespace) -> int:
    from app.clickhouse.client import clickhouse_client
    from app.experiments.definition import Experiment, parse_variant
    from app.experiments.store import create_experiment

    experiment = Experiment(
        name=args.name, factor=args.factor, variants=tuple(parse_variant(spec) for spec in args.variant),
        starts_at=args.starts or datetime.now(UTC), ends_at=args.ends, metric=args.metric,
        description=args.description,
    )
    client = clickhouse_client(settings.clickhouse_url)
    try:
        created = create_experiment(client, experiment)
    finally:
        client.close()
    shares = ", ".join(f"{v.name} ({v.value}) {s:.1%}" for v, s in zip(created.variants, created.shares))
    print(f"created experiment {created.name}: {created.factor}: {shares}; starts {created.starts_at:%Y-%m-%d %H:%M}Z")
    return 0


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    from app.clickhouse.client import clickhouse_client
    from app.experiments.store import exposure_counts, load_experiments

    client = clickhouse_client(settings.clickhouse_url)
    try:
        experiments = load_experiments(client)
        exposed = {e.name: sum(exposure_counts(client, e.name).values()) for e in experiments}
    finally:
        client.close()
    now = datetime.now(UTC)
    if args.json:
        print(json.dumps([
            {
                "name": e.name, "factor": e.factor, "metric": e.metric, "description": e.description,
                "variants": [{"name": v.name, "value": v.value, "weight": v.weight} for v in e.variants],
                "starts_at": e.starts_at.isoformat(), "ends_at": e.ends_at.isoformat() if e.ends_at else None,
                "running": e.running(now), "exposed": exposed[e.name],
            }
            for e in experiments
        ], indent=2))
        return 0
    if not experiments:
        print("no experiments yet (keyscope experiment create --help)")
        return 0
    print(f"{'name':<24} {'factor':<20} {'variants':<28} {'state':<9} {'exposed':>8}  window")
    for e in experiments:
        state = "running" if e.running(now) else ("planned" if now < e.starts_at else "ended")
        variants = " ".join(f"{v.name}:{v.value}={v.weight:g}" for v in e.variants)
        until = e.ends_at.strftime("%Y-%m-%d %H:%M") if e.ends_at else "open"
        print(
            f"{e.name:<24} {e.factor:<20} {variants:<28} {state:<9} {exposed[e.name]:>8}  "
            f"{e.starts_at:%Y-%m-%d %H:%M} – {until}"
        )
    return 0


def add_stop_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME")


def run_stop(settings: Settings, args: argparse.Namespace) -> int:
    from app.clickhouse.client import clickhouse_client
    from app.experiments.store import stop_experiment

    client = clickhouse_client(settings.clickhouse_url)
    try:
        stopped = stop_experiment(client, args.name)
    finally:
        client.close()
    print(f"experiment {stopped.name} ends at {stopped.ends_at:%Y-%m-%d %H:%M:%S}Z")
    return 0


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    from app.experiments.outcomes import AFTER_TESTS

    parser.add_argument("name", metavar="NAME")
    parser.add_argument(
        "--after-tests", type=int, default=AFTER_TESTS, metavar="N",
        help=f"compare each user's first N tests after exposure with their last N before (default {AFTER_TESTS})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run_report(settings: Settings, args: argparse.Namespace) -> int:
    from app.clickhouse.client import clickhouse_client
    from app.experiments.report import experiment_report, format_report

    if args.after_tests < 1:
        raise ValueError("--after-tests must be at least 1")
    client = clickhouse_client(settings.clickhouse_url)
    try:
        report = experiment_report(client, args.name, args.after_tests)
    finally:
        client.close()
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_report(report))
    return 0
