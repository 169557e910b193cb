"""Migration from the seed's current architecture: its MySQL `keystroke_analytics` table → keyscope's ClickHouse.

    keyscope migrate mysql --dsn mysql://USER[:PASS]@HOST[:PORT]/DB [--table keystroke_analytics] [--batch-size N]
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m pipelines.migrate_mysql --dsn mysql://USER@HOST:PORT/DB

Every source row is one typing test. It becomes the seed's own message (README "Submission": `userId`,
`testResultId`, `timestamp`, `keyTimings`, `keyErrors`), goes through `parse_submission` exactly as a live test
does, and is analysed and stored with `build_tables` + `write_tables`, so a migrated test is stored exactly as the
same test sent to the API would be.

The source table (column names are matched without regard to case; other columns are ignored):

    primary key      one integer column (or, without a primary key, an integer `id`): read in batches in its
                     order (keyset pagination: `WHERE pk > last ORDER BY pk LIMIT n`, never OFFSET)
    user_id          integer ≥ 1
    test_result_id   optional; the test id (`testResultId`); NULL or absent: derived from the content
    key_timings      JSON array, one object per key press in order, either the seed's
                     {"key", "time": ms from the start to the press, "duration": ms held or null} or keyscope's
                     {"key", "down": ms to the press, "up": ms to the release or null}; objects of both kinds may
                     mix. "key" is one character or a named key (Backspace, Shift, …). Times must not decrease
                     and a release must not precede its press.
    key_errors       optional JSON object {key: error count} (validated, not stored: keyscope derives errors from
                     the keystrokes); NULL, `null`, `{}` and `[]` mean none
    created_at       DATETIME / TIMESTAMP (read as UTC: the session's time zone is set to +00:00) or an ISO-8601
                     string; taken as the test's start
    text             optional: the presented text; NULL or '' → the final field content stands in (as for the seed's
                     messages: uncorrected errors then read as none)
    layout, language optional; NULL → qwerty, en
    health_score     not read: keyscope computes its own health score from the keystrokes

A JSON column whose value is itself a JSON string holding the array or object (double-encoded, as some ORMs
write it) is decoded once more.

Resume: after each batch's tests and rejections are stored, the batch's last primary key is stored in ClickHouse
(`mysql_import_progress`, per source host:port/database and table; migration 0010). A run starts after the
stored key, so an interrupted migration (crash, Ctrl-C, a failed write) resumes at the first batch not recorded.
Idempotence: a test is keyed by (user_id, test_id); `write_tables` skips tests whose result row exists, and a
test whose rows reached some tables before a crash gets only its missing rows, so re-reading rows (a resumed
batch, or `--from-start`) never stores a test twice and keeps the daily aggregates exact. Rows that repeat an
earlier row's user and test id keep the first copy (as the API does) and count as already present.

Users deleted on request (tombstones, app/user_data.py) stay deleted: a row of such a user from before the
deletion finished is rejected ("was deleted on request"), as the live ingest drops such messages; a deletion that
lands while a batch is written is found by re-reading the tombstones after the write, and the user is deleted again.

Rejections: a row that cannot become a valid test (invalid JSON, a NULL required column, impossible times, an
unknown key, a test the analysis cannot take) is rejected on its own, with its primary key and the reason; the
rest of its batch is stored. Rejections are stored in ClickHouse (`mysql_import_rejections`, one row per source
row: durable next to the progress, so a crash between batches loses none; queryable after the job's process and
its files are gone), printed in the final reconciliation, and returned in the report:

    rows read = tests written + rows already present + rows rejected

Why direct to ClickHouse, not through Kafka: the rows are finished, historical tests, so nothing needs the live
path's buffering; replaying years of tests through the live topic would queue every live test behind the backlog
(the < 5 s processing target) and outlive its retention; and the resume point is one row in ClickHouse, written
with the data, instead of a position that must be kept consistent across MySQL, Kafka offsets and ClickHouse.
The code path is the live one from `parse_submission` on, so the stored rows are the same.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
from clickhouse_connect.driver.client import Client
from tqdm import tqdm

from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations
from app.clickhouse.store import write_tables
from app.codec import keystroke_errors
from app.config import MYSQL_DSN_ENV as DSN_ENV
from app.config import Settings
from app.faults import failpoint
from app.schemas import SubmissionError, TypingTest, format_started_at, parse_submission
from app.tables import TestTables, build_tables
from app.user_data import erase_user, load_tombstones
from pipelines.entry import job_main, job_parser

log = logging.getLogger("keyscope.migrate")

DEFAULT_TABLE = "keystroke_analytics"
DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 100_000
# Imported tests come from no Kafka partition: their result rows say so with this partition, and hold the source
# row's primary key as the offset.
MIGRATED_PARTITION = 2**32 - 1
PROGRESS_TABLE = "mysql_import_progress"
REJECTIONS_TABLE = "mysql_import_rejections"
# What a batch writes: where a user whose deletion raced the batch's write is deleted from again.
WRITTEN_STORES = ("clickhouse", "redis")
_DSN_SHAPE = "mysql://USER[:PASS]@HOST[:PORT]/DB"
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_$]{1,64}$")
_INTEGER_TYPES = ("tinyint", "smallint", "mediumint", "int", "integer", "bigint")
REQUIRED_COLUMNS = ("user_id", "key_timings", "created_at")
OPTIONAL_COLUMNS = ("test_result_id", "key_errors", "text", "layout", "language")
# The seed message's field names as the source table's columns, for rejection reasons.
_FIELD_COLUMNS = {
    "userId": "user_id",
    "testResultId": "test_result_id",
    "timestamp": "created_at",
    "keyTimings": "key_timings",
    "keyErrors": "key_errors",
}


class DSNError(ValueError):
    """A DSN that cannot be used; the message says what is wrong and never holds the password."""


class RowRejected(ValueError):
    """A source row that cannot become a typing test; the message names the column and the problem."""


@dataclass(frozen=True)
class MySQLSource:
    """Where the source table lives. The password is kept out of repr, str and every message."""

    user: str
    host: str
    port: int
    database: str
    password: str = field(default="", repr=False)

    @property
    def key(self) -> str:
        """What the progress is stored under: host:port/database (the same data whoever reads it)."""
        return f"{self.host}:{self.port}/{self.database}"

    def redacted(self) -> str:
        secret = ":***" if self.password else ""
        return f"mysql://{self.user}{secret}@{self.host}:{self.port}/{self.database}"

    __str__ = redacted

    def connect(self, autocommit: bool = True) -> Any:
        """A pymysql connection. Autocommit by default: the migration's batches each read the committed rows of
        their moment, no snapshot held for hours."""
        import pymysql

        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            charset="utf8mb4",
            autocommit=autocommit,
            connect_timeout=10,
            init_command="SET time_zone = '+00:00'",  # TIMESTAMP columns come back in UTC
        )


def parse_dsn(dsn: str, fallback_password: str = "") -> MySQLSource:
    """mysql://USER[:PASS]@HOST[:PORT]/DB (also mariadb://); user and password percent-decoded, port 3306 by
    default. Without a password in the DSN, `fallback_password` (Settings.mysql_password: MYSQL_PWD, the MySQL
    clients' variable) supplies one."""
    if not isinstance(dsn, str) or not dsn.strip():
        raise DSNError(f"no DSN given: expected {_DSN_SHAPE}")
    scheme, sep, _ = dsn.partition("://")
    if not sep:
        raise DSNError(f"the DSN must look like {_DSN_SHAPE} (no '://' in it)")
    if scheme.lower() not in ("mysql", "mariadb", "mysql+pymysql"):
        raise DSNError(f"the DSN scheme must be mysql:// or mariadb://, got {scheme[:20]!r}://")
    rest = dsn.partition("://")[2]
    if any(c in rest.rpartition("@")[0] for c in "/?#"):
        raise DSNError("the DSN's user or password holds '/', '?' or '#': percent-encode them (%2F, %3F, %23)")
    parts = urlsplit(dsn)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or not userinfo.partition(":")[0]:
        raise DSNError(f"the DSN names no user: expected {_DSN_SHAPE}")
    user_part, has_password, password_part = userinfo.partition(":")
    user, password = unquote(user_part), unquote(password_part) if has_password else ""
    if parts.query or parts.fragment:
        raise DSNError(
            "the DSN has a '?' or '#' part, which is not supported (in a password, percent-encode '?' as %3F and "
            "'#' as %23)"
        )
    if not hostport:
        raise DSNError(f"the DSN names no host: expected {_DSN_SHAPE}")
    try:
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raw = hostport.rsplit(":", 1)[-1] if ":" in hostport else hostport
        raise DSNError(f"the DSN port must be a number from 1 to 65535, got {raw[:20]!r}") from exc
    if not host:
        raise DSNError(f"the DSN names no host: expected {_DSN_SHAPE}")
    if port == 0:
        raise DSNError("the DSN port must be a number from 1 to 65535, got '0'")
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise DSNError(f"the DSN names no database: add /DB at the end ({_DSN_SHAPE})")
    if "/" in database or not _IDENTIFIER.fullmatch(database):
        raise DSNError(
            f"the DSN's database must be one name of letters, digits, '_' or '$' (at most 64), got {database[:70]!r}"
        )
    if not has_password:
        password = fallback_password
    return MySQLSource(user=user, host=host, port=port or 3306, database=database, password=password)


def check_table_name(table: str) -> str:
    if not isinstance(table, str) or not _IDENTIFIER.fullmatch(table):
        raise ValueError(f"--table must be a table name of letters, digits, '_' or '$' (at most 64), got {table!r}")
    return table


# --- one source row → the seed's message ---------------------------------------------------------------------


def _json_value(value: Any, column: str) -> Any:
    """A JSON column's value decoded (bytes or text; a value that decodes to a string holding JSON is decoded
    once more). NULL stays None."""
    if value is None or isinstance(value, (list, dict)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RowRejected(f"{column}: not UTF-8 text (byte {exc.start})") from exc
    if not isinstance(value, str):
        raise RowRejected(f"{column}: expected JSON text, got {type(value).__name__}")
    try:
        decoded = json.loads(value)
        if isinstance(decoded, str) and decoded.lstrip()[:1] in ("[", "{"):
            decoded = json.loads(decoded)  # double-encoded
    except json.JSONDecodeError as exc:
        raise RowRejected(f"{column}: invalid JSON ({exc.msg} at character {exc.pos})") from exc
    except RecursionError as exc:
        raise RowRejected(f"{column}: invalid JSON (nested too deeply)") from exc
    return decoded


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _key_timings(value: Any) -> list[Any]:
    """The seed's keyTimings from the column's JSON: {key, time, duration} kept, {key, down, up} converted."""
    timings = _json_value(value, "key_timings")
    if timings is None:
        raise RowRejected("key_timings: is NULL")
    if not isinstance(timings, list):
        raise RowRejected(f"key_timings: must be a JSON array of key presses, got {type(timings).__name__}")
    out: list[Any] = []
    for i, stroke in enumerate(timings):
        if isinstance(stroke, dict) and "time" not in stroke and "down" in stroke:
            down, up = stroke.get("down"), stroke.get("up")
            if _number(down) and _number(up) and up < down:
                raise RowRejected(f"key_timings[{i}].up: release ({up}) is before the press ({down})")
            duration = up - down if _number(down) and _number(up) else up
            out.append({"key": stroke.get("key"), "time": down, "duration": duration})
        else:
            out.append(stroke)  # the seed's shape, or something parse_submission will name
    return out


def _key_errors(value: Any) -> Any:
    errors = _json_value(value, "key_errors")
    return {} if errors == [] else errors


def _integer(value: Any) -> Any:
    """An integer column's value as int where it is one (DECIMAL, digits in text); anything else unchanged, for
    parse_submission to name."""
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def _timestamp(value: Any) -> str:
    """created_at as ISO-8601 UTC text: DATETIME and TIMESTAMP values are UTC (the session's zone is +00:00)."""
    if value is None:
        raise RowRejected("created_at: is NULL")
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.isoformat()
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return value  # a text column or a zero date ('0000-00-00 …'): parse_started_at names what is wrong
    raise RowRejected(f"created_at: must be a DATETIME, TIMESTAMP or ISO-8601 text, got {type(value).__name__}")


def row_to_submission(row: Mapping[str, Any]) -> dict[str, Any]:
    """The seed's message (README "Submission") for one source row, keyed by lower-case column names.
    Raises RowRejected for a row whose JSON or timestamp is unusable; the message's values are checked by
    `parse_submission`."""
    message: dict[str, Any] = {
        "userId": _integer(row.get("user_id")),
        "timestamp": _timestamp(row.get("created_at")),
        "keyTimings": _key_timings(row.get("key_timings")),
    }
    if message["userId"] is None:
        raise RowRejected("user_id: is NULL")
    test_id = _integer(row.get("test_result_id"))
    if test_id is not None:
        message["testResultId"] = test_id
    errors = _key_errors(row.get("key_errors"))
    if errors is not None:
        message["keyErrors"] = errors
    text = row.get("text")
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    if text is not None and text != "":
        message["text"] = text
    for name in ("layout", "language"):
        if row.get(name) is not None and row.get(name) != "":
            message[name] = row[name]
    return message


def _column_reason(error: SubmissionError) -> str:
    """A validation error with the seed message's field names turned back into the table's columns."""
    head, _, tail = error.field.partition("[")
    head, dot, rest = head.partition(".")
    column = _FIELD_COLUMNS.get(head, head) + (dot + rest) + ("[" + tail if tail else "")
    return f"{column}: {error.message}"


def row_to_test(row: Mapping[str, Any], max_keystrokes: int = 20_000, max_text_chars: int = 10_000) -> TypingTest:
    """One source row as a validated TypingTest; RowRejected with the column and the reason otherwise."""
    message = row_to_submission(row)
    try:
        return parse_submission(message, max_keystrokes, max_text_chars)
    except SubmissionError as exc:
        raise RowRejected(_column_reason(exc)) from exc


# --- the source table ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceTable:
    """The table's primary key and the columns read (lower-case name → the table's own spelling)."""

    name: str
    primary_key: str
    columns: dict[str, str]

    def select_list(self) -> str:
        names = [self.primary_key, *self.columns.values()]
        return ", ".join(f"`{name}`" for name in names)


def inspect_table(cursor: Any, table: str) -> SourceTable:
    """Find the primary key and the known columns; a clear error when the table cannot be migrated."""
    cursor.execute(
        "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_KEY FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        (table,),
    )
    rows = [(str(name), str(kind).lower(), str(key)) for name, kind, key in cursor.fetchall()]
    if not rows:
        cursor.execute("SELECT DATABASE()")
        raise ValueError(f"no table `{table}` in database `{cursor.fetchone()[0]}`")
    by_lower = {name.lower(): (name, kind, key) for name, kind, key in rows}
    missing = [c for c in REQUIRED_COLUMNS if c not in by_lower]
    if missing:
        raise ValueError(f"table `{table}` has no column {', '.join(missing)} (needs {', '.join(REQUIRED_COLUMNS)})")
    primary = [(name, kind) for name, kind, key in rows if key == "PRI"]
    if len(primary) > 1:
        raise ValueError(
            f"table `{table}` has a primary key of {len(primary)} columns ({', '.join(n for n, _ in primary)}); "
            "the migration pages by a single integer key"
        )
    if not primary and "id" in by_lower:
        primary = [(by_lower["id"][0], by_lower["id"][1])]
        log.warning("table `%s` has no primary key: paging by its `id` column (slow without an index)", table)
    if not primary:
        raise ValueError(f"table `{table}` has no primary key and no `id` column to page by")
    pk, kind = primary[0]
    if kind not in _INTEGER_TYPES:
        raise ValueError(f"table `{table}`'s key `{pk}` is {kind}; the migration pages by an integer key")
    columns = {c: by_lower[c][0] for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in by_lower}
    return SourceTable(table, pk, columns)


def read_batch(cursor: Any, source: SourceTable, after: int | None, limit: int) -> list[dict[str, Any]]:
    """The next `limit` rows after primary key `after` (keyset pagination), as dicts with lower-case keys and
    the primary key under `_pk`."""
    where = "" if after is None else f"WHERE `{source.primary_key}` > %s "
    cursor.execute(
        f"SELECT {source.select_list()} FROM `{source.name}` {where}ORDER BY `{source.primary_key}` LIMIT %s",
        ((after, limit) if after is not None else (limit,)),
    )
    names = ["_pk", *source.columns]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def count_after(cursor: Any, source: SourceTable, after: int | None) -> int:
    where = "" if after is None else f" WHERE `{source.primary_key}` > %s"
    cursor.execute(f"SELECT COUNT(*) FROM `{source.name}`{where}", (() if after is None else (after,)))
    return int(cursor.fetchone()[0])


# --- progress and rejections in ClickHouse ------------------------------------------------------------------


class _Clock:
    """Strictly increasing UTC times, so the ReplacingMergeTree version column orders every write of one run."""

    def __init__(self) -> None:
        self._last = datetime(1970, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        now = datetime.now(UTC)
        self._last = now if now > self._last else self._last + timedelta(microseconds=1)
        return self._last


def load_progress(client: Client, source_key: str, table: str) -> int | None:
    """The primary key of the last source row whose batch is stored; None before the first batch."""
    rows = client.query(
        f"SELECT last_id FROM {PROGRESS_TABLE} FINAL WHERE source = {{s:String}} AND source_table = {{t:String}}",
        parameters={"s": source_key, "t": table},
    ).result_rows
    return int(rows[0][0]) if rows else None


def store_progress(client: Client, source_key: str, table: str, last_id: int, when: datetime) -> None:
    client.insert(
        PROGRESS_TABLE,
        [[source_key, table, int(last_id), when]],
        column_names=["source", "source_table", "last_id", "updated_at"],
    )


def store_rejections(client: Client, source_key: str, table: str, rejections: Sequence[Rejection], when: datetime):
    if rejections:
        client.insert(
            REJECTIONS_TABLE,
            [[source_key, table, int(r.row_id), r.reason, when] for r in rejections],
            column_names=["source", "source_table", "row_id", "reason", "rejected_at"],
        )


def stored_rejections(client: Client, source_key: str, table: str) -> list[Rejection]:
    """Every rejection recorded for the source table, by row id."""
    rows = client.query(
        f"SELECT row_id, reason FROM {REJECTIONS_TABLE} FINAL WHERE source = {{s:String}} AND source_table = "
        "{t:String} ORDER BY row_id",
        parameters={"s": source_key, "t": table},
    ).result_rows
    return [Rejection(int(i), str(r)) for i, r in rows]


# --- the job ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    row_id: int
    reason: str


@dataclass
class MigrationReport:
    """What one run did. Counts cover the batches completed (stored and recorded in the progress table)."""

    source: str  # the redacted DSN
    table: str
    started_after: int | None = None  # the stored progress the run began from (None: the first row)
    last_id: int | None = None  # the primary key of the last row of the last completed batch
    batches: int = 0
    rows_read: int = 0
    tests_written: int = 0
    already_present: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    keystrokes_written: int = 0
    erased_users: list[int] = field(default_factory=list)  # deleted while their tests were being written
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.tests_written + self.already_present + len(self.rejected)

    def lines(self, max_rejections: int = 20) -> list[str]:
        """The reconciliation, as printed at the end of a run."""
        begin = "the first row" if self.started_after is None else f"after id {self.started_after}"
        status = "INTERRUPTED: rerun to resume" if self.interrupted else "done"
        check = "✓" if self.balanced else "✗ MISMATCH"
        out = [
            f"migration of {self.source} table {self.table} ({status}), from {begin}"
            + (f" to id {self.last_id}" if self.last_id is not None else "")
            + f", {self.batches} batch{'' if self.batches == 1 else 'es'} in {self.seconds:.1f} s:",
            f"  rows read             {self.rows_read:>12,}",
            f"  tests written         {self.tests_written:>12,}   ({self.keystrokes_written:,} keystrokes)",
            f"  rows already present  {self.already_present:>12,}   (stored before, or repeating an earlier row's "
            "user and test id)",
            f"  rows rejected         {len(self.rejected):>12,}",
            f"  read = written + present + rejected: {self.rows_read:,} = {self.tests_written:,} + "
            f"{self.already_present:,} + {len(self.rejected):,} {check}",
        ]
        if self.erased_users:
            out.append(
                f"  {len(self.erased_users)} users were deleted on request while their tests were written: "
                "deleted again (their written tests count as written)"
            )
        if self.rejected:
            out.append(f"  rejected rows (all of them are in ClickHouse table {REJECTIONS_TABLE}):")
            out.extend(f"    id {r.row_id}: {r.reason}" for r in self.rejected[:max_rejections])
            if len(self.rejected) > max_rejections:
                out.append(
                    f"    … and {len(self.rejected) - max_rejections:,} more: SELECT row_id, reason FROM "
                    f"{REJECTIONS_TABLE} FINAL WHERE source_table = '{self.table}' ORDER BY row_id"
                )
        return out


@dataclass
class _Batch:
    rows_read: int = 0
    tests_written: int = 0
    already_present: int = 0
    keystrokes_written: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    users: list[int] = field(default_factory=list)
    erased_users: list[int] = field(default_factory=list)


def _analysable(tests: list[TypingTest], ids: list[int]) -> tuple[TestTables | None, dict[int, str]]:
    """The batch's storage tables, and id → reason for tests the analysis fails on (found by bisection, so a
    healthy batch costs one call)."""

    def build(part: list[TypingTest], part_ids: list[int]) -> TestTables:
        offsets = np.array([max(i, 0) for i in part_ids], dtype=np.uint64)
        return build_tables(part, np.full(len(part), MIGRATED_PARTITION, dtype=np.uint32), offsets)

    def good(part: list[TypingTest], part_ids: list[int]) -> tuple[list[TypingTest], list[int], dict[int, str]]:
        try:
            build(part, part_ids)
            return part, part_ids, {}
        except Exception as exc:
            if len(part) == 1:
                return [], [], {part_ids[0]: f"analysis failed: {type(exc).__name__}: {exc}"}
        middle = len(part) // 2
        left, right = good(part[:middle], part_ids[:middle]), good(part[middle:], part_ids[middle:])
        return left[0] + right[0], left[1] + right[1], {**left[2], **right[2]}

    if not tests:
        return None, {}
    try:
        return build(tests, ids), {}
    except Exception:
        kept, kept_ids, failed = good(tests, ids)
        return (build(kept, kept_ids) if kept else None), failed


def migrate_batch(
    client: Client,
    rows: list[dict[str, Any]],
    source_key: str,
    table: str,
    *,
    max_keystrokes: int,
    max_text_chars: int,
    clock: _Clock,
    erase_users: Callable[[list[int]], None] | None = None,
) -> _Batch:
    """Validate, analyse and store one batch: every good row's test is stored, every bad row rejected.

    Users deleted on request (app/user_data.py tombstones) keep the erasure: a row of theirs from before the
    deletion finished is rejected, as the ingest job drops such messages. A deletion that lands while the batch is
    written is found by reading the tombstones again afterwards; `erase_users` then deletes those users again
    (without it, that is an error)."""
    batch = _Batch(rows_read=len(rows))
    tests: list[TypingTest] = []
    ids: list[int] = []
    seen: set[tuple[int, str]] = set()
    for row in rows:
        try:
            test = row_to_test(row, max_keystrokes, max_text_chars)
        except RowRejected as exc:
            batch.rejected.append(Rejection(int(row["_pk"]), str(exc)))
            continue
        if (test.user_id, test.test_id) in seen:  # the first copy wins, as on the API
            batch.already_present += 1
            continue
        seen.add((test.user_id, test.test_id))
        tests.append(test)
        ids.append(int(row["_pk"]))
    impossible = keystroke_errors(tests)  # what parse_submission lets through but storage cannot hold
    if impossible:
        batch.rejected.extend(Rejection(ids[i], f"key_timings: {reason}") for i, reason in impossible.items())
        keep = [i for i in range(len(tests)) if i not in impossible]
        tests, ids = [tests[i] for i in keep], [ids[i] for i in keep]
    tombstones = load_tombstones(client, {t.user_id for t in tests})
    if tombstones:
        erased = {i for i, t in enumerate(tests) if t.started_at_ms <= tombstones.get(t.user_id, -1)}
        batch.rejected.extend(
            Rejection(
                ids[i],
                f"user_id: user {tests[i].user_id} was deleted on request "
                f"({format_started_at(tombstones[tests[i].user_id])}); earlier tests are not imported",
            )
            for i in sorted(erased)
        )
        keep = [i for i in range(len(tests)) if i not in erased]
        tests, ids = [tests[i] for i in keep], [ids[i] for i in keep]
    tables, failed = _analysable(tests, ids)
    batch.rejected.extend(Rejection(i, reason) for i, reason in failed.items())
    batch.rejected.sort(key=lambda r: r.row_id)
    store_rejections(client, source_key, table, batch.rejected, clock.now())
    if tables is not None:
        written = write_tables(client, tables)
        batch.tests_written = written.results.num_rows
        batch.keystrokes_written = written.keystrokes.num_rows
        batch.already_present += tables.results.num_rows - written.results.num_rows
        batch.users = sorted(set(written.results.column("user_id").to_pylist()))
        fresh = load_tombstones(client, batch.users) if batch.users else {}
        raced = sorted(u for u, deleted_ms in fresh.items() if deleted_ms != tombstones.get(u))
        if raced:
            if erase_users is None:
                raise RuntimeError(f"users {raced} were deleted while their tests were written: delete them again")
            log.warning("users %s were deleted while their tests were written: deleting them again", raced)
            erase_users(raced)
            batch.erased_users = raced
            batch.users = [u for u in batch.users if u not in raced]
    return batch


def migrate(
    client: Client,
    source: MySQLSource,
    table: str = DEFAULT_TABLE,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    from_start: bool = False,
    max_keystrokes: int = 20_000,
    max_text_chars: int = 10_000,
    progress: bool | None = None,
    on_written: Callable[[list[int]], None] = lambda users: None,
    erase_users: Callable[[list[int]], None] | None = None,
) -> MigrationReport:
    """Import the source table into the ClickHouse database of `client` (migrations applied), batch by batch.

    Starts after the stored progress (`from_start`: at the first row); each batch is stored, then its last key.
    A KeyboardInterrupt ends the run with `interrupted` set and the counts of the completed batches.
    `on_written(user_ids)` is called with the users whose tests a batch stored (the CLI drops their cached insights);
    `erase_users(user_ids)` deletes again users whose deletion on request raced a batch's write (see `migrate_batch`).
    Fault points (app/faults.py): `mid_write` (in `write_tables`: a batch's raw keystrokes are in, its other tables
    not) and `migrate_after_batch` (a batch's progress is stored)."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE:,}, got {batch_size}")
    check_table_name(table)
    started = time.perf_counter()
    clock = _Clock()
    report = MigrationReport(source.redacted(), table)
    with closing(source.connect()) as connection, connection.cursor() as cursor:
        shape = inspect_table(cursor, table)
        after = None if from_start else load_progress(client, source.key, table)
        report.started_after = after
        total = count_after(cursor, shape, after)
        log.info("migrating %d rows of %s table %s %s", total, source, table, f"after id {after}" if after else "")
        quiet = None if progress is None else not progress  # None: a bar only on a terminal
        bar = tqdm(total=total, unit=" rows", desc=f"migrate {table}", disable=quiet)
        try:
            while True:
                rows = read_batch(cursor, shape, after, batch_size)
                if not rows:
                    break
                batch = migrate_batch(
                    client,
                    rows,
                    source.key,
                    table,
                    max_keystrokes=max_keystrokes,
                    max_text_chars=max_text_chars,
                    clock=clock,
                    erase_users=erase_users,
                )
                after = int(rows[-1]["_pk"])
                store_progress(client, source.key, table, after, clock.now())
                report.batches += 1
                report.last_id = after
                report.rows_read += batch.rows_read
                report.tests_written += batch.tests_written
                report.already_present += batch.already_present
                report.keystrokes_written += batch.keystrokes_written
                report.rejected.extend(batch.rejected)
                report.erased_users.extend(batch.erased_users)
                bar.update(batch.rows_read)
                if batch.users:
                    on_written(batch.users)
                failpoint(None, "migrate_after_batch")
                if len(rows) < batch_size:
                    break
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            bar.close()
    report.seconds = time.perf_counter() - started
    return report


def _drop_cached_insights(settings: Settings) -> Callable[[list[int]], None]:
    """Best effort: a migrated user's cached insights are stale, but an unreachable Redis must not stop the job
    (cached insights expire within KEYSCOPE_INSIGHTS_TTL_S anyway)."""
    warned = False

    def drop(users: list[int]) -> None:
        nonlocal warned
        try:
            from app.cache import invalidate_users

            invalidate_users(settings, users)
        except Exception as exc:
            if not warned:
                log.warning("could not drop cached insights in Redis (%s); they expire on their own", exc)
                warned = True

    return drop


def _erase_again(settings: Settings) -> Callable[[list[int]], None]:
    def erase(users: list[int]) -> None:
        for user_id in users:
            erase_user(settings, user_id, WRITTEN_STORES)

    return erase


def run_migration(
    settings: Settings,
    dsn: str,
    table: str = DEFAULT_TABLE,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    from_start: bool = False,
    progress: bool | None = None,
) -> MigrationReport:
    """The job as the CLI and `python -m` run it: ClickHouse from the settings, migrations applied first."""
    source = parse_dsn(dsn, settings.mysql_password)
    check_table_name(table)
    client = clickhouse_client(settings.clickhouse_url)
    try:
        apply_migrations(client)
        return migrate(
            client,
            source,
            table,
            batch_size=batch_size,
            from_start=from_start,
            max_keystrokes=settings.max_keystrokes,
            max_text_chars=settings.max_text_chars,
            progress=progress,
            on_written=_drop_cached_insights(settings),
            erase_users=_erase_again(settings),
        )
    finally:
        client.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The job's flags, for `python -m pipelines.migrate_mysql` and `keyscope migrate mysql` alike."""
    parser.add_argument(
        "--dsn",
        help=f"the source database, {_DSN_SHAPE} (default: ${DSN_ENV}; a password left out of the DSN is taken "
        "from $MYSQL_PWD)",
    )
    parser.add_argument("--table", default=DEFAULT_TABLE, help=f"the source table (default {DEFAULT_TABLE})")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"rows read, analysed and stored at a time, 1 to {MAX_BATCH_SIZE:,} (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--from-start",
        action="store_true",
        help="ignore the stored progress and read from the first row (stored tests are skipped, not duplicated)",
    )


def report_exit_code(report: MigrationReport) -> int:
    """0 when the run finished and reconciles (rejections are reported, not failures), 130 when interrupted."""
    if report.interrupted:
        return 130
    return 0 if report.balanced else 1


def run(settings: Settings, args: argparse.Namespace) -> int:
    """One migration as the flags ask (the DSN from --dsn, else Settings.mysql_dsn); prints the reconciliation."""
    dsn = args.dsn or settings.mysql_dsn
    if not dsn:
        raise ValueError(f"--dsn is required (or set {DSN_ENV}): {_DSN_SHAPE}")
    report = run_migration(settings, dsn, args.table, batch_size=args.batch_size, from_start=args.from_start)
    print("\n".join(report.lines()))
    return report_exit_code(report)


DESCRIPTION = (
    "Import the seed's MySQL keystroke_analytics table (JSON columns) into keyscope's ClickHouse tables "
    "(CLICKHOUSE_URL) in batches, resumably and idempotently, resuming after the last stored batch. Ends with a "
    "reconciliation: rows read = tests written + rows already present + rows rejected (see README, Migrating from "
    "the MySQL table)."
)


def main(argv: Iterable[str] | None = None) -> int:
    parser = job_parser("python -m pipelines.migrate_mysql", DESCRIPTION, add_arguments)
    try:
        return job_main(parser, run, argv)
    except Exception as exc:  # the reason, not a traceback (no message here carries the password)
        import pymysql

        if not isinstance(exc, (ValueError, pymysql.err.Error)):
            raise
        print(f"migrate_mysql: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
