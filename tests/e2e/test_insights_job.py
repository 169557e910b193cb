"""Precomputed insights on the real stack: the job refreshes exactly the users with new tests (watermark in
ClickHouse), writes user_insights and Redis, the API serves a fresh precomputed row on a cache miss and never a
stale one, and ingest passes hand their users to the background refresher."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

import pipelines.insights as insights_job
from app.cache import user_cache_key
from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import load_job_progress, load_job_watermark
from app.faults import SimulatedCrash, armed
from devstack.simulate import simulate_tests
from pipelines.ingest import run_ingest
from tests.api import api_client, api_get

pytestmark = pytest.mark.stack

X, Y = 47_001, 47_002


def post(api_url: str, tests: list[dict]) -> None:
    with api_client(api_url) as client:
        assert [client.post("/v1/tests", json=t).status_code for t in tests] == [202] * len(tests)


def precomputed(settings, user_id: int) -> tuple | None:
    client = clickhouse_client(settings.clickhouse_url)
    try:
        rows = client.query(
            "SELECT test_count, insights, covered_until FROM user_insights FINAL WHERE user_id = {u:UInt64}",
            parameters={"u": user_id},
        ).result_rows
        return rows[0] if rows else None
    finally:
        client.close()


@pytest.fixture(scope="module")
def refreshed(stack, ray_driver, api_url, stack_settings, monkeypatch_module):
    monkeypatch_module.setattr(insights_job, "OVERLAP_S", 0)  # exactly the users with new tests
    post(api_url, simulate_tests(2, 3, seed=41, first_user_id=X))
    run_ingest(stack_settings)
    insights_job.run_refresh(stack_settings)  # covers everything stored so far, X and Y included
    return stack_settings


@pytest.fixture(scope="module")
def monkeypatch_module():
    patcher = pytest.MonkeyPatch()
    yield patcher
    patcher.undo()


def test_the_job_writes_user_insights_and_the_cache(refreshed, api_url):
    for user_id in (X, Y):
        row = precomputed(refreshed, user_id)
        assert row is not None and row[0] == 3
        served = api_get(f"{api_url}/v1/users/{user_id}/insights").json()
        assert json.loads(row[1]) == served
    cached = redis.Redis.from_url(refreshed.redis_url).hkeys(user_cache_key(X))
    assert {b"insights", b"keys", b"progress"} <= set(cached)


def test_a_second_run_refreshes_only_users_with_new_tests(refreshed, api_url):
    assert insights_job.run_refresh(refreshed).users == 0
    post(api_url, [{**simulate_tests(1, 1, seed=42, first_user_id=X)[0], "test_id": "x-new"}])
    run_ingest(refreshed)
    report = insights_job.run_refresh(refreshed)
    assert (report.users, report.refreshed) == (1, 1)
    assert precomputed(refreshed, X)[0] == 4 and precomputed(refreshed, Y)[0] == 3


def test_a_cache_miss_serves_a_fresh_precomputed_row_and_never_a_stale_one(refreshed, api_url):
    client = clickhouse_client(refreshed.clickhouse_url)
    cache = redis.Redis.from_url(refreshed.redis_url)
    try:
        # A fresh row (covering the user's newest test) is what a miss serves: mark one to recognise it.
        marker = {"marker": "from user_insights"}
        client.insert(
            "user_insights",
            [
                [
                    Y,
                    datetime.now(UTC) + timedelta(hours=1),
                    datetime.now(UTC) + timedelta(hours=1),
                    3,
                    json.dumps(marker),
                    "{}",
                    "{}",
                ]
            ],
            column_names=["user_id", "computed_at", "covered_until", "test_count", "insights", "keys", "progress"],
        )
        cache.delete(user_cache_key(Y))
        assert api_get(f"{api_url}/v1/users/{Y}/insights").json() == marker
        # A row older than the user's newest test is not served: the read is computed from the aggregates.
        client.insert(
            "user_insights",
            [
                [
                    Y,
                    datetime.now(UTC) + timedelta(hours=2),
                    datetime(2000, 1, 1, tzinfo=UTC),
                    3,
                    json.dumps(marker),
                    "{}",
                    "{}",
                ]
            ],
            column_names=["user_id", "computed_at", "covered_until", "test_count", "insights", "keys", "progress"],
        )
        cache.delete(user_cache_key(Y))
        body = api_get(f"{api_url}/v1/users/{Y}/insights").json()
        assert body != marker and body["test_count"] == 3
    finally:
        client.close()
        cache.close()


def test_ingest_passes_hand_their_users_to_the_background_refresher(stack, ray_driver, api_url, stack_settings):
    user_id = 47_050
    post(api_url, simulate_tests(1, 2, seed=43, first_user_id=user_id))
    run_ingest(stack_settings)  # returns without waiting for the refresh
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and precomputed(stack_settings, user_id) is None:
        time.sleep(1)
    row = precomputed(stack_settings, user_id)
    assert row is not None and row[0] == 2


def test_a_user_deleted_while_the_refresh_computes_them_does_not_come_back(
    stack, ray_driver, api_url, stack_settings, monkeypatch
):
    """The deletion lands between the refresh's reads and its writes: what it wrote for that user is dropped again
    (row and cache), and the other user's refresh stands."""
    from app.user_data import delete_user

    victim, bystander = 47_060, 47_061
    post(api_url, simulate_tests(2, 2, seed=44, first_user_id=victim))
    run_ingest(stack_settings)
    compute = insights_job.build_reads

    def delete_mid_refresh(history, **options):
        reads = compute(history, **options)  # the victim's reads are computed: the deletion runs now
        if history.user_id == victim:
            delete_user(stack_settings, victim)
        return reads

    monkeypatch.setattr(insights_job, "build_reads", delete_mid_refresh)
    assert insights_job.refresh_users(stack_settings, [victim, bystander]) == 2
    assert precomputed(stack_settings, victim) is None
    assert not redis.Redis.from_url(stack_settings.redis_url).exists(user_cache_key(victim))
    assert precomputed(stack_settings, bystander) is not None


def test_a_run_killed_part_way_resumes_after_the_last_chunk_it_wrote(refreshed, api_url):
    """The hourly job checkpoints after each chunk of typists: a run that dies after its first chunk leaves the
    watermark where it was, and the next run refreshes only the typists the dead one had not reached, then moves
    the watermark to where the dead run was heading."""
    settings = refreshed
    insights_job.run_refresh(settings, show_progress=False)  # the watermark covers everything stored so far
    users = list(range(47_070, 47_075))
    post(api_url, simulate_tests(len(users), 1, seed=45, first_user_id=users[0]))
    run_ingest(settings)
    client = clickhouse_client(settings.clickhouse_url)
    try:
        before = load_job_watermark(client, "insights")
        with armed("insights_after_chunk"), pytest.raises(SimulatedCrash):
            insights_job.run_refresh(settings, show_progress=False, chunk_users=2)
        heading_to, done_through = load_job_progress(client, "insights")
        assert done_through == users[1] and heading_to > before
        assert load_job_watermark(client, "insights") == before  # not moved by a run that did not finish

        report = insights_job.run_refresh(settings, show_progress=False, chunk_users=2)
        assert report.resumed_after == users[1]
        assert report.refreshed == len(users) - 2  # only the typists the dead run had not reached
        assert load_job_progress(client, "insights") is None
        assert load_job_watermark(client, "insights") == heading_to
        assert insights_job.run_refresh(settings, show_progress=False).users == 0  # nothing new since
    finally:
        client.close()
