"""The online feature store on the real stack: simulated typists produced to Kafka and stored by ingest passes
(Ray Data → ClickHouse, features folded into Redis) hold the same features online as the offline path reads back
from ClickHouse, and as a fold of the submissions themselves; a pass that stops between the fold and the result
rows, and a replay of stored messages, count nothing twice; the GDPR registry exports and deletes the features."""

from __future__ import annotations

import asyncio
import json
import zipfile
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
import pytest

import app.user_data as ud
from app import faults
from app.clickhouse.client import clickhouse_client
from app.clickhouse.store import load_offsets, store_offsets
from app.features import test_deltas
from app.features.offline import features_at
from app.features.online import FeatureStore
from app.features.summary import fold
from app.schemas import parse_submission
from app.tables import build_tables
from devstack.produce import produce_tests
from devstack.simulate import simulate_tests
from pipelines.ingest import IngestReport, ingest_once, run_ingest
from pipelines.ingest.deletions import erase_again

pytestmark = pytest.mark.stack

FIRST, USERS, TESTS, SEED = 7_100_001, 4, 6, 71
USER_IDS = list(range(FIRST, FIRST + USERS))


@pytest.fixture(scope="module")
def clickhouse(stack, stack_settings):
    client = clickhouse_client(stack_settings.clickhouse_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def online(stack, stack_settings):
    store = FeatureStore(stack_settings)
    yield store
    store.close()


@pytest.fixture(scope="module")
def submissions() -> list[dict]:
    return simulate_tests(USERS, TESTS, seed=SEED, first_user_id=FIRST, traits=True)


@pytest.fixture(scope="module")
def expected(submissions) -> dict[int, list]:
    """Each typist's test deltas computed here from the submissions (not from anything stored)."""
    tests = [parse_submission(s) for s in submissions]
    tables = build_tables(tests, np.zeros(len(tests)), np.arange(len(tests)))
    by_user = defaultdict(list)
    for delta in test_deltas(tables.keys, tables.pairs, tables.results):
        by_user[delta.user_id].append(delta)
    return dict(by_user)


def stored_results(client) -> int:
    return int(
        client.query(
            "SELECT count() FROM test_results FINAL WHERE user_id IN {u:Array(UInt64)}", parameters={"u": USER_IDS}
        ).result_rows[0][0]
    )


def snapshot(online: FeatureStore) -> dict[int, dict]:
    return {user_id: features.to_dict() for user_id, features in online.get_many(USER_IDS).items()}


@pytest.fixture(scope="module")
def ingested(stack, ray_driver, stack_settings, clickhouse, online, submissions, expected):
    """The typists ingested by a pass that stops after folding the features (its result rows not stored), then by
    the next pass, which stores the tests; returns the offsets before them and the features after the stop."""
    settings = stack_settings.with_overrides(topic_trim_interval_s=0)  # keep the messages for the replay
    run_ingest(settings)  # start from a drained topic
    topic, group = settings.keystroke_topic, settings.consumer_group
    before = load_offsets(clickhouse, group, topic)
    assert asyncio.run(produce_tests(settings, submissions)) == USERS * TESTS
    with faults.armed("after_features"), pytest.raises(faults.SimulatedCrash):
        ingest_once(settings)
    stopped = snapshot(online)
    assert stored_results(clickhouse) == 0
    assert {user_id: features["tests"] for user_id, features in stopped.items()} == dict.fromkeys(USER_IDS, TESTS)
    report = ingest_once(settings)
    assert report.tests_written == USERS * TESTS
    return before, stopped


def test_a_pass_stopped_after_the_fold_then_rerun_counts_each_test_once(ingested, online, clickhouse, expected):
    _, stopped = ingested
    assert stored_results(clickhouse) == USERS * TESTS
    assert snapshot(online) == stopped
    for user_id, deltas in expected.items():
        assert online.get(user_id).equals(fold(user_id, deltas))


def test_online_features_equal_the_offline_ones_after_the_last_test(ingested, online, clickhouse, expected):
    last_ms = max(d.started_ms for deltas in expected.values() for d in deltas)
    cut = datetime.fromtimestamp((last_ms + 1) / 1000, UTC)
    offline = features_at(clickhouse, USER_IDS, cut)
    assert sorted(offline) == USER_IDS
    for user_id in USER_IDS:
        features = online.get(user_id)
        assert features is not None and features.tests == TESTS and features.key.any() and features.pair.any()
        assert features.equals(offline[user_id]), user_id
        assert features.equals(fold(user_id, expected[user_id]))


def test_point_in_time_features_hold_only_the_tests_before_the_cut(ingested, clickhouse, expected):
    for k, user_id in enumerate(USER_IDS, start=1):  # a different cut for each typist: after their k-th test
        deltas = sorted(expected[user_id], key=lambda d: d.started_ms)
        cut_ms = (deltas[k - 1].started_ms + deltas[k].started_ms) // 2
        assert deltas[k - 1].started_ms < cut_ms < deltas[k].started_ms
        cut = datetime.fromtimestamp(cut_ms / 1000, UTC)
        at_cut = features_at(clickhouse, [user_id], cut)[user_id]
        assert at_cut.tests == k
        assert at_cut.equals(fold(user_id, deltas[:k]))
        assert not at_cut.equals(fold(user_id, deltas[: k + 1]))
    first_ms = min(d.started_ms for d in expected[USER_IDS[0]])
    assert features_at(clickhouse, [USER_IDS[0]], datetime.fromtimestamp(first_ms / 1000, UTC)) == {}


def test_replaying_the_stored_messages_changes_no_features(ingested, online, stack_settings, clickhouse):
    before, _ = ingested
    settings = stack_settings.with_overrides(topic_trim_interval_s=0)
    features = snapshot(online)
    topic, group = settings.keystroke_topic, settings.consumer_group
    store_offsets(clickhouse, group, topic, {p: before.get(p, 0) for p in load_offsets(clickhouse, group, topic)})
    report = ingest_once(settings)
    assert report.tests_written == 0 and report.duplicates_skipped >= USERS * TESTS
    assert snapshot(online) == features


def test_export_holds_the_features_and_deletion_empties_them(ingested, online, stack_settings, tmp_path):
    leaver, raced, stays = USER_IDS[0], USER_IDS[1], USER_IDS[2:]
    kept = {user_id: online.get(user_id).to_dict() for user_id in stays}
    manifest = ud.export_user(stack_settings, leaver, tmp_path / "leaver.zip")
    with zipfile.ZipFile(tmp_path / "leaver.zip") as archive:
        exported = json.loads(archive.read("features/features.json"))
    assert exported == online.get(leaver).to_dict()
    assert exported["user_id"] == leaver and exported["tests"] == TESTS and exported["keys"]
    assert manifest["stores"]["features"]["count"] == 1
    assert ud.count_user(stack_settings, leaver)["features"]["count"] == 1

    deleted = ud.delete_user(stack_settings, leaver)
    assert deleted["stores"]["features"]["count"] == 1
    assert online.get(leaver) is None and online.count(leaver) == 0
    assert ud.count_user(stack_settings, leaver)["features"]["count"] == 0

    # A deletion that raced an ingest pass: the pass deletes again from what it writes, the features included.
    erase_again(stack_settings, [raced], "a test ran", IngestReport())
    assert online.get(raced) is None
    assert {user_id: online.get(user_id).to_dict() for user_id in stays} == kept
