"""The chDB engine behind the endpoint: one engine per data directory (refused clearly when another process
holds it), a fresh connection per query or a session's own connection, the query as the HTTP layer
understood it (`Call`) and what it produced (`Outcome`)."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chdb

from devstack.clickhouse_http.errors import BodyTooLarge, ClickHouseError, EndpointError
from devstack.clickhouse_http.sql import (
    RESULT_KEYWORDS,
    InsertSplit,
    first_keyword,
    output_format,
    quote_identifier,
    quote_literal,
    set_statement,
)

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class External:
    """An external table sent with the query (multipart file part): a temporary table for that query."""

    structure: str
    fmt: str
    data: bytes


@dataclass
class Call:
    """One query, as the HTTP layer understood it."""

    method: str
    sql: bytes = b""
    insert: InsertSplit | None = None
    data: Iterator[bytes] = field(default_factory=lambda: iter(()))
    params: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    database: str | None = None
    default_format: str | None = None
    external: dict[str, External] = field(default_factory=dict)


@dataclass
class Outcome:
    body: Any  # bytes or a memoryview kept alive by `keep`
    fmt: str | None
    summary: dict[str, str]
    keep: Any = None


@dataclass
class _Session:
    conn: Any
    timeout_s: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    expires_at: float = 0.0
    broken: bool = False  # per-query settings could not be restored: never reuse it
    # The session's own value of each setting a request has overridden, as a SET right-hand side. Reading
    # system.settings costs ~3 ms, so it is read once per name and forgotten only when the session runs SET.
    baseline: dict[str, str] = field(default_factory=dict)
    database: str | None = None  # the session's current database, read when a request first overrides it


def _check_unlocked(data_dir: Path) -> None:
    """Fail clearly when another process owns the directory; chDB itself reports only
    'Error initializing EmbeddedServer'. ClickHouse holds an flock on <dir>/status while open."""
    status = data_dir / "status"
    try:
        fd = open(status, "rb")  # noqa: SIM115 - released right below
    except FileNotFoundError:
        return
    with fd:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            owner = fd.read().decode("utf-8", "replace").strip().replace("\n", "; ")
            raise EndpointError(f"ClickHouse data directory {data_dir} is in use by another process "
                                f"(chDB holds a lock on {status}: {owner})") from None
        fcntl.flock(fd, fcntl.LOCK_UN)


# Idle connections kept per (settings, database) of sessionless requests, and how many such kinds at most.
POOL_PER_KIND = 8
POOL_KINDS = 32


class Engine:
    """The chDB engine for one directory: a pooled connection per sessionless query, or the session's own connection.

    Connections to one path share one engine and run in parallel (chDB releases the GIL); per-connection
    state (SET, USE, temporary tables) is what gives each HTTP request or session its own context. A sessionless
    request gets an idle connection already set up with its URL settings and database, so it costs one engine query
    instead of a connect, a SET, a USE and a close (clickhouse-connect sends the same settings on every request); a
    connection goes back to the pool only after a query that cannot change its state (a read or an insert)."""

    def __init__(self, data_dir: Path, timezone: str) -> None:
        if "?" in str(data_dir):
            raise EndpointError(f"data directory path must not contain '?': {data_dir}")
        data_dir.mkdir(parents=True, exist_ok=True)
        _check_unlocked(data_dir)
        # The session time zone rides in the connection string, so every connection gets it for free.
        self._conn_string = f"{data_dir}?session_timezone={timezone}"
        try:
            self._anchor = chdb.connect(self._conn_string)  # holds the engine (and its lock) open
        except Exception as exc:
            raise EndpointError(f"cannot open chDB at {data_dir}: {exc}") from exc
        try:
            probe = self._anchor.query("SELECT version(), timezone()", "TabSeparated")
            version, tz = probe.bytes().decode().split()
        except Exception:
            self._anchor.close()
            raise
        self.version = version
        self.timezone = tz
        self._sessions: dict[str, _Session] = {}
        self._sessions_lock = threading.Lock()
        self._pool: dict[tuple, list[Any]] = {}
        self._pool_lock = threading.Lock()

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            with session.lock:
                session.conn.close()
        with self._pool_lock:
            pooled, self._pool = [c for idle in self._pool.values() for c in idle], {}
        for conn in pooled:
            conn.close()
        self._anchor.close()  # last connection: chDB shuts the engine down and flushes

    # sessions ---------------------------------------------------------

    def acquire_session(self, session_id: str, timeout_s: float, check: bool) -> _Session:
        now = time.monotonic()
        expired = []
        with self._sessions_lock:
            for sid, session in list(self._sessions.items()):
                if session.expires_at < now and session.lock.acquire(blocking=False):
                    expired.append(self._sessions.pop(sid))
            session = self._sessions.get(session_id)
            if session is None:
                if check:
                    raise ClickHouseError(372, "SESSION_NOT_FOUND", f"Session {session_id} not found")
                session = self._sessions[session_id] = _Session(self._connect(), timeout_s)
            if not session.lock.acquire(blocking=False):
                raise ClickHouseError(373, "SESSION_IS_LOCKED",
                                      f"Session {session_id} is locked by a concurrent client")
            session.timeout_s = timeout_s
        for stale in expired:
            stale.conn.close()
        return session

    def release_session(self, session_id: str, session: _Session) -> None:
        if session.broken:
            with self._sessions_lock:
                if self._sessions.get(session_id) is session:
                    del self._sessions[session_id]
            session.conn.close()
        session.expires_at = time.monotonic() + session.timeout_s
        session.lock.release()

    # queries ----------------------------------------------------------

    def _connect(self) -> Any:
        return chdb.connect(self._conn_string)

    def _take(self, kind: tuple) -> Any | None:
        with self._pool_lock:
            idle = self._pool.get(kind)
            return idle.pop() if idle else None

    def _give_back(self, kind: tuple, conn: Any) -> None:
        with self._pool_lock:
            idle = self._pool.get(kind)
            if idle is None and len(self._pool) < POOL_KINDS:
                idle = self._pool[kind] = []
            if idle is not None and len(idle) < POOL_PER_KIND:
                idle.append(conn)
                return
        conn.close()

    def run(self, call: Call, session: _Session | None) -> Outcome:
        if session is None:
            kind = (tuple(sorted(call.settings.items())), call.database)
            conn = self._take(kind)
            prepared = conn is not None
            conn = conn or self._connect()
            reusable = False
            try:
                outcome = self._run_on(conn, call, prepared=prepared)
                reusable = not call.external and (
                    call.insert is not None or first_keyword(call.sql.decode("latin-1")) in RESULT_KEYWORDS
                )
                return outcome
            finally:
                if reusable:
                    self._give_back(kind, conn)
                else:
                    conn.close()
        # URL settings and `database` apply to this query only, as on the server; SET/USE persist.
        try:
            self._snapshot(session, call)
        except Exception as exc:
            raise ClickHouseError.from_engine(exc) from exc
        succeeded = False
        try:
            outcome = self._run_on(session.conn, call)
            succeeded = True
            return outcome
        finally:
            try:
                self._restore(session, call, succeeded)
            except Exception:
                logger.warning("could not restore a session's settings; dropping the session", exc_info=True)
                session.broken = True

    def _run_on(self, conn: Any, call: Call, *, prepared: bool = False) -> Outcome:
        """Run `call` on `conn`; `prepared`: the connection already has the call's settings and database."""
        try:
            if call.settings and not prepared:
                conn.query(set_statement(call.settings), "TabSeparated")
            if call.database and not prepared:
                conn.query(f"USE {quote_identifier(call.database)}", "TabSeparated")
            for name, table in call.external.items():
                quoted = quote_identifier(name)
                create = f"CREATE TEMPORARY TABLE {quoted} ({table.structure}) ENGINE = Memory"
                conn.query(create, "TabSeparated")
                self._stream_insert(conn, f"INSERT INTO {quoted}", table.fmt, iter((table.data,)))
            if call.insert is not None:
                written, written_bytes, elapsed = self._stream_insert(conn, call.insert.head, call.insert.fmt,
                                                                      call.data)
                return Outcome(b"", None, {"read_rows": "0", "read_bytes": "0", "written_rows": str(written),
                                            "written_bytes": str(written_bytes), "total_rows_to_read": "0",
                                            "result_rows": str(written), "result_bytes": str(written_bytes),
                                            "elapsed_ns": str(int(elapsed * 1e9))})
            return self._query(conn, call)
        except (ClickHouseError, ConnectionError, BodyTooLarge):
            raise
        except Exception as exc:
            raise ClickHouseError.from_engine(exc) from exc
        finally:
            for name in call.external:  # a session connection outlives the query; its external tables don't
                try:
                    conn.query(f"DROP TEMPORARY TABLE IF EXISTS {quote_identifier(name)}", "TabSeparated")
                except Exception:
                    logger.debug("dropping external table %s failed", name, exc_info=True)

    @staticmethod
    def _stream_insert(conn: Any, head: str, fmt: str, data: Iterator[bytes]) -> tuple[int, int, float]:
        inserter = conn.send_insert(head, fmt)
        try:
            for chunk in data:
                if chunk:
                    inserter.append(chunk)
        except BaseException:
            try:
                inserter.cancel()
            except Exception:
                logger.debug("cancelling an insert failed", exc_info=True)
            raise
        result = inserter.finish()
        return result.rows_written, result.bytes_written, result.elapsed

    @staticmethod
    def _query(conn: Any, call: Call) -> Outcome:
        text = call.sql.decode("latin-1")
        fmt = output_format(text) or call.default_format or "TabSeparated"
        if fmt.lower() in ("arrowtable", "dataframe", "datastore"):  # chDB's Python-object pseudo-formats
            raise ClickHouseError(73, "UNKNOWN_FORMAT", f"Unknown format {fmt}")
        # Bytes go through untouched: client-side binding of binary values yields non-UTF-8 SQL.
        result = conn.query(call.sql, fmt, params=call.params)
        summary = {"read_rows": str(result.rows_read()), "read_bytes": str(result.bytes_read()),
                   "written_rows": str(result.rows_written()), "written_bytes": str(result.bytes_written()),
                   "total_rows_to_read": "0", "elapsed_ns": str(int(result.elapsed() * 1e9))}
        size = result.size()
        produces = size > 0 or first_keyword(text) in RESULT_KEYWORDS
        if not size:
            return Outcome(b"", fmt if produces else None, summary)
        wrapper = result.get_memview()  # zero-copy view of the engine's buffer
        return Outcome(wrapper.view(), fmt, summary, keep=(result, wrapper))

    @staticmethod
    def _snapshot(session: _Session, call: Call) -> None:
        missing = [name for name in call.settings if name not in session.baseline]
        if missing:
            names = ", ".join(quote_literal(name) for name in missing)
            sql = f"SELECT name, value, changed FROM system.settings WHERE name IN ({names})"
            rows = session.conn.query(sql, "JSONEachRow")
            for row in map(json.loads, rows.bytes().splitlines()):
                value = row["value"]
                if not row["changed"]:
                    session.baseline[row["name"]] = "DEFAULT"
                elif len(value) >= 2 and value[0] == value[-1] == "'":
                    session.baseline[row["name"]] = value  # an expression default, e.g. 'auto(4)'
                else:
                    session.baseline[row["name"]] = quote_literal(value)
        if call.database and session.database is None:
            current = session.conn.query("SELECT currentDatabase()", "TabSeparated")
            session.database = current.bytes().decode().rstrip("\n")

    @staticmethod
    def _restore(session: _Session, call: Call, succeeded: bool) -> None:
        conn = session.conn
        # Names unknown to system.settings have no baseline: the engine refused them, nothing to undo.
        baseline = session.baseline
        assignments = [f"{name} = {baseline[name]}" for name in call.settings if name in baseline]
        if assignments:
            conn.query("SET " + ", ".join(assignments), "TabSeparated")
        if call.database and session.database:
            conn.query(f"USE {quote_identifier(session.database)}", "TabSeparated")
        if succeeded and call.insert is None and first_keyword(call.sql.decode("latin-1")) in ("SET", "USE"):
            # The session asked for this change: re-apply it over the per-query restore above.
            conn.query(call.sql, "TabSeparated", params=call.params)
            session.baseline.clear()
            session.database = None
