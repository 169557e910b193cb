"""ClickHouse's HTTP interface over one chDB data directory.

chDB is the real ClickHouse engine in process but has no server mode, and one data directory can be
open in one process only. This process owns the directory and answers the HTTP interface on
127.0.0.1 so every other process reaches ClickHouse with `clickhouse_connect.get_client(host=...,
port=...)` exactly as it would reach a real server.

What it speaks: `GET /ping`; queries in the `query` URL parameter, the body, or a multipart form
(with external tables); `param_*` bind parameters; settings as URL parameters (per query, like the
server); `database` and `default_format`; gzip/deflate/zstd/lz4/xz/bz2 request bodies; sessions
(`session_id`: SET, USE and temporary tables persist); INSERT data streamed into the engine in
constant memory; errors as `Code: N. DB::Exception: ... (NAME)` with ClickHouse's HTTP statuses.
Responses are never compressed (loopback), which every client accepts.

Run: python -m devstack.clickhouse_endpoint --data-dir DIR [--host 127.0.0.1] [--port 8123]
"""

from __future__ import annotations

import argparse
import bz2
import email.message
import errno
import fcntl
import json
import logging
import lzma
import re
import signal
import socket
import socketserver
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import chdb
import lz4.frame

try:  # Python 3.14 ships zstd; older interpreters use the backport clickhouse-connect also uses
    from compression import zstd as _zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd as _zstd

logger = logging.getLogger("devstack.clickhouse_endpoint")

DEFAULT_PORT = 8123
MAX_BODY_BYTES = 512 * 1024 * 1024
# ClickHouse parses at most max_query_size (256 KiB) of a query; INSERT data beyond that is data.
QUERY_PREFIX_BYTES = 256 * 1024
READ_CHUNK = 1024 * 1024
DEFAULT_SESSION_TIMEOUT_S = 60
MAX_SESSION_TIMEOUT_S = 3600

# URL parameters the HTTP layer consumes; the rest are ClickHouse settings for the query.
_TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "query_id", "session_id", "session_timeout", "session_check",
    "compress", "decompress", "enable_http_compression", "wait_end_of_query", "user", "password", "quota_key",
    "buffer_size", "client_protocol_version", "role", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close", "stacktrace",
    "http_native_compression_disable_checksumming_on_decompress", "add_http_cors_header",
})
# Statements that produce a result set; only these get X-ClickHouse-Format, which is how
# clickhouse-connect's command() tells "empty result" from "no result".
_RESULT_KEYWORDS = frozenset({
    "SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "CHECK", "FROM",
})
# GET implies readonly on a real server; these are what readonly=2 lets through.
_GET_KEYWORDS = _RESULT_KEYWORDS | {"SET", "USE"}
# exceptionCodeToHTTPStatus.cpp (ClickHouse 26.9), keyed by error name; everything else is 500.
_HTTP_STATUS_BY_NAME: dict[str, int] = {
    "REQUIRED_PASSWORD": 401,
    **dict.fromkeys((
        "UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE",
        "ACCESS_DENIED"), 403),
    **dict.fromkeys((
        "BAD_ARGUMENTS", "CANNOT_COMPILE_REGEXP", "CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE",
        "CANNOT_PARSE_QUOTED_STRING", "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER",
        "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING", "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6",
        "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "CANNOT_PARSE_UUID", "DUPLICATE_COLUMN", "ILLEGAL_COLUMN",
        "UNKNOWN_ELEMENT_IN_AST", "UNKNOWN_TYPE_OF_AST_NODE", "THERE_IS_NO_COLUMN", "TOO_DEEP_AST",
        "TOO_BIG_AST", "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR", "INCORRECT_DATA", "TYPE_MISMATCH",
        "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"), 400),
    **dict.fromkeys((
        "UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE", "UNKNOWN_STORAGE",
        "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_DIRECTION_OF_SORTING", "UNKNOWN_AGGREGATE_FUNCTION",
        "UNKNOWN_FORMAT", "UNKNOWN_DATABASE_ENGINE", "UNKNOWN_TYPE_OF_QUERY", "UNKNOWN_ROLE"), 404),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    **dict.fromkeys(("SOCKET_TIMEOUT", "CANNOT_OPEN_FILE", "CANNOT_SCHEDULE_TASK"), 503),
    "HTTP_LENGTH_REQUIRED": 411,
    "TIMEOUT_EXCEEDED": 408,
    "UNSUPPORTED_MEDIA_TYPE": 415,
}
_ENGINE_ERROR_RE = re.compile(r"Code:\s*(\d+)\.")
_ERROR_NAME_RE = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")
_VERSION_TRAILER_RE = re.compile(r"\(version\s[^\n]*\)\s*$")
_SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EndpointError(RuntimeError):
    """The endpoint cannot start (data directory in use, engine failure, port taken)."""


class ClickHouseError(Exception):
    """An error in ClickHouse's shape: numeric code, symbolic name, message."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
        if not message.startswith("Code: "):
            message = f"Code: {code}. DB::Exception: {message}. ({name})"
        self.text = message

    @classmethod
    def from_engine(cls, exc: BaseException) -> ClickHouseError:
        message = str(exc)
        start = message.find("Code: ")
        if start < 0:  # not an engine exception (a bug here, or chdb's own wrapper)
            return cls(1001, "STD_EXCEPTION", message or type(exc).__name__)
        message = message[start:].strip()
        code = _ENGINE_ERROR_RE.match(message)
        names = _ERROR_NAME_RE.findall(_VERSION_TRAILER_RE.sub("", message))
        return cls(int(code.group(1)) if code else 1001, names[-1] if names else "UNKNOWN_EXCEPTION", message)

    @property
    def status(self) -> int:
        return _HTTP_STATUS_BY_NAME.get(self.name, 500)

    def body(self, version: str) -> bytes:
        text = self.text if _VERSION_TRAILER_RE.search(self.text) else f"{self.text} (version {version})"
        return (text + "\n").encode("utf-8", "replace")


class _BodyTooLarge(Exception):
    pass


# --- SQL scanning: just enough lexing to find the statement kind, an INSERT's inline data and FORMAT ---

_TOKEN_RE = re.compile(
    r"""(?P<ws>\s+)
    | (?P<comment>--[^\n]*|\#[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<quoted>'(?:[^'\\]|\\.|'')*(?:'|\Z)|"(?:[^"\\]|\\.|"")*(?:"|\Z)|`(?:[^`\\]|\\.|``)*(?:`|\Z))
    | (?P<open>[(\[{]) | (?P<close>[)\]}])
    | (?P<number>\d[\w.]*)
    | (?P<word>[^\W\d]\w*)
    | (?P<other>.)""",
    re.S | re.X,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    start: int
    end: int
    text: str
    depth: int


def _tokens(text: str) -> Iterator[_Token]:
    """Significant tokens (no whitespace or comments), with the bracket depth they sit at."""
    depth = 0
    for match in _TOKEN_RE.finditer(text):
        kind = match.lastgroup or "other"
        if kind in ("ws", "comment"):
            continue
        if kind == "close":
            depth = max(0, depth - 1)
        yield _Token(kind, match.start(), match.end(), match.group(), depth)
        if kind == "open":
            depth += 1


def _first_keyword(text: str) -> str:
    for token in _tokens(text):
        if token.kind == "word":
            return token.text.upper()
    return ""


@dataclass(frozen=True)
class _InsertSplit:
    head: str  # "INSERT INTO t (cols) [SETTINGS ...]", what chDB's streaming insert takes
    fmt: str
    data_start: int


def _split_insert(text: str) -> _InsertSplit | None:
    """Where an INSERT's inline data begins (after `FORMAT name` or `VALUES`), as ClickHouse's parser sees it.

    `text` is decoded as latin-1 so offsets are byte offsets. None when the statement carries no data."""
    tokens = _tokens(text)
    first = next(tokens, None)
    if first is None or first.kind != "word" or first.text.upper() != "INSERT":
        return None
    for token in tokens:
        if token.kind != "word" or token.depth != 0:
            continue
        keyword = token.text.upper()
        if keyword in ("SELECT", "WITH", "INFILE"):
            return None
        if keyword == "VALUES":
            return _InsertSplit(text[: token.start], "Values", token.end)
        if keyword == "FORMAT":
            name = next(tokens, None)
            if name is None or name.kind != "word":
                return None
            # ParserInsertQuery: data starts after spaces/tabs and at most one line break.
            pos = name.end
            while pos < len(text) and text[pos] in " \t\f":
                pos += 1
            if text.startswith("\r", pos):
                pos += 1
            if text.startswith("\n", pos):
                pos += 1
            return _InsertSplit(text[: token.start], name.text, pos)
    return None


def _output_format(text: str) -> str | None:
    """The trailing `FORMAT name` clause (optionally followed by SETTINGS or `;`), if the query has one."""
    top = [t for t in _tokens(text) if t.depth == 0]
    for i in range(len(top) - 2, -1, -1):
        if top[i].kind == "word" and top[i].text.upper() == "FORMAT" and top[i + 1].kind == "word":
            rest = top[i + 2:]
            ends = all(t.text == ";" for t in rest)
            if ends or (rest[0].kind == "word" and rest[0].text.upper() == "SETTINGS"):
                return top[i + 1].text
    return None


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _set_statement(settings: dict[str, str]) -> str:
    # Quoted values always parse: ClickHouse converts string literals to each setting's own type.
    return "SET " + ", ".join(f"{name} = {_quote_literal(value)}" for name, value in settings.items())


# --- request bodies ---

class _MultiFrameDecoder:
    """Streams a body of one or more compressed frames (clickhouse-connect sends an lz4 frame per block)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._decoder = factory()
        self._pending = False  # the current frame has input but no end yet

    def feed(self, data: bytes) -> bytes:
        out = []
        while data:
            try:
                out.append(self._decoder.decompress(data))
            except Exception as exc:
                raise ClickHouseError(354, "CANNOT_DECOMPRESS",
                                      f"Cannot decompress the request body: {exc}") from None
            self._pending = not self._decoder.eof
            if self._pending:
                break
            data = self._decoder.unused_data
            self._decoder = self._factory()
        return b"".join(out)

    def finish(self) -> None:
        if self._pending:
            raise ClickHouseError(354, "CANNOT_DECOMPRESS", "Truncated compressed request body")


_DECODERS: dict[str, Callable[[], Any]] = {
    "gzip": lambda: zlib.decompressobj(wbits=16 + zlib.MAX_WBITS),
    "x-gzip": lambda: zlib.decompressobj(wbits=16 + zlib.MAX_WBITS),
    "deflate": lambda: zlib.decompressobj(),
    "zstd": lambda: _zstd.ZstdDecompressor(),
    "lz4": lambda: lz4.frame.LZ4FrameDecompressor(),
    "xz": lambda: lzma.LZMADecompressor(),
    "bz2": lambda: bz2.BZ2Decompressor(),
}


class _Body:
    """The request body as raw chunks (Content-Length or chunked) and decoded chunks, within a size cap."""

    def __init__(self, handler: BaseHTTPRequestHandler, cap: int) -> None:
        self._rfile = handler.rfile
        self._cap = cap
        encoding = (handler.headers.get("Content-Encoding") or "").strip().lower()
        if encoding in ("", "identity", "none"):
            self._factory: Callable[[], Any] | None = None
        elif encoding in _DECODERS:
            self._factory = _DECODERS[encoding]
        else:
            supported = ", ".join(_DECODERS)
            raise ClickHouseError(36, "BAD_ARGUMENTS",
                                  f"Unknown HTTP content encoding {encoding!r}. Supported: {supported}")
        self._chunked = "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower()
        length = handler.headers.get("Content-Length")
        try:
            self._length = 0 if self._chunked or not length else int(length)
        except ValueError:
            raise ClickHouseError(36, "BAD_ARGUMENTS", f"Bad Content-Length {length!r}") from None
        if self._length > cap:
            raise _BodyTooLarge()
        self.complete = not self._chunked and self._length == 0
        self._raw = self._read_raw()

    def _read_raw(self) -> Iterator[bytes]:
        total = 0
        if not self._chunked:
            remaining = self._length
            while remaining:
                data = self._rfile.read(min(remaining, READ_CHUNK))
                if not data:
                    raise ConnectionError("client closed the connection mid-body")
                remaining -= len(data)
                yield data
            self.complete = True
            return
        while True:
            line = self._rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ConnectionError(f"bad chunk header {line[:40]!r}") from None
            if size == 0:
                while self._rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self.complete = True
                return
            total += size
            if total > self._cap:
                raise _BodyTooLarge()
            while size:
                data = self._rfile.read(min(size, READ_CHUNK))
                if not data:
                    raise ConnectionError("client closed the connection mid-body")
                size -= len(data)
                yield data
            self._rfile.readline()

    def chunks(self) -> Iterator[bytes]:
        if self._factory is None:
            yield from self._raw
            return
        decoder = _MultiFrameDecoder(self._factory)
        for data in self._raw:
            out = decoder.feed(data)
            if out:
                yield out
        decoder.finish()

    def drain(self) -> None:
        """Read what the client still sends, so it reads our error response on a kept-alive connection."""
        for _ in self._raw:
            pass


def _read_up_to(chunks: Iterator[bytes], limit: int, cap: int) -> tuple[bytes, bool]:
    """Read whole chunks until `limit` bytes or the end; returns (data, exhausted)."""
    buf = bytearray()
    for data in chunks:
        buf += data
        if len(buf) > cap:
            raise _BodyTooLarge()
        if len(buf) >= limit:
            return bytes(buf), False
    return bytes(buf), True


def _parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, bytes]]:
    """Form fields and files of a multipart/form-data body (how clients send long bind parameters and
    external tables)."""
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ClickHouseError(36, "BAD_ARGUMENTS", "multipart/form-data without a boundary")
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in body.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        content = content.removesuffix(b"\r\n")
        disposition = email.message.Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            disposition[key.strip()] = value.strip()
        name = disposition.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        if disposition.get_param("filename", header="content-disposition") is not None:
            files[name] = content
        else:
            fields[name] = content.decode("utf-8")
    return fields, files


# --- the engine ---

@dataclass(frozen=True)
class _External:
    """An external table sent with the query (multipart file part): a temporary table for that query."""

    structure: str
    fmt: str
    data: bytes


@dataclass
class _Call:
    """One query, as the HTTP layer understood it."""

    method: str
    sql: bytes = b""
    insert: _InsertSplit | None = None
    data: Iterator[bytes] = field(default_factory=lambda: iter(()))
    params: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    database: str | None = None
    default_format: str | None = None
    external: dict[str, _External] = field(default_factory=dict)


@dataclass
class _Outcome:
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


class _Engine:
    """The chDB engine for one directory: a fresh connection per query, or the session's own connection.

    Connections to one path share one engine and run in parallel (chDB releases the GIL); per-connection
    state (SET, USE, temporary tables) is what gives each HTTP request or session its own context."""

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

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            with session.lock:
                session.conn.close()
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

    def run(self, call: _Call, session: _Session | None) -> _Outcome:
        if session is None:
            conn = self._connect()
            try:
                return self._run_on(conn, call)
            finally:
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

    def _run_on(self, conn: Any, call: _Call) -> _Outcome:
        try:
            if call.settings:
                conn.query(_set_statement(call.settings), "TabSeparated")
            if call.database:
                conn.query(f"USE {_quote_identifier(call.database)}", "TabSeparated")
            for name, table in call.external.items():
                quoted = _quote_identifier(name)
                create = f"CREATE TEMPORARY TABLE {quoted} ({table.structure}) ENGINE = Memory"
                conn.query(create, "TabSeparated")
                self._stream_insert(conn, f"INSERT INTO {quoted}", table.fmt, iter((table.data,)))
            if call.insert is not None:
                written, written_bytes, elapsed = self._stream_insert(conn, call.insert.head, call.insert.fmt,
                                                                      call.data)
                return _Outcome(b"", None, {"read_rows": "0", "read_bytes": "0", "written_rows": str(written),
                                            "written_bytes": str(written_bytes), "total_rows_to_read": "0",
                                            "result_rows": str(written), "result_bytes": str(written_bytes),
                                            "elapsed_ns": str(int(elapsed * 1e9))})
            return self._query(conn, call)
        except (ClickHouseError, ConnectionError, _BodyTooLarge):
            raise
        except Exception as exc:
            raise ClickHouseError.from_engine(exc) from exc
        finally:
            for name in call.external:  # a session connection outlives the query; its external tables don't
                try:
                    conn.query(f"DROP TEMPORARY TABLE IF EXISTS {_quote_identifier(name)}", "TabSeparated")
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
    def _query(conn: Any, call: _Call) -> _Outcome:
        text = call.sql.decode("latin-1")
        fmt = _output_format(text) or call.default_format or "TabSeparated"
        if fmt.lower() in ("arrowtable", "dataframe", "datastore"):  # chDB's Python-object pseudo-formats
            raise ClickHouseError(73, "UNKNOWN_FORMAT", f"Unknown format {fmt}")
        # Bytes go through untouched: client-side binding of binary values yields non-UTF-8 SQL.
        result = conn.query(call.sql, fmt, params=call.params)
        summary = {"read_rows": str(result.rows_read()), "read_bytes": str(result.bytes_read()),
                   "written_rows": str(result.rows_written()), "written_bytes": str(result.bytes_written()),
                   "total_rows_to_read": "0", "elapsed_ns": str(int(result.elapsed() * 1e9))}
        size = result.size()
        produces = size > 0 or _first_keyword(text) in _RESULT_KEYWORDS
        if not size:
            return _Outcome(b"", fmt if produces else None, summary)
        wrapper = result.get_memview()  # zero-copy view of the engine's buffer
        return _Outcome(wrapper.view(), fmt, summary, keep=(result, wrapper))

    @staticmethod
    def _snapshot(session: _Session, call: _Call) -> None:
        missing = [name for name in call.settings if name not in session.baseline]
        if missing:
            names = ", ".join(_quote_literal(name) for name in missing)
            sql = f"SELECT name, value, changed FROM system.settings WHERE name IN ({names})"
            rows = session.conn.query(sql, "JSONEachRow")
            for row in map(json.loads, rows.bytes().splitlines()):
                value = row["value"]
                if not row["changed"]:
                    session.baseline[row["name"]] = "DEFAULT"
                elif len(value) >= 2 and value[0] == value[-1] == "'":
                    session.baseline[row["name"]] = value  # an expression default, e.g. 'auto(4)'
                else:
                    session.baseline[row["name"]] = _quote_literal(value)
        if call.database and session.database is None:
            current = session.conn.query("SELECT currentDatabase()", "TabSeparated")
            session.database = current.bytes().decode().rstrip("\n")

    @staticmethod
    def _restore(session: _Session, call: _Call, succeeded: bool) -> None:
        conn = session.conn
        # Names unknown to system.settings have no baseline: the engine refused them, nothing to undo.
        baseline = session.baseline
        assignments = [f"{name} = {baseline[name]}" for name in call.settings if name in baseline]
        if assignments:
            conn.query("SET " + ", ".join(assignments), "TabSeparated")
        if call.database and session.database:
            conn.query(f"USE {_quote_identifier(session.database)}", "TabSeparated")
        if succeeded and call.insert is None and _first_keyword(call.sql.decode("latin-1")) in ("SET", "USE"):
            # The session asked for this change: re-apply it over the per-query restore above.
            conn.query(call.sql, "TabSeparated", params=call.params)
            session.baseline.clear()
            session.database = None


# --- HTTP ---

def _content_type(fmt: str | None) -> str:
    name = (fmt or "").lower()
    if name.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if name.startswith("csv"):
        return "text/csv; charset=UTF-8"
    if name.startswith("json"):
        return "application/json; charset=UTF-8"
    if name.startswith(("pretty", "vertical", "markdown", "xml")) or not name:
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not block shutdown
    engine: _Engine
    max_body_bytes: int
    display_name: str
    slow_query_s: float | None

    def __init__(self, address: tuple[str, int], engine: _Engine, max_body_bytes: int,
                 slow_query_s: float | None = None) -> None:
        super().__init__(address, _Handler)
        self.engine = engine
        self.max_body_bytes = max_body_bytes
        self.slow_query_s = slow_query_s
        self.display_name = socket.gethostname()
        self._active = 0
        self._closing = False
        self._idle = threading.Condition()

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the FQDN of the host, which can stall on reverse DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def enter(self) -> bool:
        with self._idle:
            if self._closing:
                return False
            self._active += 1
            return True

    def leave(self) -> None:
        with self._idle:
            self._active -= 1
            self._idle.notify_all()

    def close_and_wait(self, timeout_s: float) -> bool:
        """Refuse new requests and wait for in-flight ones; True when none is left."""
        with self._idle:
            self._closing = True
            return self._idle.wait_for(lambda: self._active == 0, timeout_s)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clickhouse-connect pools its connections
    server_version = "keyscope-chdb-endpoint"
    timeout = 600  # idle keep-alive connections eventually let go of their thread
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle + delayed ACK would add 40 ms
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        if not self.server.enter():
            self.close_connection = True
            self._send_error(ClickHouseError(236, "ABORTED", "The endpoint is shutting down"), "", 503)
            return
        try:
            self._route(method)
        finally:
            self.server.leave()

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        path = url.path.rstrip("/")
        if path == "/ping" or (path == "" and method == "GET" and "query" not in params):
            self.close_connection = self.close_connection or method != "GET"  # a POST body goes unread
            self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        if path != "":
            self.close_connection = True
            error = ClickHouseError(1002, "UNKNOWN_EXCEPTION", f"There is no handle {url.path}. "
                                    "Use / for queries and /ping for health checks")
            self._send_error(error, query_id, 404)
            return
        body: _Body | None = None
        try:
            body = _Body(self, self.server.max_body_bytes)
            outcome = self._execute(method, params, body)
        except _BodyTooLarge:
            self.close_connection = True  # the rest of the body is not worth reading
            error = ClickHouseError(36, "BAD_ARGUMENTS", "Request body is larger than this endpoint's limit "
                                    f"of {self.server.max_body_bytes} bytes; send smaller inserts")
            self._send_error(error, query_id, 413)
            return
        except ClickHouseError as exc:
            self._finish_body(body)
            self._send_error(exc, query_id)
            return
        except (ConnectionError, TimeoutError) as exc:
            logger.debug("client connection failed: %s", exc)
            self.close_connection = True
            return
        except Exception as exc:  # a bug here, not in the query: say so in ClickHouse's shape
            logger.exception("request failed")
            self._finish_body(body)
            self._send_error(ClickHouseError(1001, "STD_EXCEPTION", f"{type(exc).__name__}: {exc}"), query_id)
            return
        headers = {"Content-Type": _content_type(outcome.fmt),
                   "X-ClickHouse-Summary": json.dumps(outcome.summary, separators=(",", ":"))}
        if outcome.fmt is not None:
            headers["X-ClickHouse-Format"] = outcome.fmt
        self._send(200, outcome.body, headers, query_id)

    def _finish_body(self, body: _Body | None) -> None:
        if body is None:  # failed before reading it: the connection cannot be reused
            self.close_connection = True
        elif not body.complete:
            try:
                body.drain()
            except (_BodyTooLarge, ConnectionError, OSError):
                self.close_connection = True

    def _execute(self, method: str, params: dict[str, str], body: _Body) -> _Outcome:
        engine = self.server.engine
        external: dict[str, _External] = {}
        query = params.pop("query", "")
        content_type = self.headers.get("Content-Type") or ""
        chunks: Iterator[bytes]
        if content_type.lower().startswith("multipart/form-data"):
            form, _ = _read_up_to(body.chunks(), self.server.max_body_bytes + 1, self.server.max_body_bytes)
            fields, files = _parse_multipart(form, content_type)
            query = fields.pop("query", query)
            params.update(fields)
            external = self._external_tables(files, params)
            chunks = iter(())
        else:
            chunks = body.chunks()
        call = _Call(
            method=method,
            database=params.pop("database", None) or self.headers.get("X-ClickHouse-Database"),
            default_format=params.pop("default_format", None) or self.headers.get("X-ClickHouse-Format"),
            external=external,
        )
        session_id = params.get("session_id") or ""
        session_timeout = self._session_timeout(params.get("session_timeout"))
        session_check = params.get("session_check", "0") not in ("", "0", "false")
        for key, value in params.items():
            if key.startswith("param_"):
                call.params[key[6:]] = value
            elif key not in _TRANSPORT_PARAMS:
                if not _SETTING_NAME_RE.match(key):
                    raise ClickHouseError(115, "UNKNOWN_SETTING", f"Unknown setting '{key}'")
                call.settings[key] = value
        self._read_statement(call, query, chunks)
        if method == "GET" and (call.insert is not None
                                or _first_keyword(call.sql.decode("latin-1")) not in _GET_KEYWORDS):
            raise ClickHouseError(164, "READONLY", "Cannot execute query in readonly mode. For queries over "
                                  "HTTP, method GET implies readonly. You should use method POST for "
                                  "modifying queries")
        started = time.perf_counter()
        try:
            if not session_id:
                return engine.run(call, None)
            session = engine.acquire_session(session_id, session_timeout, session_check)
            try:
                return engine.run(call, session)
            finally:
                engine.release_session(session_id, session)
        finally:
            self._log_if_slow(call, time.perf_counter() - started)

    def _log_if_slow(self, call: _Call, seconds: float) -> None:
        """The endpoint's query log (chDB keeps no system.query_log): statements slower than the threshold."""
        threshold = self.server.slow_query_s
        if threshold is None or seconds < threshold:
            return
        statement = call.insert.head if call.insert is not None else call.sql.decode("utf-8", "replace")
        logger.info("query took %.0f ms: %s", seconds * 1000, " ".join(statement.split())[:300])

    def _read_statement(self, call: _Call, query: str, chunks: Iterator[bytes]) -> None:
        """Split `query param + newline + body` (how ClickHouse reads them) into SQL and INSERT data, reading
        only the start of the body: inline INSERT data streams into the engine without being buffered."""
        cap = self.server.max_body_bytes
        head = (query + "\n").encode() if query else b""
        split = _split_insert(head.decode("latin-1")) if query else None
        exhausted = False
        if split is None:  # the statement (or its data) goes on in the body
            prefix, exhausted = _read_up_to(chunks, QUERY_PREFIX_BYTES, cap)
            head += prefix
            split = _split_insert(head.decode("latin-1"))
        if split is not None and not call.params:
            call.insert = _InsertSplit(split.head.encode("latin-1").decode("utf-8", "replace"), split.fmt, 0)
            call.data = chain((head[split.data_start:],), chunks)
            return
        # Anything else is one statement; bound INSERTs run whole so the engine substitutes their parameters.
        if not exhausted:
            rest, _ = _read_up_to(chunks, cap + 1, cap - len(head))
            head += rest
        if not head.strip():
            raise ClickHouseError(62, "SYNTAX_ERROR", "Empty query")
        call.sql = head

    @staticmethod
    def _session_timeout(raw: str | None) -> float:
        if not raw:
            return DEFAULT_SESSION_TIMEOUT_S
        try:
            value = float(raw)
        except ValueError:
            raise ClickHouseError(27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
                                  f"Invalid session timeout: '{raw}'") from None
        if value > MAX_SESSION_TIMEOUT_S:
            raise ClickHouseError(36, "BAD_ARGUMENTS", f"Session timeout '{raw}' is larger than "
                                  f"max_session_timeout: {MAX_SESSION_TIMEOUT_S}")
        return value

    @staticmethod
    def _external_tables(files: dict[str, bytes], params: dict[str, str]) -> dict[str, _External]:
        """ClickHouse's external data: each file part is a temporary table described by <name>_structure
        (or <name>_types) and <name>_format."""
        tables: dict[str, _External] = {}
        for name, data in files.items():
            structure = params.pop(f"{name}_structure", None)
            types = params.pop(f"{name}_types", None)
            fmt = params.pop(f"{name}_format", None) or "TabSeparated"
            if structure is None and types is not None:
                structure = ", ".join(f"_{i} {t.strip()}" for i, t in enumerate(types.split(","), 1))
            if not structure:
                raise ClickHouseError(36, "BAD_ARGUMENTS", "Neither structure nor types have been provided "
                                      f"for external table {name}. "
                                      f"Use fields {name}_structure or {name}_types.")
            tables[name] = _External(structure, fmt, data)
        return tables

    def _send_error(self, exc: ClickHouseError, query_id: str, status: int | None = None) -> None:
        headers = {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": str(exc.code)}
        self._send(status or exc.status, exc.body(self.server.engine.version), headers, query_id)

    def _send(self, status: int, body: Any, headers: dict[str, str], query_id: str = "") -> None:
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if query_id:
                self.send_header("X-ClickHouse-Query-Id", query_id)
            self.send_header("X-ClickHouse-Timezone", self.server.engine.timezone)
            self.send_header("X-ClickHouse-Server-Display-Name", self.server.display_name)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class ClickHouseEndpoint:
    """The endpoint in a background thread: `start()`, `.url`, `stop()` (also a context manager)."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 max_body_bytes: int = MAX_BODY_BYTES, timezone: str = "UTC",
                 slow_query_ms: float | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.slow_query_s = None if slow_query_ms is None else slow_query_ms / 1000
        self.timezone = timezone
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def version(self) -> str:
        """The ClickHouse engine's version, as `SELECT version()` reports it."""
        if self._server is None:
            raise EndpointError("endpoint not started")
        return self._server.engine.version

    def start(self) -> ClickHouseEndpoint:
        if self._server is not None:
            raise EndpointError("endpoint already started")
        engine = _Engine(self.data_dir, self.timezone)
        try:
            server = _Server((self.host, self.port), engine, self.max_body_bytes, self.slow_query_s)
        except OSError as exc:
            engine.close()
            raise EndpointError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self._server = server
        self.port = server.server_address[1]  # the real one when port 0 asked for any free port
        # A short poll interval makes stop() quick; the accept loop is idle otherwise.
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        name=f"clickhouse-endpoint-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop accepting, let in-flight queries finish, then close chDB so its data is flushed."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
        if not server.close_and_wait(timeout_s):
            logger.warning("closing chDB with queries still running after %.0f s", timeout_s)
        server.engine.close()

    def __enter__(self) -> ClickHouseEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(data_dir: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                  slow_query_ms: float | None = None) -> None:
    """Run the endpoint in the foreground until SIGINT or SIGTERM, logging statements slower than
    `slow_query_ms`."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        endpoint = ClickHouseEndpoint(data_dir, host, port, slow_query_ms=slow_query_ms).start()
        logger.info("listening on %s (ClickHouse %s in chDB, data dir %s)", endpoint.url, endpoint.version,
                    endpoint.data_dir)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            endpoint.stop()
            logger.info("stopped; data flushed to %s", endpoint.data_dir)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ClickHouse HTTP interface over a chDB data directory")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--slow-query-ms", type=float, default=1000.0,
                        help="log each statement that takes at least this long (0 logs all; default 1000)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        serve_forever(args.data_dir, args.host, args.port, args.slow_query_ms)
    except EndpointError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
