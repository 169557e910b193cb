"""SQL scanning: just enough lexing to find a statement's kind, an INSERT's inline data and its output FORMAT,
and the quoting that builds the SET/USE statements the engine runs for a request's settings and database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# Statements that produce a result set; only these get X-ClickHouse-Format, which is how
# clickhouse-connect's command() tells "empty result" from "no result".
RESULT_KEYWORDS = frozenset({
    "SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "CHECK", "FROM",
})
# GET implies readonly on a real server; these are what readonly=2 lets through.
GET_KEYWORDS = RESULT_KEYWORDS | {"SET", "USE"}
# Setting names go into SET unquoted, so only plain identifiers are let through.
SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

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


def first_keyword(text: str) -> str:
    for token in _tokens(text):
        if token.kind == "word":
            return token.text.upper()
    return ""


@dataclass(frozen=True)
class InsertSplit:
    head: str  # "INSERT INTO t (cols) [SETTINGS ...]", what chDB's streaming insert takes
    fmt: str
    data_start: int


def split_insert(text: str) -> InsertSplit | None:
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
            return InsertSplit(text[: token.start], "Values", token.end)
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
            return InsertSplit(text[: token.start], name.text, pos)
    return None


def output_format(text: str) -> str | None:
    """The trailing `FORMAT name` clause (optionally followed by SETTINGS or `;`), if the query has one."""
    top = [t for t in _tokens(text) if t.depth == 0]
    for i in range(len(top) - 2, -1, -1):
        if top[i].kind == "word" and top[i].text.upper() == "FORMAT" and top[i + 1].kind == "word":
            rest = top[i + 2:]
            ends = all(t.text == ";" for t in rest)
            if ends or (rest[0].kind == "word" and rest[0].text.upper() == "SETTINGS"):
                return top[i + 1].text
    return None


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def set_statement(settings: dict[str, str]) -> str:
    # Quoted values always parse: ClickHouse converts string literals to each setting's own type.
    return "SET " + ", ".join(f"{name} = {quote_literal(value)}" for name, value in settings.items())
