"""`keyscope …`: every subcommand, registered once with its help; each is defined and run by its own module
(a job in pipelines/, a benchmark in bench/, the local stack and the rest in cli/), imported only when used."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from app.config import Settings, apply_local_ray_env
from cli.bench import BENCHMARKS
from cli.registry import Command, LazyParser, defined_in, resolve

NO_ARGUMENTS = "cli.stack:add_no_arguments"

COMMANDS: tuple[Command, ...] = (
    Command(
        "up",
        "start the local stack (broker, ClickHouse endpoint, Redis, Ray, Serve app)",
        **defined_in("cli.stack", "up"),
    ),
    Command("down", "stop what `keyscope up` started", arguments=NO_ARGUMENTS, run="cli.stack:run_down"),
    Command(
        "status",
        "say what is running and where (exit 3 if something is down)",
        arguments=NO_ARGUMENTS,
        run="cli.stack:run_status",
    ),
    Command(
        "ingest",
        "run the ingest job (Kafka → metrics → ClickHouse) on the running stack",
        **defined_in("pipelines.ingest"),
    ),
    Command("simulate", "generate typing tests from synthetic typists", **defined_in("cli.stack", "simulate")),
    Command(
        "insights",
        "precompute insights of every typist with tests stored since the last run (ClickHouse user_insights and "
        "Redis); hourly in a cluster",
        **defined_in("pipelines.insights"),
    ),
    Command(
        "train",
        "train a model (pattern, error, trajectory) with Ray Train, judge it against its baselines on held-out "
        "typists, register it and promote it if it wins",
        **defined_in("training.train"),
    ),
    Command(
        "features",
        "rebuild the online feature store (Redis) from ClickHouse for typists it is missing tests of",
        **defined_in("pipelines.features"),
    ),
    Command("dlq", "list the dead-letter topic, or replay it after a fix", **defined_in("cli.dlq")),
    Command("bench", "run a benchmark and print its table", children=BENCHMARKS, metavar="BENCHMARK"),
    Command(
        "demo",
        "the main job: stack up, simulate tests over HTTP, ingest, show insights",
        **defined_in("cli.stack", "demo"),
    ),
    Command(
        "token",
        "print a bearer credential for the API (send it as `Authorization: Bearer …`)",
        **defined_in("cli.users", "token"),
    ),
    Command(
        "user",
        "export or delete everything keyscope holds about one user (GDPR)",
        children=(
            Command(
                "export",
                "write a zip archive of the user's data in every store, with manifest.json of the counts",
                **defined_in("cli.users", "export"),
            ),
            Command(
                "delete",
                "delete the user from every store and record a tombstone (queued messages are dropped)",
                **defined_in("cli.users", "delete"),
            ),
        ),
    ),
    Command(
        "warehouse",
        "export daily Parquet for a data warehouse; run the cohort example",
        **defined_in("pipelines.warehouse"),
    ),
    Command(
        "migrate",
        "import data from the seed's current architecture",
        metavar="SOURCE",
        children=(
            Command(
                "mysql",
                "the seed's MySQL keystroke_analytics table (JSON columns) → ClickHouse; resumable, idempotent",
                **defined_in("pipelines.migrate_mysql"),
            ),
        ),
    ),
    Command(
        "archive",
        "retention: keystrokes past KEYSCOPE_HOT_DAYS to cold Parquet, expire and anonymize old data",
        children=(
            Command(
                "run",
                "one run of the archive job (pipelines/archive.py): archive, delete cold data past KEYSCOPE_COLD_DAYS, "
                "anonymize per-test results as old",
                **defined_in("pipelines.archive"),
            ),
        ),
    ),
    Command(
        "practice",
        "practice text from the language model: convert the model, pre-generate texts, show a signature's texts",
        children=(
            Command(
                "model",
                "convert the packaged language model once (make install does it) and print where it is",
                **defined_in("cli.practice", "model"),
            ),
            Command(
                "generate",
                "write texts for the signatures that need them (pipelines/practice.py, Ray Data batch inference)",
                **defined_in("pipelines.practice"),
            ),
            Command(
                "show",
                "the texts cached for a practice signature, best first",
                **defined_in("cli.practice", "show"),
            ),
        ),
    ),
    Command(
        "models",
        "the model registry: trained versions, their held-out metrics, which one serves",
        children=(
            Command(
                "list",
                "list the registered versions, newest first, marking the promoted one",
                **defined_in("cli.models", "list"),
            ),
            Command(
                "show",
                "a version's held-out metrics, data window, parameters and artifact folder (default: the promoted one)",
                **defined_in("cli.models", "show"),
            ),
            Command(
                "promote",
                "serve this version (by hand: no metric check; training promotes by the rule itself)",
                **defined_in("cli.models", "promote"),
            ),
            Command(
                "rollback",
                "serve again the version promoted before the current one",
                **defined_in("cli.models", "rollback"),
            ),
        ),
    ),
    Command(
        "experiment",
        "A/B experiments: deterministic assignment, exposures in ClickHouse, effect on later tests",
        children=(
            Command(
                "create",
                "define an experiment: what it varies, its variants and weights, when it runs",
                **defined_in("cli.experiments", "create"),
            ),
            Command("list", "every experiment, its state and exposed users", **defined_in("cli.experiments", "list")),
            Command(
                "stop",
                "end a running experiment now (its users get the default again; the report still reads it)",
                **defined_in("cli.experiments", "stop"),
            ),
            Command(
                "report",
                "per variant, the exposed users' WPM and weak-key change after N tests, the differences between "
                "variants with confidence intervals, and the sample-ratio check",
                **defined_in("cli.experiments", "report"),
            ),
        ),
    ),
    Command(
        "cluster",
        "the Kubernetes deployment (cluster/)",
        children=(
            Command(
                "render",
                "write the manifests of one size (dev, prod) from cluster/values/SIZE.yaml",
                **defined_in("cluster.render"),
            ),
        ),
    ),
    Command(
        "cold",
        "read the cold store (Parquet) with ClickHouse SQL",
        children=(
            Command(
                "query",
                "run SQL in chDB; the table name cold_keystrokes reads every cold file (columns + day, user_bucket)",
                **defined_in("cli.cold", "query"),
            ),
        ),
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The `keyscope` parser; each subcommand's own arguments are added when it is parsed or its help shown."""
    parser = argparse.ArgumentParser(
        prog="keyscope",
        description="keyscope: typing analytics on Kafka, Ray and ClickHouse. Service addresses come from "
        "KAFKA_BOOTSTRAP, CLICKHOUSE_URL, REDIS_URL and RAY_ADDRESS (local defaults); data lives under "
        "KEYSCOPE_DATA_DIR (default .keyscope/).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=LazyParser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    apply_local_ray_env()  # before anything imports ray, which a subcommand's module may do while parsing
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    for noisy in ("aiokafka", "kafka", "urllib3", "httpx", "ray"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
        return int(resolve(args.command_run)(settings, args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`keyscope simulate --to stdout | head`): nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 0
    except Exception as exc:  # a CLI user wants the reason, not a traceback
        if args.verbose:
            raise
        print(f"keyscope {args.command}: error: {exc or type(exc).__name__}", file=sys.stderr)  # some carry no text
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
