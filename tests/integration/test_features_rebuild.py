"""`keyscope features` on the real stack: typists whose tests are in ClickHouse but not in the online store get
them back, equal to the offline fold; typists already current are left alone; one being ingested is deferred."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from app.clickhouse.client import clickhouse_client
from app.features.offline import features_at
from app.features.online import FeatureStore, feature_key
from app.features.summary import UserFeatures
from devstack.produce import produce_tests
from devstack.simulate import simulate_tests
from pipelines.features import rebuild_features
from pipelines.ingest import run_ingest

FIRST, USERS = 7_500_001, 4


@pytest.fixture(scope="module")
def stored(stack, ray_driver, stack_settings):
    tests = simulate_tests(USERS, 6, seed=75, first_user_id=FIRST, traits=True)
    asyncio.run(produce_tests(stack_settings, tests))
    assert run_ingest(stack_settings).tests_written >= len(tests)
    return tests


def test_missing_features_are_rebuilt_from_clickhouse_and_current_ones_left(stored, stack_settings):
    store = FeatureStore(stack_settings)
    client = clickhouse_client(stack_settings.clickhouse_url)
    try:
        users = list(range(FIRST, FIRST + USERS))
        expected = features_at(client, users, datetime(2100, 1, 1, tzinfo=UTC))
        assert all(store.get(u).equals(expected[u]) for u in users)  # ingest filled them
        store.delete(FIRST)  # lost, as for a typist stored before the store existed
        partial = UserFeatures(FIRST + 1)  # holds fewer tests than ClickHouse
        store._redis.set(feature_key(FIRST + 1), partial.to_bytes())
        report = rebuild_features(stack_settings, FIRST, FIRST + USERS - 1)
        assert (report.typists, report.rebuilt, report.tests, report.deferred) == (USERS, 2, 12, 0)
        assert all(store.get(u).equals(expected[u]) for u in users)
        assert rebuild_features(stack_settings, FIRST, FIRST + USERS - 1).rebuilt == 0  # nothing left to do

        # A typist whose online features hold a test ClickHouse does not show yet (being ingested): deferred.
        ahead = store.get(FIRST + 2)
        ahead.recent.append((ahead.last_ms + 1, "not-stored-yet", 50.0, 0.95))
        store._redis.set(feature_key(FIRST + 2), ahead.to_bytes())
        store._redis.set(feature_key(FIRST + 3), UserFeatures(FIRST + 3).to_bytes())
        report = rebuild_features(stack_settings, FIRST + 2, FIRST + 3)
        assert (report.rebuilt, report.deferred) == (1, 1)
        assert store.get(FIRST + 2).recent[-1][1] == "not-stored-yet"  # not overwritten
    finally:
        client.close()
        store.close()


def test_a_range_backwards_is_refused(stack_settings):
    with pytest.raises(ValueError, match="--from-user 5 is after --to-user 4"):
        rebuild_features(stack_settings, 5, 4)
