"""The schema job of a ClickHouse cluster: apply the replicated, sharded form of every migration not applied yet.

    python -m pipelines.schema [--dry-run]        (the RayJob keyscope-schema; CLICKHOUSE_URL names one node or
                                                  the cluster's Service: ON CLUSTER reaches every node)

On one server every job applies the migrations itself (`apply_migrations` at its start). On a cluster the tables
are `t_local` (Replicated*MergeTree) behind a Distributed `t` (app/clickhouse/cluster_ddl.py), a form the jobs
cannot create; this job creates it and records each version in a `schema_migrations` table replicated on every
node, under the local migration's checksum, so the jobs' own `apply_migrations` then finds nothing to do. Run it
once on a new cluster and again after every upgrade that adds a migration, before the new image's jobs start.
Re-running it applies nothing twice.
"""

from __future__ import annotations

import argparse
import logging

from app.clickhouse.client import clickhouse_client
from app.clickhouse.cluster_ddl import apply_cluster_migrations, pending_cluster_statements
from app.config import Settings
from pipelines.entry import job_main, job_parser

log = logging.getLogger("keyscope.schema")

DESCRIPTION = (
    "Apply the ClickHouse migrations to a cluster in their replicated, sharded form (ON CLUSTER, "
    "Replicated*MergeTree behind Distributed tables) and record them where every job looks, so no job applies the "
    "single-node form. Safe to repeat."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print the statements it would run, run none")


def run(settings: Settings, args: argparse.Namespace) -> int:
    client = clickhouse_client(settings.clickhouse_url)
    try:
        if args.dry_run:
            pending = pending_cluster_statements(client)
            for migration, statements in pending:
                print(f"-- {migration.version:04d}_{migration.name}")
                print("".join(f"{statement};\n" for statement in statements))
            print(f"{len(pending)} migration(s) to apply")
            return 0
        applied = apply_cluster_migrations(client)
    finally:
        client.close()
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(f'{v:04d}' for v in applied)}" if applied else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main(job_parser("python -m pipelines.schema", DESCRIPTION, add_arguments), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
