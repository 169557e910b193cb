"""Export and deletion of one user's data (GDPR, app/user_data.py) on the real stack: the archive holds every
store's records and its manifest counts them exactly; deletion through the API is for admins only, leaves no trace
of the user in any ClickHouse table (aggregates included), Redis key or queued Kafka message, drops messages
timestamped before it that arrive later, and leaves every other user's data as it was."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import ray
import redis
from aiokafka import AIOKafkaProducer

import app.user_data as ud
import pipelines.ingest.deletions as deletions
from app.auth import issue_token
from app.clickhouse.client import clickhouse_client
from app.codec import encode_test
from app.experiments.definition import Experiment, Variant
from app.experiments.store import Exposure, create_experiment, write_exposures
from app.faults import SimulatedCrash
from app.kafka import user_key
from app.schemas import parse_submission
from devstack.simulate import simulate_tests
from pipelines.ingest import ingest_once, run_ingest
from pipelines.insights import refresher
from tests.api import SERVICE_HEADERS, api_client, api_get
from tests.conftest import TEST_PORTS

pytestmark = pytest.mark.stack

FIRST, USERS, TESTS = 66_001, 12, 3
VICTIM = 66_005  # deleted through the API
LEAVER = 66_009  # exported and deleted with the CLI
RACER = 66_010  # deleted while an ingest pass runs
OTHERS = [u for u in range(FIRST, FIRST + USERS) if u not in (VICTIM, LEAVER, RACER)]
KEYSCOPE = str(Path(sys.executable).with_name("keyscope"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user_tables(client) -> dict[str, str]:
    """Every stored table with a user_id column (found here independently of app/user_data.py) -> its engine."""
    rows = client.query(
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase() AND engine NOT LIKE '%View' "
        "AND name IN (SELECT table FROM system.columns WHERE database = currentDatabase() AND name = 'user_id') "
        "AND name != 'user_tombstones'"
    ).result_rows
    return {str(name): str(engine) for name, engine in rows}


def table_counts(client, user_id: int, final: bool = True) -> dict[str, int]:
    """Rows of the user per table: as reads see them (FINAL where rows merge), or every physical row."""
    counts = {}
    for name, engine in user_tables(client).items():
        modifier = " FINAL" if final and engine != "MergeTree" else ""
        counts[name] = int(
            client.query(
                f"SELECT count() FROM {name}{modifier} WHERE user_id = {{u:UInt64}}", parameters={"u": user_id}
            ).result_rows[0][0]
        )
    return counts


def redis_traces(settings, user_id: int) -> list[str]:
    """Every Redis key with the user id as one of its `:`-separated parts."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        keys = [k.decode() for k in client.scan_iter(match=f"*{user_id}*", count=1000)]
        return sorted(k for k in keys if str(user_id) in k.split(":"))
    finally:
        client.close()


def produce(settings, submission: dict, timestamp_ms: int | None = None) -> None:
    """Put a test on the keystroke topic as the API would (keyed by user), with a Kafka timestamp of our choosing."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            test = parse_submission(submission)
            await producer.send_and_wait(
                settings.keystroke_topic, encode_test(test), key=user_key(test.user_id), timestamp_ms=timestamp_ms
            )
        finally:
            await producer.stop()

    asyncio.run(send())


def wait_for_refresher(settings, client, users: list[int], timeout_s: float = 120) -> None:
    """Until the background insights refresher (fed by ingest passes) has written every user's row and has nothing
    queued: a refresh still running during a deletion could write the user's row back (see the report)."""
    handle = refresher(settings)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = client.query(
            "SELECT uniqExact(user_id) FROM user_insights FINAL WHERE user_id IN {u:Array(UInt64)}",
            parameters={"u": users},
        ).result_rows[0][0]
        if done == len(users) and ray.get(handle.stats.remote())["pending"] == 0:
            return
        time.sleep(0.5)
    raise AssertionError("the insights refresher did not finish")


@pytest.fixture(scope="module")
def clickhouse(stack, stack_settings):
    client = clickhouse_client(stack_settings.clickhouse_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def population(stack, ray_driver, api_url, stack_settings, clickhouse):
    tests = simulate_tests(USERS, TESTS, seed=66, first_user_id=FIRST)
    with api_client(api_url) as client:
        assert [client.post("/v1/tests", json=t).status_code for t in tests] == [202] * len(tests)
    report = run_ingest(stack_settings)
    assert report.tests_written >= len(tests)
    wait_for_refresher(stack_settings, clickhouse, list(range(FIRST, FIRST + USERS)))
    return tests


@pytest.fixture(scope="module")
def tokens(stack) -> dict[str, str]:
    secret = stack.settings.token_secrets[0]
    return {
        "admin": issue_token(secret, "admin", ttl_s=900),
        "victim": issue_token(secret, "user", user_id=VICTIM, ttl_s=900),
        "other": issue_token(secret, "user", user_id=OTHERS[0], ttl_s=900),
    }


EXPOSED_AT = datetime(2026, 11, 20, 8, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def exposed(population, clickhouse):
    """The victim and two others were exposed to an experiment (one that varies hints, ended long ago, so nothing
    served in this session changes)."""
    experiment = Experiment(
        "gdpr-hints", "hint_style", (Variant("short", 1, "all"), Variant("long", 1, "slow_spots")),
        starts_at=datetime(2026, 11, 1, tzinfo=UTC), ends_at=datetime(2026, 11, 30, tzinfo=UTC),
    )
    create_experiment(clickhouse, experiment)
    users = (VICTIM, LEAVER, OTHERS[0])
    assert write_exposures(clickhouse, [Exposure(u, experiment.name, "long", EXPOSED_AT) for u in users]) == 3
    return experiment


@pytest.fixture(scope="module")
def pending(population, stack_settings):
    """One more test of the victim, on Kafka but not ingested yet when the export and the deletion run."""
    late = {**simulate_tests(1, 1, seed=67, first_user_id=VICTIM)[0], "test_id": "queued-at-deletion"}
    produce(stack_settings, late)
    return late


def test_a_user_exports_everything_held_about_them(
    population, exposed, pending, api_url, tokens, stack_settings, clickhouse
):
    victim_token = bearer(tokens["victim"])
    assert httpx.get(f"{api_url}/v1/users/{VICTIM}/insights", headers=victim_token).status_code == 200
    response = httpx.get(f"{api_url}/v1/users/{VICTIM}/export", headers=victim_token, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == f'attachment; filename="keyscope-user-{VICTIM}.zip"'
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    manifest = json.loads(archive.read("manifest.json"))
    stores = ud.open_stores(stack_settings)
    names = [store.name for store in stores]
    ud.close_stores(stores)
    assert list(manifest["stores"]) == names and manifest["user_id"] == VICTIM

    # ClickHouse: a file per table with a user_id column, every row the user's, counts as the tables hold them
    # (the exposures table in the `experiments` store's folder, with the experiment's definition beside it).
    expected = table_counts(clickhouse, VICTIM)
    assert expected.pop("experiment_exposures") == 1
    exposures = [json.loads(line) for line in archive.read("experiments/exposures.jsonl").splitlines()]
    assert exposures == [{"experiment": "gdpr-hints", "factor": "hint_style", "variant": "long", "value": "slow_spots",
                          "first_exposed_at": "2026-11-20T08:15:00.000Z"}]
    assert manifest["stores"]["experiments"]["count"] == 1
    entry = manifest["stores"]["clickhouse"]
    assert entry["parts"] == expected and entry["count"] == sum(expected.values())
    for table in ("keystrokes", "test_results", "test_keys", "test_pairs"):
        assert expected[table] > 0, table
    assert expected["user_insights"] == 1
    for name in archive.namelist():
        if name.startswith("clickhouse/"):
            assert {json.loads(line)["user_id"] for line in archive.read(name).splitlines()} <= {VICTIM}, name
    mine = [t for t in population if t["user_id"] == VICTIM]
    results = [json.loads(line) for line in archive.read("clickhouse/test_results.jsonl").splitlines()]
    assert sorted(r["test_id"] for r in results) == sorted(t["test_id"] for t in mine)
    assert expected["keystrokes"] == sum(len(t["keystrokes"]) for t in mine)

    # Kafka: the test still queued; Redis: cached reads, their generation, the user's rate-limit bucket.
    queued = [json.loads(line) for line in archive.read("kafka/pending.jsonl").splitlines()]
    assert [q["test"]["test_id"] for q in queued] == ["queued-at-deletion"] and manifest["stores"]["kafka"][
        "count"
    ] == 1
    keys = {json.loads(line)["key"]: json.loads(line) for line in archive.read("redis/keys.jsonl").splitlines()}
    # The rate-limit bucket expires as soon as it is full again (app/ratelimit.py), so it may be gone already.
    assert {f"keyscope:user:{VICTIM}", f"keyscope:user:{VICTIM}:gen"} <= set(keys) <= set(ud.user_redis_keys(VICTIM))
    assert manifest["stores"]["redis"]["count"] == len(keys)
    assert keys[f"keyscope:user:{VICTIM}"]["value"]["insights"]["user_id"] == VICTIM
    assert manifest["total"] == sum(e["count"] for e in manifest["stores"].values())


def test_export_is_for_the_user_themself_or_an_admin(population, api_url, tokens):
    url = f"{api_url}/v1/users/{VICTIM}/export"
    assert httpx.get(url, headers=SERVICE_HEADERS).status_code == 403
    assert httpx.get(url, headers=bearer(tokens["other"])).status_code == 403
    assert httpx.get(url).status_code == 401
    admin = httpx.get(url, headers=bearer(tokens["admin"]), timeout=120)
    assert admin.status_code == 200 and zipfile.ZipFile(io.BytesIO(admin.content)).testzip() is None
    nobody = httpx.get(f"{api_url}/v1/users/66999/export", headers=bearer(tokens["admin"]), timeout=120)
    assert nobody.status_code == 404 and nobody.json()["error"]["code"] == "unknown_user"


def test_an_admin_deletes_one_user_among_many_and_no_trace_is_left(
    population, exposed, pending, api_url, tokens, stack_settings, clickhouse
):
    before_victim = table_counts(clickhouse, VICTIM)
    before_others = {u: table_counts(clickhouse, u) for u in OTHERS}
    reads_before = {u: api_get(f"{api_url}/v1/users/{u}/insights").json() for u in OTHERS[:3]}
    results_before = clickhouse.query(
        "SELECT test_id, wpm, accuracy FROM test_results FINAL WHERE user_id = {u:UInt64} ORDER BY test_id",
        parameters={"u": OTHERS[1]},
    ).result_rows
    assert redis_traces(stack_settings, VICTIM)

    url = f"{api_url}/v1/users/{VICTIM}"
    assert httpx.delete(url, headers=bearer(tokens["victim"])).status_code == 403
    assert httpx.delete(url, headers=SERVICE_HEADERS).status_code == 403
    assert httpx.delete(url).status_code == 401
    assert table_counts(clickhouse, VICTIM) == before_victim  # refused requests changed nothing
    response = httpx.delete(url, headers=bearer(tokens["admin"]), timeout=300)
    assert response.status_code == 200, response.text
    body = response.json()
    own_store = {table: before_victim.pop(table) for table in ud.OWN_STORE_TABLES}
    assert body["user_id"] == VICTIM and body["stores"]["clickhouse"]["parts"] == before_victim
    assert own_store == {"experiment_exposures": 1} and body["stores"]["experiments"]["count"] == 1
    assert body["stores"]["kafka"]["count"] == 1 and body["stores"]["redis"]["count"] >= 2
    assert body["total"] == sum(entry["count"] for entry in body["stores"].values())

    # A test timestamped before the deletion that reaches Kafka only now (a client retry, a slow producer).
    deleted_at_ms = iso_ms(body["deleted_at"])
    retried = {**simulate_tests(1, 1, seed=68, first_user_id=VICTIM)[0], "test_id": "retried-after-deletion"}
    produce(stack_settings, retried, timestamp_ms=deleted_at_ms - 30_000)
    report = run_ingest(stack_settings)
    assert report.dropped_deleted >= 2, report.line()  # the test queued at the deletion and the late one

    # No trace anywhere: every physical row of every table with user_id, Redis, the queue, every registered store.
    assert set(table_counts(clickhouse, VICTIM, final=False).values()) == {0}
    assert redis_traces(stack_settings, VICTIM) == []
    assert {name: entry["count"] for name, entry in ud.count_user(stack_settings, VICTIM).items()} == dict.fromkeys(
        body["stores"], 0
    )
    assert api_get(f"{api_url}/v1/users/{VICTIM}/tests").status_code == 404
    assert api_get(f"{api_url}/v1/users/{VICTIM}/insights").status_code == 404
    assert ud.load_tombstones(clickhouse, [VICTIM]).keys() == {VICTIM}
    assert redis_traces(stack_settings, VICTIM) == []  # the reads above cached nothing

    # Everyone else exactly as before.
    assert {u: table_counts(clickhouse, u) for u in OTHERS} == before_others
    assert {u: api_get(f"{api_url}/v1/users/{u}/insights").json() for u in OTHERS[:3]} == reads_before
    assert (
        clickhouse.query(
            "SELECT test_id, wpm, accuracy FROM test_results FINAL WHERE user_id = {u:UInt64} ORDER BY test_id",
            parameters={"u": OTHERS[1]},
        ).result_rows
        == results_before
    )

    # Deleting again is harmless and finds nothing.
    again = httpx.delete(url, headers=bearer(tokens["admin"]), timeout=300)
    assert again.status_code == 200 and again.json()["total"] == 0


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def delete_while_a_pass_runs(settings, seed: int) -> None:
    """Delete RACER, then queue a test of theirs timestamped before the deletion: a pass that loaded the tombstones
    just before the deletion was recorded sees exactly this."""
    deleted = ud.delete_user(settings, RACER)
    late = {**simulate_tests(1, 1, seed=seed, first_user_id=RACER)[0], "test_id": f"raced-{seed}"}
    produce(settings, late, timestamp_ms=iso_ms(deleted["deleted_at"]) - 1000)


def tombstones_loaded_before_the_deletion(crash_on_recheck: bool = False):
    """`load_tombstones` for ingest passes that loaded theirs before RACER's deletion was recorded (the pass's own
    load finds none); with `crash_on_recheck` the pass stops before its check after writing."""
    real = deletions.load_tombstones

    def load(client, user_ids=None):
        if user_ids is None:
            return {u: t for u, t in real(client).items() if u != RACER}
        if crash_on_recheck:
            raise SimulatedCrash("stopped after writing, before the tombstone check")
        return real(client, user_ids)

    return load


def test_what_a_pass_that_raced_the_deletion_wrote_is_deleted_again(
    population, stack_settings, clickhouse, monkeypatch
):
    assert table_counts(clickhouse, RACER)["test_results"] == TESTS
    delete_while_a_pass_runs(stack_settings, seed=70)
    monkeypatch.setattr(deletions, "load_tombstones", tombstones_loaded_before_the_deletion())
    report = run_ingest(stack_settings)
    assert report.erased_users >= 1 and report.dropped_deleted == 0, report.line()
    assert set(table_counts(clickhouse, RACER, final=False).values()) == {0}
    assert redis_traces(stack_settings, RACER) == []


def test_a_pass_that_raced_the_deletion_and_stopped_is_cleaned_up_by_the_next(
    population, stack_settings, clickhouse, monkeypatch
):
    delete_while_a_pass_runs(stack_settings, seed=71)
    monkeypatch.setattr(deletions, "load_tombstones", tombstones_loaded_before_the_deletion(crash_on_recheck=True))
    with pytest.raises(SimulatedCrash):
        ingest_once(stack_settings)
    assert table_counts(clickhouse, RACER)["test_results"] == 1  # written after the deletion, then stopped
    monkeypatch.undo()
    report = run_ingest(stack_settings)  # re-reads the stopped pass's range: finds its write marks
    assert report.erased_users >= 1 and report.dropped_deleted >= 1, report.line()
    assert set(table_counts(clickhouse, RACER, final=False).values()) == {0}
    assert redis_traces(stack_settings, RACER) == []


def test_a_deleted_user_who_comes_back_starts_afresh(population, api_url, tokens, stack_settings, clickhouse):
    fresh = {**simulate_tests(1, 1, seed=69, first_user_id=VICTIM)[0], "test_id": "back-again"}
    with api_client(api_url) as client:
        assert client.post("/v1/tests", json=fresh).status_code == 202
    report = run_ingest(stack_settings)
    assert report.tests_written >= 1, report.line()
    rows = clickhouse.query(
        "SELECT test_id FROM test_results FINAL WHERE user_id = {u:UInt64}", parameters={"u": VICTIM}
    ).result_rows
    assert rows == [("back-again",)]


def test_the_cli_exports_and_deletes_a_user(population, exposed, stack_settings, clickhouse, tmp_path):
    env = {**os.environ, **TEST_PORTS, "KEYSCOPE_DATA_DIR": str(stack_settings.data_dir)}

    def keyscope(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [KEYSCOPE, *args], env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
        )

    before = table_counts(clickhouse, LEAVER)
    out = tmp_path / "leaver.zip"
    exported = keyscope("user", "export", str(LEAVER), "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads(zipfile.ZipFile(out).read("manifest.json"))
    generic = {table: n for table, n in before.items() if table not in ud.OWN_STORE_TABLES}
    assert manifest["stores"]["clickhouse"]["parts"] == generic and f"wrote {out}" in exported.stdout
    assert manifest["stores"]["experiments"]["count"] == before["experiment_exposures"] == 1

    refused = keyscope("user", "delete", str(LEAVER))  # no terminal to confirm on, and no --yes
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert table_counts(clickhouse, LEAVER) == before
    deleted = keyscope("user", "delete", str(LEAVER), "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert f"deleted user {LEAVER}: " in deleted.stdout and "clickhouse" in deleted.stdout
    assert set(table_counts(clickhouse, LEAVER, final=False).values()) == {0}
    assert redis_traces(stack_settings, LEAVER) == []
