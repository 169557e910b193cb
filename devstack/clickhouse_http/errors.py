"""Errors in ClickHouse's shape: `ClickHouseError` (code, name, `Code: N. DB::Exception: ...` text) with the
HTTP status the server answers each name with, `EndpointError` when the endpoint cannot start, and
`BodyTooLarge` when a request body passes the endpoint's limit."""

from __future__ import annotations

import re

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


class BodyTooLarge(Exception):
    """The request body is larger than the endpoint accepts."""
