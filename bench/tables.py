"""`keyscope bench tables`: what storing a keystroke costs ClickHouse itself, table by table, and the most keystrokes
a second this machine's cores could store if nothing else ran.

The simulated tests of `keyscope bench storage` are analysed (`build_tables`, timed on its thread) and grouped into
batches of `WRITE_MIN_KEYSTROKES`, as the ingest job writes them. A fresh in-process chDB directory, every
migration applied, takes them table by table with merges stopped: each table's inserts are timed as process CPU
(chDB's threads and the client's Arrow serialization; nothing else runs). Then merges start and
`OPTIMIZE TABLE … FINAL` merges each table's parts into one, timed the same way. (No stored table feeds a
materialized view since migration 0011; a view's target would have to count with the table that feeds it.)

One final merge is the least merging a store can do: a live store merges the same rows again as its parts grow.
So the total is a floor on ClickHouse's CPU per keystroke, and cores / (analysis + ClickHouse) is a ceiling on
throughput — before reading Kafka, moving batches between processes, Ray's own work or the broker's.
"""

from __future__ import annotations

import argparse
import os
import resource
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations
from app.clickhouse.store import STORED_TABLES
from app.config import Settings
from app.tables import TestTables
from bench import add_clickhouse_dir_argument
from bench.storage import fresh_chdb_directory, print_table, simulated_batches
from pipelines.ingest.write import WRITE_MIN_KEYSTROKES

TESTS_PER_TYPIST = 10


def process_cpu_s() -> float:
    """CPU seconds of this process, every thread (chDB's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class TableCost:
    table: str
    rows: int
    insert_cpu_s: float
    merge_cpu_s: float
    bytes_on_disk: int  # after the final merge


@dataclass(frozen=True)
class TablesBenchmark:
    keystrokes: int
    tests: int
    inserts: int  # inserts per table
    analysis_cpu_s: float
    tables: list[TableCost]
    cores: int

    def per_million(self, seconds: float) -> float:
        return seconds * 1e6 / self.keystrokes

    @property
    def clickhouse_cpu_s(self) -> float:
        return sum(t.insert_cpu_s + t.merge_cpu_s for t in self.tables)

    @property
    def least_cpu_s_per_million(self) -> float:
        """Analysis and ClickHouse's inserts and one final merge, per million keystrokes."""
        return self.per_million(self.analysis_cpu_s + self.clickhouse_cpu_s)

    @property
    def ceiling_keystrokes_per_s(self) -> float:
        return self.cores * 1e6 / self.least_cpu_s_per_million

    def rows(self) -> list[tuple[str, ...]]:
        out = [("table", "rows per keystroke", "insert CPU s per M", "merge CPU s per M", "bytes per keystroke")]
        for t in self.tables:
            out.append(
                (
                    t.table,
                    f"{t.rows / self.keystrokes:.3f}",
                    f"{self.per_million(t.insert_cpu_s):.2f}",
                    f"{self.per_million(t.merge_cpu_s):.2f}",
                    f"{t.bytes_on_disk / self.keystrokes:.2f}",
                )
            )
        out.append(
            (
                "ClickHouse, all tables",
                "",
                f"{self.per_million(sum(t.insert_cpu_s for t in self.tables)):.2f}",
                f"{self.per_million(sum(t.merge_cpu_s for t in self.tables)):.2f}",
                f"{sum(t.bytes_on_disk for t in self.tables) / self.keystrokes:.2f}",
            )
        )
        out.append(("analysis (build_tables, one thread)", "", f"{self.per_million(self.analysis_cpu_s):.2f}", "", ""))
        return out


def _write_batches(keystrokes: int, seed: int, progress: bool) -> tuple[list[TestTables], int, float]:
    """The simulated tests of `keystrokes` keystrokes, analysed and grouped into batches of at least
    `WRITE_MIN_KEYSTROKES` (the last may hold fewer); the tests in them and the analysis's CPU seconds."""
    batches: list[TestTables] = []
    waiting: list[TestTables] = []
    tests = 0
    analysis_s = 0.0
    bar = tqdm(total=keystrokes, unit=" keystrokes", unit_scale=True, desc="simulate + analyse", disable=not progress)
    with bar:
        for batch in simulated_batches(keystrokes, TESTS_PER_TYPIST, seed):
            waiting.append(batch.tables)
            tests += len(batch.tests)
            analysis_s += batch.analysis_cpu_s
            bar.update(batch.tables.keystrokes.num_rows)
            if sum(t.keystrokes.num_rows for t in waiting) >= WRITE_MIN_KEYSTROKES:
                batches.append(TestTables.concat(waiting))
                waiting = []
    if waiting:
        batches.append(TestTables.concat(waiting))
    return batches, tests, analysis_s


def run(
    keystrokes: int = 2_000_000, seed: int = 1, clickhouse_dir: str | Path | None = None, progress: bool = True
) -> TablesBenchmark:
    """Analyse and store `keystrokes` simulated keystrokes (whole tests) in a fresh chDB directory (default: a
    temporary one, removed afterwards), timing each table's inserts and final merge."""
    if keystrokes <= 0:
        raise ValueError(f"keystrokes must be positive, got {keystrokes}")
    costs = []
    with fresh_chdb_directory(clickhouse_dir, "keyscope-tables-") as directory:
        batches, tests, analysis_s = _write_batches(keystrokes, seed, progress)
        client = clickhouse_client(f"chdb://{directory}")
        try:
            apply_migrations(client)
            client.command("SYSTEM STOP MERGES")
            inserted: dict[str, tuple[int, float]] = {}
            for table in tqdm(STORED_TABLES, desc="insert", disable=not progress):
                rows = [batch.parts()[table] for batch in batches]
                started = process_cpu_s()
                for part in rows:
                    client.insert_arrow(table, part)
                inserted[table] = (sum(part.num_rows for part in rows), process_cpu_s() - started)
            client.command("SYSTEM START MERGES")
            for table in tqdm(STORED_TABLES, desc="merge", disable=not progress):
                started = process_cpu_s()
                client.command(f"OPTIMIZE TABLE {table} FINAL")
                merged_s = process_cpu_s() - started
                size = client.query(
                    "SELECT sum(bytes_on_disk) FROM system.parts "
                    "WHERE active AND database = currentDatabase() AND table = {t:String}",
                    parameters={"t": table},
                ).result_rows[0][0]
                row_count, insert_s = inserted[table]
                costs.append(TableCost(table, row_count, insert_s, merged_s, int(size)))
        finally:
            client.close()
    stored = sum(b.keystrokes.num_rows for b in batches)
    return TablesBenchmark(stored, tests, len(batches), analysis_s, costs, os.cpu_count() or 1)


def print_report(result: TablesBenchmark) -> None:
    print(
        f"ClickHouse's own CPU per stored keystroke, in process: {result.keystrokes:,} simulated keystrokes "
        f"({result.tests:,} tests) in {result.inserts} inserts per table, merges stopped; then one final merge "
        "per table (OPTIMIZE FINAL):"
    )
    print_table(result.rows())
    print(
        f"least CPU per M keystrokes stored (analysis + ClickHouse): {result.least_cpu_s_per_million:.2f} s "
        f"→ at most {result.ceiling_keystrokes_per_s:,.0f} keystrokes/s on {result.cores} cores, before reading "
        "Kafka, moving batches between processes, Ray's own work or the broker's"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keystrokes",
        type=int,
        default=2_000_000,
        help="keystrokes to simulate, analyse and store (default 2,000,000)",
    )
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    add_clickhouse_dir_argument(parser)


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """`keyscope bench tables`: in process, no stack."""
    print_report(run(args.keystrokes, args.seed, args.clickhouse_dir))
    return 0
