"""The warehouse command, defined once: its actions and flags (`export`, `erase`, `cohorts`) and what each runs.
`python -m pipelines.warehouse` (the RayCronJob's entrypoint, pipelines/warehouse/__main__.py) and `keyscope
warehouse` (cli/main.py) both build their parser with `add_arguments` and hand the parsed arguments to `run`.
"""

from __future__ import annotations

import argparse
from datetime import date

from app.config import Settings
from pipelines.warehouse.cohorts import cohort_report, print_cohorts
from pipelines.warehouse.export import parse_day
from pipelines.warehouse.files import ROOT_HELP, warehouse_uri
from pipelines.warehouse.job import run_erasure, run_export

DESCRIPTION = (
    "The warehouse job: export daily Parquet of keyscope's data for BigQuery / Snowflake, sweep deleted users out "
    "of the exported files, or run the cohort example over them."
)

def _day(text: str) -> date:
    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _days(text: str) -> int:
    """A count of days, at least 1: refused while parsing, before any store is opened."""
    try:
        days = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from exc
    if days < 1:
        raise argparse.ArgumentTypeError("must be ≥ 1")
    return days


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The warehouse actions and their flags, on `parser` (the whole parser, or the `warehouse` subcommand's)."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="one UTC day of per-test results and per-user / per-key daily aggregates → Parquet (replaces the day)",
        description="Export one UTC day (default yesterday) of per-test results and per-user / per-key daily "
        "aggregates from ClickHouse to date-partitioned Parquet, replacing that day's earlier export; then export "
        "again the days newly past the two-year anonymization and remove the users deleted since the last sweep.",
    )
    export.add_argument(
        "--day", type=_day, metavar="YYYY-MM-DD", help="the (last) UTC day to export (default: yesterday)"
    )
    export.add_argument(
        "--days", type=_days, default=1, metavar="N", help="export this many days ending with --day (default 1)"
    )
    export.add_argument("--out", metavar="URI", help=ROOT_HELP)
    erase = actions.add_parser(
        "erase",
        help="remove the users deleted since the last sweep from every exported day (each export also does)",
    )
    erase.add_argument("--out", metavar="URI", help=ROOT_HELP)
    cohorts = actions.add_parser(
        "cohorts", help="weekly retention and WPM gain by signup week (pipelines/warehouse/cohorts.sql) over the files"
    )
    cohorts.add_argument("--from", dest="source", metavar="URI", help="warehouse root (default as for export)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the action `add_arguments` parsed into `args`, printing its report; returns the exit status."""
    if args.action == "export":
        for report in run_export(settings, args.day, args.out, args.days):
            print(report.line())
        return 0
    if args.action == "erase":
        print(run_erasure(settings, args.out).line())
        return 0
    if args.action == "cohorts":
        uri = warehouse_uri(settings, args.source)
        table = cohort_report(uri)
        print(f"weekly retention and WPM gain by signup week, over {uri}/user_daily:")
        print_cohorts(table)
        return 0
    raise ValueError(f"unknown warehouse action {args.action!r}")
