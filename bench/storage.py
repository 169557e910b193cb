"""`keyscope bench storage`: bytes per keystroke on disk in ClickHouse, and in the seed's MySQL JSON table.

The same simulated keystrokes go into both stores:

- ClickHouse: a fresh in-process chDB directory with every migration applied. Batches of simulated tests
  are parsed, analysed and written with `write_tables`, as the ingest job writes them. After
  `OPTIMIZE TABLE keystrokes FINAL`, `system.parts` gives the bytes on disk of the `keystrokes` table's
  active parts, and `system.columns` gives each column's compressed bytes.
- MariaDB: the seed's current architecture, one `keystroke_analytics` row per test, in a scratch table
  with a unique name that is dropped afterwards. The size is `data_length + index_length` from
  `information_schema.TABLES` after `ANALYZE TABLE`:

      id              BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY
      user_id         BIGINT UNSIGNED
      test_result_id  BIGINT UNSIGNED   -- the test's ordinal in the run (the seed's ids are numbers)
      key_timings     JSON
      key_errors      JSON
      health_score    DOUBLE NULL       -- keyscope's 0-100 health score of the test
      created_at      DATETIME(3)       -- the test's start
      KEY idx_analytics_user_time (user_id, created_at)

  The JSON follows the seed's message (`keyTimings` / `keyErrors`, the shape `app.schemas.parse_submission`
  accepts), written compactly (no spaces):

      key_timings: one object per keystroke, in order: "key" is the character or the named key,
        "time" is ms from the test start to the press, "duration" is ms held (null when the release is
        unknown):
        [{"key":"T","time":49,"duration":155},{"key":"h","time":175,"duration":59},...]
      key_errors: per presented key, the presses that typed something else there, for keys with errors:
        {"e":1,"a":2}

At 10 M keystrokes the MariaDB side can be limited to the tests of the first `mariadb_keystrokes`
keystrokes. Its bytes per keystroke are then measured on that subset and applied to the whole run, and
the printed table says so.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import MIGRATIONS_DIR, apply_migrations
from app.clickhouse.store import write_tables
from app.config import Settings
from app.schemas import TypingTest, parse_submission
from app.tables import TestTables, build_tables
from app.text_table import print_table
from bench import add_clickhouse_dir_argument
from devstack.simulate import simulate_tests
from pipelines.migrate_mysql import parse_dsn

DEFAULT_MARIADB_URL = "mysql://root@127.0.0.1:3306/test"
USERS_PER_BATCH = 100


@dataclass(frozen=True)
class ColumnSize:
    name: str
    type: str
    codec: str
    compressed_bytes: int
    uncompressed_bytes: int


@dataclass(frozen=True)
class ClickHouseSize:
    """The `keystrokes` table on disk after OPTIMIZE FINAL."""

    rows: int
    tests: int  # rows of test_results
    bytes_on_disk: int
    parts: int
    columns: list[ColumnSize]
    all_tables_bytes: int  # every table of the database: keystrokes, results, per-key/pair stats, daily MVs
    version: str

    @property
    def bytes_per_keystroke(self) -> float:
        return self.bytes_on_disk / self.rows if self.rows else float("nan")


@dataclass(frozen=True)
class MariaDBSize:
    """The scratch `keystroke_analytics` table after ANALYZE TABLE."""

    table: str
    rows: int
    keystrokes: int  # the number of key_timings entries over all rows, as MariaDB counts them
    data_length: int
    index_length: int
    version: str

    @property
    def bytes_on_disk(self) -> int:
        return self.data_length + self.index_length

    @property
    def bytes_per_keystroke(self) -> float:
        return self.bytes_on_disk / self.keystrokes if self.keystrokes else float("nan")


@dataclass(frozen=True)
class StorageBenchmark:
    keystrokes: int
    tests: int
    users: int
    clickhouse: ClickHouseSize
    mariadb: MariaDBSize
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """MariaDB's bytes per keystroke over ClickHouse's."""
        return self.mariadb.bytes_per_keystroke / self.clickhouse.bytes_per_keystroke

    def rows(self) -> list[tuple[str, ...]]:
        """The comparison table: one row per store."""
        ch, maria = self.clickhouse, self.mariadb
        subset = maria.keystrokes < self.keystrokes
        maria_total = maria.bytes_per_keystroke * self.keystrokes
        return [
            ("store", "keystrokes", "rows", "bytes on disk", "bytes/keystroke", "vs ClickHouse"),
            (
                "ClickHouse keystrokes (chDB)",
                f"{ch.rows:,}",
                f"{ch.rows:,}",
                f"{ch.bytes_on_disk:,}",
                f"{ch.bytes_per_keystroke:.3f}",
                "1.0x",
            ),
            (
                "MariaDB keystroke_analytics (JSON)" + (" *" if subset else ""),
                f"{maria.keystrokes:,}",
                f"{maria.rows:,}",
                f"{maria.bytes_on_disk:,}" + (f" (~{maria_total:,.0f} for all)" if subset else ""),
                f"{maria.bytes_per_keystroke:.3f}",
                f"{self.ratio:.1f}x",
            ),
        ]

    def column_rows(self) -> list[tuple[str, ...]]:
        """ClickHouse's bytes per keystroke by column (compressed data only: no marks or index)."""
        n = self.clickhouse.rows or 1
        out = [("column", "type", "codec", "bytes/keystroke", "uncompressed")]
        for c in self.clickhouse.columns:
            out.append(
                (
                    c.name,
                    c.type,
                    c.codec or "(default)",
                    f"{c.compressed_bytes / n:.4f}",
                    f"{c.uncompressed_bytes / n:.3f}",
                )
            )
        data = sum(c.compressed_bytes for c in self.clickhouse.columns)
        if data == 0:  # a Compact part (under min_bytes_for_wide_part) records no per-column sizes
            out.append(("(a Compact part: no per-column sizes)", "", "", "", ""))
        out.append(("all columns", "", "", f"{data / n:.4f}", ""))
        out.append(("+ marks, index, part files", "", "", f"{(self.clickhouse.bytes_on_disk - data) / n:.4f}", ""))
        return out


@dataclass
class SimulatedBatch:
    tests: list[TypingTest]
    tables: TestTables
    analysis_cpu_s: float = 0.0  # `build_tables` on its thread (simulating and parsing not counted)


def simulated_batches(
    keystrokes: int, tests_per_user: int, seed: int, users_per_batch: int = USERS_PER_BATCH
) -> Iterator[SimulatedBatch]:
    """Batches of simulated, parsed and analysed tests: whole tests, up to the one that reaches `keystrokes`."""
    total = 0
    first_user = 1
    while total < keystrokes:
        submissions = simulate_tests(users_per_batch, tests_per_user, seed=seed, first_user_id=first_user)
        first_user += users_per_batch
        tests = [parse_submission(s) for s in submissions]
        counts = np.cumsum([t.keystroke_count for t in tests])
        keep = min(int(np.searchsorted(counts, keystrokes - total, side="left")) + 1, len(tests))
        tests = tests[:keep]
        total += int(counts[keep - 1])
        started = time.thread_time()
        tables = build_tables(tests, np.zeros(len(tests), np.int64), np.arange(len(tests), dtype=np.int64))
        yield SimulatedBatch(tests, tables, time.thread_time() - started)


@dataclass(frozen=True)
class SeedBatch:
    """What the MariaDB side needs of a batch, without its storage tables (kept in memory until then)."""

    tests: list[TypingTest]
    key_errors: dict[tuple[int, str], dict[str, int]]
    health: dict[tuple[int, str], float | None]

    @classmethod
    def of(cls, batch: SimulatedBatch, keystrokes: int | None = None) -> SeedBatch:
        """The batch's tests, or only whole tests up to the one that reaches `keystrokes`."""
        tests = batch.tests
        if keystrokes is not None:
            counts = np.cumsum([t.keystroke_count for t in tests])
            tests = tests[: min(int(np.searchsorted(counts, keystrokes, side="left")) + 1, len(tests))]
        results = batch.tables.results
        ids = zip(results.column("user_id").to_pylist(), results.column("test_id").to_pylist(), strict=True)
        health = dict(zip(ids, results.column("health_score").to_pylist(), strict=True))
        return cls(tests, key_errors_by_test(batch.tables), health)

    @property
    def keystrokes(self) -> int:
        return sum(t.keystroke_count for t in self.tests)


def key_timings_json(test: TypingTest) -> str:
    """The seed's keyTimings of one test: [{"key", "time", "duration"}, ...] (duration null if unknown)."""
    keys = test.keys()
    downs = test.down_ms.tolist()
    ups = test.up_ms.tolist()
    return json.dumps(
        [
            {"key": k, "time": d, "duration": (u - d) if u >= 0 else None}
            for k, d, u in zip(keys, downs, ups, strict=True)
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def key_errors_by_test(tables: TestTables) -> dict[tuple[int, str], dict[str, int]]:
    """(user_id, test_id) -> {presented key: errors}, from the per-test key stats (keys with errors only)."""
    stats = tables.key_stats
    out: dict[tuple[int, str], dict[str, int]] = {}
    for user, test, key, errors in zip(
        stats.column("user_id").to_pylist(),
        stats.column("test_id").to_pylist(),
        stats.column("key").to_pylist(),
        stats.column("errors").to_pylist(),
        strict=True,
    ):
        if errors:
            out.setdefault((user, test), {})[key] = int(errors)
    return out


def seed_rows(batch: SeedBatch, first_ordinal: int) -> list[tuple[Any, ...]]:
    """The batch's tests as keystroke_analytics rows: (user_id, test_result_id, key_timings, key_errors,
    health_score, created_at)."""
    rows = []
    for i, test in enumerate(batch.tests):
        key = (test.user_id, test.test_id)
        rows.append(
            (
                test.user_id,
                first_ordinal + i,
                key_timings_json(test),
                json.dumps(batch.key_errors.get(key, {}), separators=(",", ":"), ensure_ascii=False),
                batch.health.get(key),
                datetime.fromtimestamp(test.started_at_ms / 1000, tz=UTC).replace(tzinfo=None),
            )
        )
    return rows


def clickhouse_size(client: Any) -> ClickHouseSize:
    """The `keystrokes` table's active parts and columns in the client's database."""
    rows, on_disk, parts = client.query(
        "SELECT sum(rows), sum(bytes_on_disk), count() FROM system.parts "
        "WHERE database = currentDatabase() AND table = 'keystrokes' AND active"
    ).result_rows[0]
    columns = [
        ColumnSize(str(name), str(typ), str(codec), int(compressed), int(uncompressed))
        for name, typ, codec, compressed, uncompressed in client.query(
            "SELECT name, type, compression_codec, data_compressed_bytes, data_uncompressed_bytes "
            "FROM system.columns WHERE database = currentDatabase() AND table = 'keystrokes' ORDER BY position"
        ).result_rows
    ]
    everything = client.query(
        "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = currentDatabase() AND active"
    ).result_rows[0][0]
    tests = client.query("SELECT count() FROM test_results FINAL").result_rows[0][0]
    version = str(client.query("SELECT version()").result_rows[0][0])
    return ClickHouseSize(int(rows), int(tests), int(on_disk), int(parts), columns, int(everything), version)


_CREATE = """CREATE TABLE {table} (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL,
    test_result_id BIGINT UNSIGNED NOT NULL,
    key_timings JSON NOT NULL,
    key_errors JSON NOT NULL,
    health_score DOUBLE NULL,
    created_at DATETIME(3) NOT NULL,
    KEY idx_analytics_user_time (user_id, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"""
_INSERT = (
    "INSERT INTO {table} (user_id, test_result_id, key_timings, key_errors, health_score, created_at) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)


def mariadb_size(cursor: Any, table: str) -> tuple[int, int, int, int]:
    """(rows, keystrokes, data_length, index_length) of the scratch table, after ANALYZE TABLE."""
    cursor.execute(f"ANALYZE TABLE {table}")
    cursor.fetchall()
    cursor.execute(f"SELECT COUNT(*), COALESCE(SUM(JSON_LENGTH(key_timings)), 0) FROM {table}")
    rows, keystrokes = cursor.fetchone()
    cursor.execute(
        "SELECT data_length, index_length FROM information_schema.TABLES WHERE table_schema = DATABASE() "
        "AND table_name = %s",
        (table,),
    )
    data_length, index_length = cursor.fetchone()
    return int(rows), int(keystrokes), int(data_length), int(index_length)


def scratch_table_name() -> str:
    return f"keystroke_analytics_bench_{secrets.token_hex(4)}"


def run(
    keystrokes: int = 10_000_000,
    tests_per_user: int = 10,
    seed: int = 1,
    clickhouse_dir: str | Path | None = None,
    mariadb_url: str = DEFAULT_MARIADB_URL,
    mariadb_keystrokes: int | None = None,
    migrations_dir: Path = MIGRATIONS_DIR,
    progress: bool = True,
    table: str | None = None,
) -> StorageBenchmark:
    """Store about `keystrokes` simulated keystrokes (whole tests) in ClickHouse and MariaDB; measure both.

    `clickhouse_dir` must be a fresh chDB directory (default: a temporary one, removed afterwards);
    `mariadb_keystrokes` limits the MariaDB side to the tests of the first that many keystrokes; `table` names
    the scratch MariaDB table (default: a unique name). The scratch table is dropped in any case.
    """
    target = parse_dsn(mariadb_url)
    table = table or scratch_table_name()
    maria_limit = keystrokes if mariadb_keystrokes is None else mariadb_keystrokes
    # MariaDB first, so a wrong address fails before minutes of ClickHouse work.
    with closing(target.connect(autocommit=False)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT VERSION()")
        maria_version = str(cursor.fetchone()[0])
        cursor.execute(_CREATE.format(table=table))
        try:
            timings: dict[str, float] = {}
            ch, totals, kept = _store_in_clickhouse(
                keystrokes, tests_per_user, seed, clickhouse_dir, migrations_dir, maria_limit, progress, timings
            )
            started = time.perf_counter()
            ordinal = 1
            total = sum(batch.keystrokes for batch in kept)
            with tqdm(
                total=total, unit=" keystrokes", unit_scale=True, desc="MariaDB JSON rows", disable=not progress
            ) as bar:
                while kept:
                    batch = kept.pop(0)
                    rows = seed_rows(batch, ordinal)
                    ordinal += len(rows)
                    for start in range(0, len(rows), 200):
                        cursor.executemany(_INSERT.format(table=table), rows[start : start + 200])
                    connection.commit()
                    bar.update(batch.keystrokes)
            timings["MariaDB insert"] = time.perf_counter() - started
            maria = MariaDBSize(table, *mariadb_size(cursor, table), maria_version)
        finally:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
            connection.commit()
    stored, tests, users = totals
    return StorageBenchmark(stored, tests, users, ch, maria, timings)


def _store_in_clickhouse(
    keystrokes: int,
    tests_per_user: int,
    seed: int,
    clickhouse_dir: str | Path | None,
    migrations_dir: Path,
    maria_limit: int,
    progress: bool,
    timings: dict[str, float],
) -> tuple[ClickHouseSize, tuple[int, int, int], list[SeedBatch]]:
    """Simulate and write the keystrokes to a fresh chDB directory and measure the table; returns its size,
    (keystrokes, tests, users) and the batches the MariaDB side stores."""
    stored = tests = users = maria_keys = 0
    kept: list[SeedBatch] = []
    with fresh_chdb_directory(clickhouse_dir, "keyscope-storage-") as directory:
        client = clickhouse_client(f"chdb://{directory}")
        try:
            apply_migrations(client, migrations_dir)
            started = time.perf_counter()
            desc = "simulate → ClickHouse"
            with tqdm(total=keystrokes, unit=" keystrokes", unit_scale=True, desc=desc, disable=not progress) as bar:
                for batch in simulated_batches(keystrokes, tests_per_user, seed):
                    write_tables(client, batch.tables)
                    n = batch.tables.keystrokes.num_rows
                    stored += n
                    tests += len(batch.tests)
                    users = max(users, *(t.user_id for t in batch.tests))
                    if maria_keys < maria_limit:
                        kept.append(SeedBatch.of(batch, maria_limit - maria_keys))
                        maria_keys += kept[-1].keystrokes
                    bar.update(n)
            timings["simulate + analyse + ClickHouse insert"] = time.perf_counter() - started
            started = time.perf_counter()
            if progress:
                print("OPTIMIZE TABLE keystrokes FINAL …", flush=True)
            client.command("OPTIMIZE TABLE keystrokes FINAL")
            timings["OPTIMIZE FINAL"] = time.perf_counter() - started
            size = clickhouse_size(client)
        finally:
            client.close()
    return size, (stored, tests, users), kept


@contextmanager
def fresh_chdb_directory(clickhouse_dir: str | Path | None, prefix: str) -> Iterator[Path]:
    """`clickhouse_dir`, refused unless empty or absent, or a temporary directory removed afterwards."""
    if clickhouse_dir is None:
        directory = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    directory = Path(clickhouse_dir).resolve()
    if directory.exists() and any(directory.iterdir()):
        raise ValueError(f"{directory} is not empty; the benchmark needs a fresh chDB directory")
    yield directory


def print_report(result: StorageBenchmark) -> None:
    ch, maria = result.clickhouse, result.mariadb
    print(
        f"\nbytes per keystroke on disk: {result.keystrokes:,} simulated keystrokes, {result.tests:,} tests "
        f"of {result.users:,} typists"
    )
    print_table(result.rows())
    if maria.keystrokes < result.keystrokes:
        print(
            f"  * MariaDB measured on the first {maria.keystrokes:,} keystrokes ({maria.rows:,} tests); its "
            "bytes per keystroke are taken to hold for the whole run"
        )
    print(
        f"  ClickHouse {ch.version}: {ch.parts} active part(s) of `keystrokes` after OPTIMIZE FINAL; every "
        f"keyscope table (results, per-key/pair stats, daily MVs too): {ch.all_tables_bytes / ch.rows:.3f} "
        "bytes/keystroke"
    )
    print(
        f"  MariaDB {maria.version}: InnoDB data_length {maria.data_length:,} + index_length "
        f"{maria.index_length:,} after ANALYZE TABLE"
    )
    print("\nClickHouse `keystrokes` by column:")
    print_table(result.column_rows(), numeric_from=3)
    if result.timings_s:
        print("\ntimings: " + ", ".join(f"{name} {seconds:,.1f} s" for name, seconds in result.timings_s.items()))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keystrokes",
        type=int,
        default=10_000_000,
        help="keystrokes to simulate and store, whole tests (default 10,000,000)",
    )
    parser.add_argument("--tests", type=int, default=10, help="tests per typist (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    add_clickhouse_dir_argument(parser)
    parser.add_argument(
        "--mariadb",
        default=DEFAULT_MARIADB_URL,
        help=f"MariaDB for the seed's keystroke_analytics table (default {DEFAULT_MARIADB_URL})",
    )
    parser.add_argument(
        "--mariadb-keystrokes",
        type=int,
        metavar="N",
        help="store only the tests of the first N keystrokes in MariaDB; its bytes per keystroke then stand for the "
        "whole run (default: all)",
    )


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """`keyscope bench storage`: in-process chDB and the machine's MariaDB, no stack."""
    maria_subset = "all" if args.mariadb_keystrokes is None else f"{args.mariadb_keystrokes:,}"
    print(
        f"keyscope bench storage: keystrokes={args.keystrokes:,} tests per typist={args.tests} seed={args.seed} "
        f"clickhouse=chdb://{args.clickhouse_dir or '<fresh temporary directory>'} mariadb={args.mariadb} "
        f"mariadb keystrokes={maria_subset}"
    )
    print_report(
        run(
            keystrokes=args.keystrokes,
            tests_per_user=args.tests,
            seed=args.seed,
            clickhouse_dir=args.clickhouse_dir,
            mariadb_url=args.mariadb,
            mariadb_keystrokes=args.mariadb_keystrokes,
        )
    )
    return 0
