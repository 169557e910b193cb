"""Precomputed insights: recompute every typist with tests stored since the last run, into ClickHouse
(`user_insights`) and the Redis cache (1-hour TTL).

    python -m pipelines.insights            # hourly as a RayCronJob (cluster/prod/app/raycronjob-insights.yaml)
    keyscope insights                       # the same on the local stack

The watermark (the newest `ingested_at` covered) is kept in ClickHouse (`job_watermarks`), so a run refreshes
only users with new tests. The ingest job also refreshes the users of each pass right after storing it
(`refresh_in_background`), so a user's insights are never older than the last ingest pass plus a few seconds.
Both record each refreshed user's practice signature and queue the signatures users moved to for the practice
pre-generation job (`queue_moved_signatures`, pipelines/practice.py).
A batch of users is computed together: their histories in one query per kind, their keys and pairs ranked in one
vectorized pass (app/insights.py), about 10 ms of CPU a typist in all (`keyscope bench insights --refresh`). The
job splits its users into such batches, which Ray Data computes in parallel, and checkpoints after each chunk
(`job_progress`), so a killed run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import ray
import redis
from tqdm import tqdm

from app.cache import encode_read, generations, put_many_reads, user_cache_key
from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations
from app.clickhouse.store import load_job_progress, load_job_watermark, store_job_progress, store_job_watermark
from app.config import Settings
from app.faults import failpoint
from app.insights import build_reads, load_histories, rank_histories
from app.models.forecast import ModelForecaster
from app.practice.served import ServedTexts, signature_key
from app.practice.signature import needs_from_insights
from app.practice.texts import TextCache
from pipelines.entry import job_main, job_parser

log = logging.getLogger("keyscope.insights")

JOB = "insights"
# Users whose histories one query per kind loads together: the per-typist cost falls with the batch (fewer queries
# per typist, one vectorized ranking) until the batch's rows dominate; `keyscope bench insights --refresh` measures it.
USERS_PER_BATCH = 500
# Users per checkpoint of the hourly job: a killed run loses at most this many users' work.
CHUNK_USERS = 5_000
# Tests become visible a little after their ingested_at (the insert commits later), so each run looks back this
# far behind the stored watermark; refreshing a few users twice is harmless, missing one is not.
OVERLAP_S = 120
# The share of one core the background refresher may use (it sleeps the rest).
CPU_SHARE = 0.25
# Users waiting for a refresh after ingest passes, at most; beyond it the hourly job covers them.
MAX_PENDING = 20_000
# A pass storing tests of more users than this is a backlog being caught up: refreshing them all at once would slow
# the ingest itself, so they are left to the hourly job and to cache misses.
REFRESH_AFTER_PASS_MAX_USERS = 500

READS = ("insights", "keys", "progress")
_INSIGHTS_SCHEMA = pa.schema(
    [
        ("user_id", pa.uint64()),
        ("computed_at", pa.timestamp("ms", tz="UTC")),
        ("covered_until", pa.timestamp("ms", tz="UTC")),
        ("test_count", pa.uint32()),
        ("insights", pa.string()),
        ("keys", pa.string()),
        ("progress", pa.string()),
    ]
)


@dataclass
class RefreshReport:
    users: int = 0
    refreshed: int = 0
    seconds: float = 0.0
    watermark: datetime | None = None
    resumed_after: int | None = None  # the last user id of the unfinished run this one finished

    def line(self) -> str:
        rate = self.refreshed / self.seconds if self.seconds else 0.0
        line = f"{self.refreshed} of {self.users} users refreshed in {self.seconds:.1f} s ({rate:,.1f} users/s)"
        return line if self.resumed_after is None else f"{line}; resumed after user {self.resumed_after}"


_FORECASTER: ModelForecaster | None = None


def forecaster(settings: Settings) -> ModelForecaster:
    """This process's trajectory forecaster (one model load per worker, not per batch)."""
    global _FORECASTER
    if _FORECASTER is None:
        _FORECASTER = ModelForecaster(settings)
    return _FORECASTER


def refresh_users(settings: Settings, user_ids: list[int]) -> int:
    """Recompute the reads of these users into `user_insights` and Redis; returns how many had tests.

    Their histories come in one query per kind for the whole list (app/insights.py `load_histories`), so a longer
    list costs less per user; the hourly job hands over USERS_PER_BATCH at a time."""
    if not user_ids:
        return 0
    user_ids = sorted(set(user_ids))
    started_ms = int(time.time() * 1000)
    client = clickhouse_client(settings.clickhouse_url, background=True)
    cache = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        # Generations first: a pass that lands while this runs bumps them, and its users are then not cached here
        # with what is already stale (the row in user_insights is still checked against covered_until on read).
        try:
            gens: dict[int, bytes | None] | None = dict(zip(user_ids, generations(cache, user_ids)))
        except redis.RedisError as exc:
            log.warning("Redis unavailable, refreshing ClickHouse only: %s", exc)
            gens = None
        histories = load_histories(client, user_ids)
        forecasts = forecaster(settings).forecast_many(list(histories))
        ranked = rank_histories(list(histories.values()))
        rows: dict[str, list[Any]] = {name: [] for name in _INSIGHTS_SCHEMA.names}
        signatures: dict[int, str] = {}
        bodies_by_user: dict[int, dict[str, bytes]] = {}
        now = datetime.now(UTC)
        for user_id, history in histories.items():
            reads = build_reads(history, model_forecast=forecasts.get(user_id), ranked=ranked[user_id])
            signatures[user_id] = needs_from_insights(reads["insights"]).signature
            bodies = bodies_by_user[user_id] = {read: encode_read(body) for read, body in reads.items()}
            for name, value in (
                ("user_id", user_id),
                ("computed_at", now),
                ("covered_until", history.summary["covered_until"]),
                ("test_count", history.summary["test_count"]),
                *((read, body.decode()) for read, body in bodies.items()),
            ):
                rows[name].append(value)
        if rows["user_id"]:
            client.insert_arrow("user_insights", pa.table(rows, schema=_INSIGHTS_SCHEMA))
            if gens is not None:
                try:
                    put_many_reads(cache, gens, bodies_by_user, settings.insights_ttl_s)
                    queue_moved_signatures(settings, cache, signatures)
                except redis.RedisError as exc:
                    log.warning("cache write failed: %s", exc)
            _forget_deleted(settings, client, cache, rows["user_id"], started_ms)
        return len(rows["user_id"])
    finally:
        client.close()
        cache.close()


def queue_moved_signatures(settings: Settings, cache: redis.Redis, signatures: dict[int, str]) -> None:
    """Record each refreshed typist's practice signature and queue those some typist moved to, for the practice
    pre-generation job (pipelines/practice.py). A Redis error is logged: practice texts must not fail a refresh."""
    if not signatures:
        return
    try:
        moved = ServedTexts(settings, client=cache).swap_signatures(signatures)
        TextCache(settings, client=cache).changed(moved)
    except redis.RedisError as exc:
        log.warning("could not record the practice signatures of %d users: %s", len(signatures), exc)


def _forget_deleted(settings: Settings, client, cache: redis.Redis, user_ids: list[int], since_ms: int) -> None:
    """A user deleted while their reads were being computed (app/user_data.py) must not come back through this
    refresh: drop what it just wrote for them (reads and practice signature)."""
    from app.user_data import load_tombstones

    deleted = [u for u, at in load_tombstones(client, user_ids).items() if at >= since_ms - 5_000]
    if not deleted:
        return
    client.command(
        "ALTER TABLE user_insights DELETE WHERE user_id IN {u:Array(UInt64)} SETTINGS mutations_sync = 2",
        parameters={"u": deleted},
    )
    try:
        cache.delete(*(user_cache_key(u) for u in deleted), *(signature_key(u) for u in deleted))
    except redis.RedisError as exc:
        log.warning("could not drop the cache of deleted users %s: %s", deleted, exc)


def _refresh_batch(batch: dict[str, np.ndarray], settings: Settings) -> dict[str, np.ndarray]:
    users = [int(u) for u in batch["user_id"]]
    return {"refreshed": np.array([refresh_users(settings, users)], dtype=np.int64)}


@ray.remote(num_cpus=0, max_restarts=-1)
class InsightsRefresher:
    """Refreshes users handed over by ingest passes, in the background, one batch at a time.

    Detached, so a draining ingest job can exit without waiting (a job's tasks would die with it). A user handed
    over twice before their turn is refreshed once. Past MAX_PENDING users (a backlog being ingested) new users
    are not queued: the hourly job covers them, and a cache miss computes from the aggregates meanwhile.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pending: set[int] = set()
        self.skipped = 0
        self.refreshed = 0
        self.lock = threading.Lock()
        self.wake = threading.Event()
        threading.Thread(target=self._work, daemon=True, name="insights-refresher").start()

    def _lower_priority(self) -> None:
        try:
            os.nice(5)  # Linux: this thread only; the API and the ingest tasks go first
        except OSError:
            pass

    def submit(self, user_ids: list[int]) -> int:
        with self.lock:
            if len(self.pending) + len(user_ids) > MAX_PENDING:
                self.skipped += len(user_ids)
            else:
                self.pending.update(user_ids)
            self.wake.set()
            return len(self.pending)

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {"pending": len(self.pending), "refreshed": self.refreshed, "skipped": self.skipped}

    def _work(self) -> None:
        self._lower_priority()
        while True:
            self.wake.wait()
            with self.lock:
                batch = sorted(self.pending)[:USERS_PER_BATCH]
                self.pending.difference_update(batch)
                if not self.pending:
                    self.wake.clear()
            if not batch:
                continue
            started = time.perf_counter()
            try:
                done = refresh_users(self.settings, batch)
            except Exception as exc:  # a store outage: the hourly job catches up, reads compute meanwhile
                log.warning("refreshing %d users failed: %s", len(batch), exc)
                time.sleep(1.0)
                continue
            with self.lock:
                self.refreshed += done
            # A background job: at most CPU_SHARE of a core, so a steady stream of tests (about 10 ms of CPU per
            # user refreshed) never slows the ingest or the API. Behind, it skips to MAX_PENDING and the hourly
            # job catches up; reads stay fresh meanwhile (the cache was invalidated and a miss computes).
            time.sleep((time.perf_counter() - started) * (1 / CPU_SHARE - 1))


def refresher(settings: Settings) -> ray.actor.ActorHandle:
    """The cluster's one InsightsRefresher (created on first use)."""
    return InsightsRefresher.options(
        name="keyscope-insights-refresher", namespace="keyscope", lifetime="detached", get_if_exists=True
    ).remote(settings)


def refresh_in_background(settings: Settings, user_ids: list[int]) -> None:
    """Hand the users of an ingest pass to the refresher; returns at once."""
    if user_ids and len(user_ids) <= REFRESH_AFTER_PASS_MAX_USERS:
        refresher(settings).submit.options(enable_task_events=False).remote(user_ids)  # one a pass: keep GCS lean


def users_with_new_tests(client, since: datetime | None) -> tuple[list[int], datetime | None]:
    """Users with tests ingested after `since` (all users when None), in id order, and the newest ingested_at."""
    where = "" if since is None else f"WHERE ingested_at > toDateTime64({{s:DateTime64(3)}}, 3) - {OVERLAP_S}"
    result = client.query(
        f"SELECT user_id, max(ingested_at) FROM test_results {where} GROUP BY user_id ORDER BY user_id",
        parameters={} if since is None else {"s": since},
    ).result_rows
    if not result:
        return [], since
    return [int(r[0]) for r in result], max(r[1] for r in result)


def _progress_key(all_users: bool) -> str:
    return f"{JOB}:all" if all_users else JOB


def run_refresh(
    settings: Settings, *, all_users: bool = False, show_progress: bool = True, chunk_users: int = CHUNK_USERS
) -> RefreshReport:
    """One run: refresh every user with new tests since the watermark (every user with `all_users`).

    Users go in id order, `chunk_users` at a time (each chunk's batches in parallel on Ray Data); after each chunk is
    written the run records how far it got (`job_progress`), so a run killed part-way resumes after the last chunk
    it finished. The watermark moves only when every user is done."""
    started = time.perf_counter()
    if not ray.is_initialized():
        ray.init(address=settings.ray_address, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    client = clickhouse_client(settings.clickhouse_url, background=True)
    key = _progress_key(all_users)
    try:
        apply_migrations(client)
        since = None if all_users else load_job_watermark(client, JOB)
        users, newest = users_with_new_tests(client, since)
        unfinished = load_job_progress(client, key)
        report = RefreshReport(users=len(users), watermark=newest)
        if unfinished is not None:
            # Finish what the killed run set out to do: its watermark, and only the users it had not reached.
            newest, done_through = unfinished
            users = [u for u in users if u > done_through]
            report.watermark, report.resumed_after = newest, done_through
            log.info("resuming the unfinished run after user %d: %d users left", done_through, len(users))
        if users:
            log.info("refreshing %d users with tests stored since %s", len(users), since or "the start")
            with tqdm(total=len(users), unit=" typists", desc="insights", disable=not show_progress) as bar:
                for first in range(0, len(users), chunk_users):
                    chunk = users[first : first + chunk_users]
                    report.refreshed += _refresh_chunk(settings, chunk)
                    store_job_progress(client, key, newest, chunk[-1])
                    bar.update(len(chunk))
                    failpoint(settings, "insights_after_chunk")
        if newest is not None:
            store_job_watermark(client, JOB, newest)  # only after every user is written
            store_job_progress(client, key, newest, 0, finished=True)
    finally:
        client.close()
    report.seconds = time.perf_counter() - started
    log.info("insights: %s", report.line())
    return report


def _refresh_chunk(settings: Settings, users: list[int]) -> int:
    """Refresh these users on the cluster, USERS_PER_BATCH to a Ray Data task; returns how many had tests."""
    if len(users) <= USERS_PER_BATCH:  # one batch: no need for a dataset
        return refresh_users(settings, users)
    refreshed = ray.data.from_items([{"user_id": u} for u in users]).map_batches(
        _refresh_batch, batch_size=USERS_PER_BATCH, batch_format="numpy", fn_kwargs={"settings": settings}
    )
    return int(sum(int(row["refreshed"]) for row in refreshed.iter_rows()))


DESCRIPTION = (
    "Recompute the insights of every typist with tests stored since the last run, into ClickHouse (user_insights) "
    "and Redis."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The job's flags, for `python -m pipelines.insights` and `keyscope insights` alike."""
    parser.add_argument("--all", action="store_true", help="refresh every typist, not only those with new tests")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (logs only)")
    parser.add_argument(
        "--chunk",
        type=int,
        default=CHUNK_USERS,
        help=f"typists per checkpoint: a killed run resumes after the last chunk it wrote (default {CHUNK_USERS:,})",
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    """One refresh as the flags ask; prints its report line."""
    if args.chunk < 1:
        raise SystemExit(f"--chunk must be a positive number of typists, got {args.chunk}")
    print(run_refresh(settings, all_users=args.all, show_progress=not args.quiet, chunk_users=args.chunk).line())
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main(job_parser("python -m pipelines.insights", DESCRIPTION, add_arguments), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
