"""Request bodies: the raw body (Content-Length or chunked) within a size cap, decoded on the fly from
gzip/deflate/zstd/lz4/xz/bz2, read in bounded prefixes, and the multipart/form-data parser for long bind
parameters and external tables."""

from __future__ import annotations

import bz2
import email.message
import lzma
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import lz4.frame

from devstack.clickhouse_http.errors import BodyTooLarge, ClickHouseError

try:  # Python 3.14 ships zstd; older interpreters use the backport clickhouse-connect also uses
    from compression import zstd as _zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd as _zstd

READ_CHUNK = 1024 * 1024

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


class Body:
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
            raise BodyTooLarge()
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
                raise BodyTooLarge()
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


def read_up_to(chunks: Iterator[bytes], limit: int, cap: int) -> tuple[bytes, bool]:
    """Read whole chunks until `limit` bytes or the end; returns (data, exhausted)."""
    buf = bytearray()
    for data in chunks:
        buf += data
        if len(buf) > cap:
            raise BodyTooLarge()
        if len(buf) >= limit:
            return bytes(buf), False
    return bytes(buf), True


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, bytes]]:
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
