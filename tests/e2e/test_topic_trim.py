"""The ingest job trims the keystroke topic below its stored offsets (Kafka DeleteRecords on the real broker), so
the broker holds only what is still to be ingested; nothing not yet stored is ever deleted, and a job whose stored
offsets fell below the topic's start (retention) starts at the start."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app import faults
from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import load_offsets
from app.kafka import beginning_offsets, delete_records_before, end_offsets
from devstack.simulate import simulate_tests
from pipelines.ingest import Ingestor, run_ingest
from tests.e2e.test_faults import assert_stored_exactly_once, post

pytestmark = pytest.mark.stack


def stored_offsets(settings) -> dict[int, int]:
    client = clickhouse_client(settings.clickhouse_url)
    try:
        return load_offsets(client, settings.consumer_group, settings.keystroke_topic)
    finally:
        client.close()


def lows(settings) -> dict[int, int]:
    return asyncio.run(beginning_offsets(settings, settings.keystroke_topic))


def ends(settings) -> dict[int, int]:
    return asyncio.run(end_offsets(settings, settings.keystroke_topic))


def test_a_pass_trims_the_topic_to_its_stored_offsets_and_never_beyond(stack, ray_driver, api_url, stack_settings):
    run_ingest(stack_settings)
    first = simulate_tests(4, 2, seed=71, first_user_id=71_000)
    assert all(r.status_code == 202 for r in post(api_url, first))
    run_ingest(stack_settings)
    trimmed = lows(stack_settings)
    assert trimmed == ends(stack_settings) == {p: stored_offsets(stack_settings).get(p, 0) for p in trimmed}

    # Tests that arrive later stay on the broker until a pass has stored them; a pass that fails before its
    # offset store trims nothing.
    second = simulate_tests(4, 2, seed=72, first_user_id=72_000)
    assert all(r.status_code == 202 for r in post(api_url, second))
    assert lows(stack_settings) == trimmed and sum(ends(stack_settings).values()) == sum(trimmed.values()) + 8
    with Ingestor(stack_settings) as job, faults.armed("after_write"), pytest.raises(faults.SimulatedCrash):
        job.run_pass()
    assert lows(stack_settings) == trimmed
    report = run_ingest(stack_settings)
    assert report.tests_written == 0 and report.duplicates_skipped == 8  # written before the crash, read again
    assert lows(stack_settings) == ends(stack_settings) == {p: stored_offsets(stack_settings)[p] for p in trimmed}
    assert_stored_exactly_once(stack_settings, first + second)


def test_a_follow_job_trims_at_most_once_per_interval(stack, ray_driver, api_url, stack_settings):
    run_ingest(stack_settings)
    settings = stack_settings.with_overrides(topic_trim_interval_s=3600)
    with Ingestor(settings) as job:
        job.run_pass()  # the job's first pass trims at once (a drain is one pass)
        tests = simulate_tests(2, 2, seed=73, first_user_id=73_000)
        assert all(r.status_code == 202 for r in post(api_url, tests))
        before = lows(settings)
        assert job.run_pass().tests_written == 4
        assert lows(settings) == before  # stored, but the next trim is an hour away
    assert lows(settings) != ends(settings)
    run_ingest(stack_settings)
    assert lows(stack_settings) == ends(stack_settings)


def test_offsets_below_the_topic_start_move_up_to_it(stack, ray_driver, api_url, stack_settings, caplog):
    run_ingest(stack_settings)
    lost = simulate_tests(2, 2, seed=74, first_user_id=74_000)
    assert all(r.status_code == 202 for r in post(api_url, lost))
    # Retention deletes them before the job reads them (the job was down for longer than the retention).
    asyncio.run(delete_records_before(stack_settings, stack_settings.keystroke_topic, ends(stack_settings)))
    kept = simulate_tests(2, 2, seed=75, first_user_id=75_000)
    assert all(r.status_code == 202 for r in post(api_url, kept))
    with caplog.at_level(logging.WARNING, logger="keyscope.ingest"):
        report = run_ingest(stack_settings)
    assert report.tests_written == 4 and report.messages == 4
    assert "are no longer on the broker" in caplog.text
    assert_stored_exactly_once(stack_settings, kept)
    users = ",".join(str(t["user_id"]) for t in lost)
    client = clickhouse_client(stack_settings.clickhouse_url)
    try:
        assert client.query(f"SELECT count() FROM test_results WHERE user_id IN ({users})").result_rows == [(0,)]
    finally:
        client.close()
