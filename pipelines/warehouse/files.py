"""The warehouse root and its files: where the root is (`--out`, KEYSCOPE_WAREHOUSE_URI or `<data_dir>/warehouse`),
the pyarrow filesystem that opens it (a local directory or any URI pyarrow opens: `s3://bucket/prefix?region=…`,
`gs://…`, `file:///…`), and the few file operations every step shares: listing a day's Parquet parts, deleting a
directory, writing a JSON manifest.

Layout under the root: `<dataset>/day=YYYY-MM-DD/part-N.parquet` plus that day's `MANIFEST`, and `STAGING/` for
files written but not yet moved into place (outside every dataset's prefix, so no external table sees them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from app.config import Settings

MANIFEST = "_manifest.json"
STAGING = "_staging"
ROOT_HELP = "root directory or URI (default: KEYSCOPE_WAREHOUSE_URI or <data_dir>/warehouse)"


def warehouse_uri(settings: Settings, out: str | None = None) -> str:
    """Where the warehouse files go: `out`, else KEYSCOPE_WAREHOUSE_URI, else `<data_dir>/warehouse`."""
    return out or settings.warehouse_uri or str(Path(settings.data_dir) / "warehouse")


def open_root(uri: str, filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and root path of a warehouse URI (a plain path is a local directory); with
    `filesystem`, `uri` is a path in it."""
    if filesystem is not None:
        return filesystem, uri.rstrip("/")
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
    filesystem, path = pafs.FileSystem.from_uri(uri)
    return filesystem, path.rstrip("/")


def list_files(fs: pafs.FileSystem, directory: str, recursive: bool = False) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(directory, allow_not_found=True, recursive=recursive)
    return [info for info in fs.get_file_info(selector) if info.type == pafs.FileType.File]


def parquet_parts(fs: pafs.FileSystem, directory: str) -> list[pafs.FileInfo]:
    """A day directory's Parquet parts, by name (its manifest and anything else left out)."""
    return sorted((i for i in list_files(fs, directory) if i.base_name.endswith(".parquet")), key=lambda i: i.base_name)


def delete_dir(fs: pafs.FileSystem, directory: str) -> None:
    if fs.get_file_info(directory).type != pafs.FileType.NotFound:
        fs.delete_dir(directory)


def write_json(fs: pafs.FileSystem, path: str, value: Any) -> None:
    with fs.open_output_stream(path) as out:
        out.write((json.dumps(value, indent=2, sort_keys=False) + "\n").encode())
