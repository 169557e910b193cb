"""The prediction routes on the real stack: with no version promoted they answer 503 no_model; the predictor
deployment (started with the stack, before any promotion) picks up versions promoted in the stack's registry
(artifacts of untrained networks), predicts one entry per character for typists with features in Redis (stored by
the ingest job) and without, keeps the API's auth and error contract, and swaps in a newly promoted version while a
stream of requests keeps getting answers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from app.auth import issue_token
from app.features.online import FeatureStore
from app.models.nets import build, save_artifact
from app.models.registry import ModelRegistry
from devstack.simulate import simulate_tests
from pipelines.ingest import run_ingest
from tests.api import SERVICE_HEADERS, api_client, api_get, api_post

pytestmark = pytest.mark.stack

TYPIST, NEWCOMER, OTHER = 33_001, 33_999, 33_002
TEXT = "a quick brown fox jumps over the lazy dog, then naps at noon."  # 61 characters
METRICS = {"pattern": {"mae_ms": 40.0}, "error": {"log_loss": 0.3, "roc_auc": 0.8}, "trajectory": {"mae_wpm": 3.0}}
WINDOW = {"since": "2026-11-01", "until": "2026-12-01", "users": 1, "tests": 6}
PICKUP_S = 90  # the replicas poll every model_poll_s (10 s): a promotion serves well inside this


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "field"} and error["code"] == code and error["field"] == field
    return error


def promote_untrained(registry: ModelRegistry, folder: Path, kind: str, seed: int) -> str:
    """Register an untrained network of `kind` (seeded, so versions predict differently) and promote it."""
    import torch

    torch.manual_seed(seed)
    source = save_artifact(folder / f"{kind}-{seed}", kind, build(kind), {}, {"seed": seed})
    entry = registry.register(kind, source, {"candidate": METRICS[kind], "baseline": METRICS[kind]}, WINDOW, "e2e", {})
    registry.promote(kind, entry.version, f"e2e seed {seed}")
    return entry.version


def typing_version(versions: dict[str, str]) -> str:
    return f"pattern:{versions['pattern']},error:{versions['error']}"


def wait_for_version(api_url: str, expected: str, trajectory: str | None = None) -> dict:
    """Predict until the predictor answers with `expected` model versions (and, given `trajectory`, the trajectory
    route with that version), three times in a row: a replica swaps in each kind's promotion at its next poll, so
    kinds promoted one after another can arrive a poll apart. Returns the last typing answer."""
    deadline, last, in_a_row = time.monotonic() + PICKUP_S, None, 0
    while time.monotonic() < deadline:
        last = api_post(f"{api_url}/v1/predict/typing", json={"user_id": NEWCOMER, "text": "abc"})
        served = last.status_code == 200 and last.json()["model_version"] == expected
        if served and trajectory is not None:
            cold = api_get(f"{api_url}/v1/users/{NEWCOMER}/trajectory")
            served = cold.status_code == 200 and cold.json()["model_version"] == trajectory
        in_a_row = in_a_row + 1 if served else 0
        if in_a_row == 3:
            return last.json()
        time.sleep(0.5)
    raise AssertionError(f"the predictor did not serve {expected} within {PICKUP_S} s; last: {last and last.text}")


@pytest.fixture(scope="module")
def registry(stack):
    with ModelRegistry(stack.settings) as opened:
        yield opened


@pytest.fixture(scope="module")
def typist(stack, ray_driver, api_url, stack_settings):
    """A typist with six tests stored by the ingest job, so with features in the online store."""
    tests = simulate_tests(1, 6, seed=33, first_user_id=TYPIST, traits=True)
    with api_client(api_url) as client:
        assert [client.post("/v1/tests", json=t).status_code for t in tests] == [202] * 6
    run_ingest(stack_settings)
    store = FeatureStore(stack_settings)
    try:
        features = store.get(TYPIST)
        assert features is not None and features.tests == 6
        assert store.get(NEWCOMER) is None
    finally:
        store.close()
    return TYPIST


@pytest.fixture(scope="module")
def promoted(registry, api_url, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("artifacts")
    versions = {kind: promote_untrained(registry, folder, kind, seed=1) for kind in ("pattern", "error", "trajectory")}
    wait_for_version(api_url, typing_version(versions), versions["trajectory"])
    return versions


def test_with_no_version_promoted_predictions_are_503_no_model(stack, tmp_path):
    """The gateway and the predictor's service on a registry where nothing was ever promoted: the stack's own
    registry may already serve versions another test trained (tests/e2e/test_models_e2e.py), so this runs the same
    app without Ray (serve/standalone.py) on the stack's Kafka and Redis and a ClickHouse database of its own."""
    from starlette.testclient import TestClient

    from app.clickhouse.client import clickhouse_client
    from serve.standalone import create_app

    admin = clickhouse_client(stack.settings.clickhouse_url)
    try:
        admin.command("CREATE DATABASE IF NOT EXISTS predict_no_model")
    finally:
        admin.close()
    base = stack.settings.clickhouse_url.rsplit("/", 1)[0]
    settings = stack.settings.with_overrides(clickhouse_url=f"{base}/predict_no_model", models_dir=str(tmp_path))
    with ModelRegistry(settings) as empty:  # migrations applied: the tables exist, with no version in them
        assert all(empty.promoted(kind) is None for kind in ("pattern", "error", "trajectory"))
    with TestClient(create_app(settings), headers=SERVICE_HEADERS) as client:
        for response in (
            client.post("/v1/predict/typing", json={"user_id": NEWCOMER, "text": TEXT}),
            client.get(f"/v1/users/{NEWCOMER}/trajectory"),
        ):
            error = assert_error(response, 503, "no_model")
            assert "no promoted model yet" in error["message"] and response.headers["Retry-After"]
        # Validation and auth come first, as on the Serve app.
        assert_error(client.post("/v1/predict/typing", json={"user_id": NEWCOMER}), 422, "invalid_request", "text")


def test_one_entry_per_character_with_history_and_from_cold(typist, promoted, api_url):
    answers = {}
    for user_id in (TYPIST, NEWCOMER):
        response = api_post(f"{api_url}/v1/predict/typing", json={"user_id": user_id, "text": TEXT})
        assert response.status_code == 200, response.text
        assert response.headers["Cache-Control"] == "no-store"
        body = answers[user_id] = response.json()
        assert set(body) == {"user_id", "text", "model_version", "chars", "predicted_wpm", "predicted_accuracy"}
        assert (body["user_id"], body["text"], body["model_version"]) == (user_id, TEXT, typing_version(promoted))
        assert [c["char"] for c in body["chars"]] == list(TEXT) and len(body["chars"]) == 61
        assert all(c["time_ms"] > 0 and 0 < c["error_prob"] < 1 for c in body["chars"])
        assert body["predicted_wpm"] > 0 and 0 < body["predicted_accuracy"] < 1
    # The typist's features reached the model: the same text is predicted differently for the newcomer.
    assert answers[TYPIST]["chars"] != answers[NEWCOMER]["chars"]
    dvorak = api_post(f"{api_url}/v1/predict/typing", json={"user_id": TYPIST, "text": TEXT, "layout": "dvorak"})
    assert dvorak.status_code == 200 and dvorak.json()["chars"] != answers[TYPIST]["chars"]


def test_trajectory_for_a_typist_and_a_newcomer(typist, promoted, api_url):
    body = api_get(f"{api_url}/v1/users/{TYPIST}/trajectory", params={"tests": 7}).json()
    assert body["user_id"] == TYPIST and body["model_version"] == promoted["trajectory"]
    assert body["interval"] == 0.8 and body["current_wpm"] > 0
    assert [p["test"] for p in body["points"]] == list(range(1, 8))
    assert all(p["low"] <= p["wpm"] <= p["high"] for p in body["points"])
    assert len(api_get(f"{api_url}/v1/users/{TYPIST}/trajectory").json()["points"]) == 20  # the default
    cold = api_get(f"{api_url}/v1/users/{NEWCOMER}/trajectory").json()
    assert (cold["current_wpm"], cold["points"], cold["reason"]) == (None, [], "no tests yet")


def test_a_user_token_predicts_only_for_its_own_user(typist, promoted, api_url, stack):
    secret = stack.settings.token_secrets[0]
    own = bearer(issue_token(secret, "user", user_id=TYPIST, ttl_s=600))
    url = f"{api_url}/v1/predict/typing"
    assert httpx.post(url, json={"user_id": TYPIST, "text": TEXT}, headers=own, timeout=60).status_code == 200
    assert httpx.get(f"{api_url}/v1/users/{TYPIST}/trajectory", headers=own, timeout=60).status_code == 200
    assert_error(httpx.post(url, json={"user_id": OTHER, "text": TEXT}, headers=own, timeout=60), 403, "forbidden")
    assert_error(httpx.get(f"{api_url}/v1/users/{OTHER}/trajectory", headers=own, timeout=60), 403, "forbidden")
    assert_error(httpx.post(url, json={"user_id": TYPIST, "text": TEXT}, timeout=60), 401, "missing_credentials")
    assert_error(httpx.get(f"{api_url}/v1/users/{TYPIST}/trajectory", timeout=60), 401, "missing_credentials")


def test_bad_requests_name_what_is_wrong(promoted, api_url):
    url = f"{api_url}/v1/predict/typing"
    error = assert_error(api_post(url, json={"user_id": NEWCOMER, "text": "x" * 501}), 422, "invalid_request", "text")
    assert "500" in error["message"]
    error = assert_error(api_post(url, json={"user_id": NEWCOMER, "text": TEXT, "layout": "bepo"}), 422,
                         "invalid_request", "layout")  # fmt: skip
    assert "bepo" in error["message"] and "qwerty" in error["message"]
    assert_error(api_post(url, json={"text": TEXT}), 422, "invalid_request", "user_id")
    assert_error(api_post(url, json={"user_id": NEWCOMER, "text": ""}), 422, "invalid_request", "text")
    assert_error(api_post(url, content=b"{not json", headers={"Content-Type": "application/json"}), 400,
                 "invalid_json", "body")  # fmt: skip
    for tests in (0, 101, "many"):
        response = api_get(f"{api_url}/v1/users/{NEWCOMER}/trajectory", params={"tests": tests})
        assert_error(response, 422, "invalid_request", "tests")


def test_a_new_promotion_is_picked_up_while_requests_keep_being_answered(promoted, registry, api_url, tmp_path):
    """A stream of predictions runs across the promotion of a new pattern version: every request is answered 200,
    the old version answers first and the new one once a replica has swapped it in."""
    old = typing_version(promoted)
    seen: list[tuple[int, str | None]] = []
    stop = asyncio.Event()

    async def stream(client: httpx.AsyncClient, worker: int) -> None:
        while not stop.is_set():
            try:
                response = await client.post("/v1/predict/typing", json={"user_id": NEWCOMER + worker, "text": TEXT})
            except httpx.HTTPError as exc:  # a dropped connection is a dropped request
                seen.append((0, repr(exc)))
                continue
            seen.append((response.status_code, response.json().get("model_version")))

    async def scenario() -> str:
        async with httpx.AsyncClient(base_url=api_url, headers=SERVICE_HEADERS, timeout=60) as client:
            workers = [asyncio.create_task(stream(client, w)) for w in range(6)]
            await asyncio.sleep(1.0)
            newer = await asyncio.to_thread(promote_untrained, registry, tmp_path, "pattern", 2)
            new = f"pattern:{newer},error:{promoted['error']}"
            deadline = time.monotonic() + PICKUP_S
            # Until the latest 20 answers all come from it: every replica has swapped.
            while time.monotonic() < deadline and not (len(seen) > 20 and all(v == new for _, v in seen[-20:])):
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # a little more traffic on the new version
            stop.set()
            await asyncio.gather(*workers)
            return new

    new = asyncio.run(scenario())
    statuses = [status for status, _ in seen]
    assert len(seen) > 50 and set(statuses) == {200}, [s for s in seen if s[0] != 200][:5]
    versions = [version for _, version in seen]
    assert versions[0] == old and versions[-1] == new and set(versions) == {old, new}


def test_predictor_metrics_reach_prometheus(promoted, api_url, stack_settings):
    # Ray's metrics agent listens on the GCS port + 4 (devstack/stack.py) and exports with a `ray_` prefix.
    port = int(stack_settings.ray_address.rsplit(":", 1)[1]) + 4
    api_post(f"{api_url}/v1/predict/typing", json={"user_id": NEWCOMER, "text": TEXT})
    wanted = {"ray_keyscope_predictor_batch_requests_bucket", "ray_keyscope_predictor_version_swaps"}
    route = 'route="/v1/predict/typing"'
    deadline, found, text = time.monotonic() + 60, set(), ""
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        found = {name for name in wanted if any(line.startswith(name) for line in text.splitlines())}
        if found == wanted and route in text:
            break
        time.sleep(2)
    assert found == wanted and route in text
    swaps = [line for line in text.splitlines() if line.startswith("ray_keyscope_predictor_version_swaps")]
    assert any('model="pattern"' in line for line in swaps)
