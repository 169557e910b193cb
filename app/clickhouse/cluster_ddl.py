"""The replicated, sharded variant of the migrations for a ClickHouse cluster, generated from the same files.

    python -m app.clickhouse.cluster_ddl --out cluster/clickhouse      # regenerate after adding a migration
    python -m pipelines.schema                                         # apply them to a cluster (a RayJob)

Each table `t` becomes `t_local` (Replicated*MergeTree on every replica, `ON CLUSTER '{cluster}'`) plus a
`Distributed` table `t` over it, sharded by `cityHash64(user_id)` so one user's keystrokes, results and
aggregates live on one shard — the per-user reads and the materialized views then never cross shards.
Materialized views read and write the local tables. `{cluster}`, `{shard}` and `{replica}` are the server's
macros. The local single-node schema (app/clickhouse/migrations) stays the source of truth; a test checks
the generated files are current and that every statement parses (ClickHouse's own `formatQuery`).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from clickhouse_connect.driver.client import Client

from app.clickhouse.migrate import (
    SCHEMA_MIGRATIONS_COLUMNS,
    Migration,
    applied_versions,
    load_migrations,
    pending_migrations,
    record_applied,
)

CLUSTER = "'{cluster}'"
# Tables without user_id are sharded by what identifies their rows.
_CREATE_TABLE = re.compile(
    r"CREATE TABLE IF NOT EXISTS (?P<name>\w+)\s*(?P<columns>\(.*\))\s*ENGINE\s*=\s*(?P<engine>\w+)(?P<args>\([^)]*\))?"
    r"(?P<rest>.*)",
    re.S,
)
_CREATE_VIEW = re.compile(
    r"CREATE MATERIALIZED VIEW IF NOT EXISTS (?P<name>\w+) TO (?P<target>\w+) AS(?P<select>.*)", re.S
)
_ALTER = re.compile(r"ALTER TABLE (?P<name>\w+)(?P<rest>.*)", re.S)
_DROP = re.compile(r"DROP (?P<kind>TABLE|VIEW) IF EXISTS (?P<name>\w+)")
_FROM = re.compile(r"\bFROM (\w+)")
_CODEC = re.compile(r"\s*CODEC\((?:[^()]|\([^()]*\))*\)")


def _local(name: str) -> str:
    return f"{name}_local"


def _sharding_key(columns: str, rest: str) -> str:
    """By user wherever a table has a user id (a user's rows on one shard, so per-user queries stay local);
    bookkeeping tables without one shard by their sorting key."""
    if re.search(r"^\s*user_id\s", columns, re.M):
        return "cityHash64(user_id)"
    order = re.search(r"ORDER BY\s+(\([^)]*\)|\w+)", rest)
    if order is None:
        raise ValueError("a table without user_id needs an ORDER BY to shard by")
    return f"cityHash64({order.group(1).strip('()').strip()})"


def _create_table(match: re.Match[str]) -> list[str]:
    name, engine, args = match["name"], match["engine"], (match["args"] or "()")[1:-1]
    replicated_args = f"'/clickhouse/tables/{{shard}}/{{database}}/{_local(name)}', '{{replica}}'"
    if args.strip():
        replicated_args += f", {args.strip()}"
    sharding = _sharding_key(match["columns"], match["rest"])
    return [
        f"CREATE TABLE IF NOT EXISTS {_local(name)} ON CLUSTER {CLUSTER}\n{match['columns']}\n"
        f"ENGINE = Replicated{engine}({replicated_args}){match['rest']}",
        f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {CLUSTER} AS {_local(name)}\n"
        f"ENGINE = Distributed({CLUSTER}, currentDatabase(), {_local(name)}, {sharding})",
    ]


def _create_view(match: re.Match[str]) -> list[str]:
    select = _FROM.sub(lambda m: f"FROM {_local(m.group(1))}", match["select"])
    return [
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {match['name']} ON CLUSTER {CLUSTER} "
        f"TO {_local(match['target'])} AS{select}"
    ]


def _changes_columns(clause: str) -> bool:
    """An ALTER clause the Distributed table must repeat: one that adds, drops, retypes or comments a column."""
    return bool(re.match(r"(ADD|DROP|COMMENT) COLUMN\b", clause) or re.match(r"MODIFY COLUMN \w+ (?!CODEC)\w", clause))


def _alter(match: re.Match[str]) -> list[str]:
    name, rest = match["name"], match["rest"]
    statements = [f"ALTER TABLE {_local(name)} ON CLUSTER {CLUSTER}{rest}"]
    # The Distributed table only needs to know the columns: its copy of an ALTER keeps the column changes
    # without codecs, and is skipped when nothing but codecs, settings or data (UPDATE) changed.
    clauses = [_CODEC.sub("", clause).strip() for clause in re.split(r",\s*\n", rest.strip())]
    if changes := [clause for clause in clauses if _changes_columns(clause)]:
        statements.append(f"ALTER TABLE {name} ON CLUSTER {CLUSTER}\n    " + ",\n    ".join(changes))
    return statements


def _drop(match: re.Match[str]) -> list[str]:
    name = match["name"]
    if match["kind"] == "VIEW":  # materialized views exist on every replica under their own name
        return [f"DROP VIEW IF EXISTS {name} ON CLUSTER {CLUSTER}"]
    return [f"DROP TABLE IF EXISTS {table} ON CLUSTER {CLUSTER}" for table in (name, _local(name))]


def cluster_statements(migration: Migration) -> list[str]:
    """The cluster variant of every statement of one migration."""
    out: list[str] = []
    for statement in migration.statements():
        if match := _CREATE_TABLE.fullmatch(statement):
            out.extend(_create_table(match))
        elif match := _CREATE_VIEW.fullmatch(statement):
            out.extend(_create_view(match))
        elif match := _ALTER.fullmatch(statement):
            out.extend(_alter(match))
        elif match := _DROP.fullmatch(statement):
            out.extend(_drop(match))
        elif statement.startswith("INSERT INTO"):
            out.append(statement)  # a backfill: through the Distributed tables, which route rows to shards
        else:
            raise ValueError(f"migration {migration.version}: no cluster form for statement: {statement[:80]}…")
    return out


# The applied versions, recorded under the local migrations' checksums in one table that every node holds in full:
# each job's own `apply_migrations` (app/clickhouse/migrate.py) reads `schema_migrations` on whichever node its
# connection reaches and must find the cluster forms recorded there, or it would run the single-node forms against
# the Distributed tables. So one replication path for the whole cluster, not one per {shard}; `{replica}` (the host's
# name under the Altinity operator) is unique across shards.
SCHEMA_MIGRATIONS_DDL = (
    f"CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER {CLUSTER} {SCHEMA_MIGRATIONS_COLUMNS}\n"
    "ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{database}/schema_migrations', '{replica}') ORDER BY version"
)
# Before the job ends, every replica holds what it recorded, so a job started next finds it on any node.
SYNC_SCHEMA_MIGRATIONS = f"SYSTEM SYNC REPLICA ON CLUSTER {CLUSTER} schema_migrations"


def pending_cluster_statements(client: Client) -> list[tuple[Migration, list[str]]]:
    """The migrations the cluster has not recorded, each with its cluster statements, in order (changes nothing)."""
    recorded = applied_versions(client) if client.command("EXISTS TABLE schema_migrations") else {}
    return [(m, cluster_statements(m)) for m in pending_migrations(recorded, load_migrations())]


def apply_cluster_migrations(client: Client) -> list[int]:
    """Apply the cluster form of every migration the cluster has not recorded, recording each once all its
    statements ran on every node (ON CLUSTER waits for them); the versions applied now."""
    client.command(SCHEMA_MIGRATIONS_DDL)
    done = []
    for migration, statements in pending_cluster_statements(client):
        for statement in statements:
            client.command(statement)
        record_applied(client, migration)
        done.append(migration.version)
    client.command(SYNC_SCHEMA_MIGRATIONS)
    return done


def render(migration: Migration) -> str:
    """The cluster migration file for one migration."""
    header = (
        f"-- GENERATED from app/clickhouse/migrations/{migration.version:04d}_{migration.name}.sql by\n"
        "-- `python -m app.clickhouse.cluster_ddl --out cluster/clickhouse`; do not edit by hand.\n"
    )
    return header + "".join(f"\n{statement};\n" for statement in cluster_statements(migration))


def write_all(out: Path) -> list[Path]:
    """Write the cluster variant of every migration into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for migration in load_migrations():
        path = out / f"{migration.version:04d}_{migration.name}.sql"
        path.write_text(render(migration))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the ON CLUSTER / Replicated / Distributed migrations.")
    parser.add_argument("--out", type=Path, default=Path("cluster/clickhouse"), help="output folder")
    args = parser.parse_args(argv)
    for path in write_all(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
