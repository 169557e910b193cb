"""`keyscope cold query SQL`: the cold store (Parquet past KEYSCOPE_HOT_DAYS) read with ClickHouse SQL in chDB."""

from __future__ import annotations

import argparse

from app.config import Settings


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sql", help="e.g. 'SELECT user_id, count() FROM cold_keystrokes GROUP BY user_id'")


def run_query(settings: Settings, args: argparse.Namespace) -> int:
    from app.cold import cold_query

    table = cold_query(settings, args.sql)
    print("\t".join(table.column_names))
    for row in zip(*(column.to_pylist() for column in table.columns)):
        print("\t".join("" if v is None else str(v) for v in row))
    return 0
