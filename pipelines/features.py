"""Rebuild the online feature store (app/features/online.py) from ClickHouse: for typists whose tests were stored
before the store existed, imported by `keyscope migrate mysql`, or whose Redis was lost.

    python -m pipelines.features [--from-user N] [--to-user M]
    keyscope features …                                       (the same on the local stack)

Typists are read in groups of GROUP_USERS (one range query per stored table), folded by the same code as the ingest
job and the training samples, and written only where Redis holds fewer tests than ClickHouse. Safe while ingest
runs (`FeatureStore.rebuild`): a typist whose Redis features hold a test ClickHouse does not show yet is left for the
next run ("deferred"), and a write that races the ingest job's is checked again.
"""

from __future__ import annotations

import argparse
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tqdm import tqdm

from app.clickhouse.client import clickhouse_client
from app.config import Settings
from app.features.offline import stored_deltas
from app.features.online import FeatureStore
from app.features.summary import fold
from app.identity import MAX_USER_ID
from pipelines.entry import job_main, job_parser

log = logging.getLogger("keyscope.features")

DESCRIPTION = (
    "Rebuild the online feature store (Redis) from the tests stored in ClickHouse, for typists it holds fewer tests "
    "of than ClickHouse does (stored before the store existed, imported, or a lost Redis). Safe while ingest runs."
)
GROUP_USERS = 200


@dataclass
class RebuildReport:
    typists: int = 0
    rebuilt: int = 0
    tests: int = 0
    deferred: int = 0

    def line(self) -> str:
        line = f"{self.typists} typists checked, {self.rebuilt} rebuilt from {self.tests} stored tests"
        if self.deferred:
            line += f", {self.deferred} deferred (being ingested now: run again)"
        return line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-user", type=int, default=0, help="first user id to check (default 0)")
    parser.add_argument("--to-user", type=int, default=MAX_USER_ID, help="last user id to check (default: all)")


def rebuild_features(settings: Settings, first: int = 0, last: int = MAX_USER_ID) -> RebuildReport:
    if first > last:
        raise ValueError(f"--from-user {first} is after --to-user {last}")
    report = RebuildReport()
    client = clickhouse_client(settings.clickhouse_url)
    store = FeatureStore(settings)
    try:
        users = [
            int(r[0])
            for r in client.query(
                "SELECT DISTINCT user_id FROM test_results WHERE user_id BETWEEN {a:UInt64} AND {b:UInt64} "
                "ORDER BY user_id",
                parameters={"a": first, "b": last},
            ).result_rows
        ]
        report.typists = len(users)
        cut = datetime.now(UTC) + timedelta(days=366)  # every stored test, future-dated ones included
        for i in tqdm(range(0, len(users), GROUP_USERS), desc="typists", unit="group", disable=not users):
            group = users[i : i + GROUP_USERS]
            by_user = defaultdict(list)
            for delta in stored_deltas(client, cut, user_range=(group[0], group[-1])):
                by_user[delta.user_id].append(delta)
            for user_id, deltas in by_user.items():
                outcome = store.rebuild(fold(user_id, deltas), {d.test_id for d in deltas})
                if outcome == "written":
                    report.rebuilt += 1
                    report.tests += len(deltas)
                elif outcome == "deferred":
                    report.deferred += 1
    finally:
        store.close()
        client.close()
    log.info("feature rebuild: %s", report.line())
    return report


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        report = rebuild_features(settings, args.from_user, args.to_user)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    print(report.line())
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main(job_parser("python -m pipelines.features", DESCRIPTION, add_arguments), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
