"""The public API's contract on the real stack: bearer auth (service keys, user and admin tokens), rate limits,
readiness, ETags, pagination, practice drills, and the Prometheus metrics Ray exports."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import pytest

from app.auth import issue_token
from app.practice import drill_targets
from devstack.simulate import simulate_tests
from pipelines.ingest import run_ingest
from tests.api import SERVICE_HEADERS, api_client, api_get

pytestmark = pytest.mark.stack

USER_A, USER_B = 31_001, 31_002


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def secrets(stack) -> str:
    return stack.settings.token_secrets[0]


@pytest.fixture(scope="module")
def two_users(stack, ray_driver, api_url, stack_settings):
    tests = simulate_tests(2, 5, seed=31, first_user_id=USER_A)
    with api_client(api_url) as client:
        assert [client.post("/v1/tests", json=t).status_code for t in tests] == [202] * 10
    run_ingest(stack_settings)
    return tests


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert set(body["error"]) == {"code", "message", "field"}


def test_no_credential_is_401_with_a_bearer_challenge(two_users, api_url):
    for path in (f"/v1/users/{USER_A}/insights", f"/v1/users/{USER_A}/tests"):
        response = httpx.get(api_url + path)
        assert_error(response, 401, "missing_credentials")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(httpx.post(api_url + "/v1/tests", json=two_users[0]), 401, "missing_credentials")


def test_forged_expired_and_unknown_credentials_are_401(two_users, api_url, secrets):
    valid = issue_token(secrets, "user", user_id=USER_A, ttl_s=600)
    header, payload, signature = valid.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = str(USER_B)  # a user rewriting their token to read someone else
    raised = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    forged = f"{header}.{raised}.{signature}"
    expired = issue_token(secrets, "user", user_id=USER_A, ttl_s=60, now=time.time() - 3600)
    other_secret = issue_token("not-the-stack-secret-" + "x" * 24, "admin", ttl_s=600)  # 44 bytes, as long as real ones
    url = f"{api_url}/v1/users/{USER_B}/insights"
    assert_error(httpx.get(url, headers=bearer(forged)), 401, "invalid_credentials")
    assert_error(httpx.get(url, headers=bearer(other_secret)), 401, "invalid_credentials")
    assert_error(httpx.get(url, headers=bearer(expired)), 401, "token_expired")
    assert_error(httpx.get(url, headers=bearer("ksk_" + "x" * 43)), 401, "invalid_credentials")


def test_a_user_reads_and_submits_only_their_own_data(two_users, api_url, secrets):
    token = bearer(issue_token(secrets, "user", user_id=USER_A, ttl_s=600))
    assert httpx.get(f"{api_url}/v1/users/{USER_A}/insights", headers=token).status_code == 200
    for path in ("insights", "tests", "keys", "progress", "practice"):
        assert_error(httpx.get(f"{api_url}/v1/users/{USER_B}/{path}", headers=token), 403, "forbidden")
    theirs = next(t for t in two_users if t["user_id"] == USER_B)
    assert_error(httpx.post(f"{api_url}/v1/tests", json=theirs, headers=token), 403, "forbidden")
    own = {**next(t for t in two_users if t["user_id"] == USER_A), "test_id": "typed-in-the-dashboard"}
    response = httpx.post(f"{api_url}/v1/tests", json=own, headers=token)
    assert response.status_code == 202 and response.json()["test_id"] == "typed-in-the-dashboard"


def test_admin_and_service_credentials_read_any_user(two_users, api_url, secrets):
    admin = bearer(issue_token(secrets, "admin", ttl_s=600))
    for headers in (admin, SERVICE_HEADERS):
        for user_id in (USER_A, USER_B):
            assert httpx.get(f"{api_url}/v1/users/{user_id}/keys", headers=headers).status_code == 200


def test_a_burst_over_the_user_limit_gets_429_with_retry_after(two_users, api_url, stack):
    # A user token's limit is rate_limit_user_per_s with a burst of rate_limit_user_burst.
    settings = stack.settings
    token = bearer(issue_token(settings.token_secrets[0], "user", user_id=USER_B, ttl_s=600))
    n = settings.rate_limit_user_burst + 3 * int(settings.rate_limit_user_per_s) + 20

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=api_url, headers=token, timeout=60) as client:
            return await asyncio.gather(*(client.get(f"/v1/users/{USER_B}/tests") for _ in range(n)))

    started = time.monotonic()
    responses = asyncio.run(burst())
    elapsed = time.monotonic() - started
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}
    served = statuses.count(200)
    # Never more than the burst plus what refilled meanwhile; and the burst itself always served.
    refilled = settings.rate_limit_user_per_s * (elapsed + 1)
    assert settings.rate_limit_user_burst <= served <= settings.rate_limit_user_burst + refilled
    refused = next(r for r in responses if r.status_code == 429)
    assert_error(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 5
    # Another user's budget is untouched.
    other = bearer(issue_token(settings.token_secrets[0], "user", user_id=USER_A, ttl_s=600))
    assert httpx.get(f"{api_url}/v1/users/{USER_A}/tests", headers=other).status_code == 200


def test_readiness_checks_every_dependency_and_health_needs_no_credential(stack, api_url):
    ready = httpx.get(api_url + "/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"kafka": "ok", "clickhouse": "ok", "redis": "ok"}}
    assert httpx.get(api_url + "/healthz").json() == {"status": "ok"}


def test_reads_carry_an_etag_and_revalidate_with_304(two_users, api_url):
    first = api_get(f"{api_url}/v1/users/{USER_A}/insights")
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"
    again = api_get(f"{api_url}/v1/users/{USER_A}/insights", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    stale = api_get(f"{api_url}/v1/users/{USER_A}/insights", headers={"If-None-Match": '"something-else"'})
    assert stale.status_code == 200 and stale.json() == first.json()


def test_test_lists_page_with_a_cursor_without_gaps_or_repeats(two_users, api_url):
    posted = sorted(t["test_id"] for t in two_users if t["user_id"] == USER_B)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = api_get(f"{api_url}/v1/users/{USER_B}/tests", params=params).json()
        seen += [t["test_id"] for t in body["tests"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == len(set(seen)) and sorted(seen) == posted
    response = api_get(f"{api_url}/v1/users/{USER_B}/tests", params={"cursor": "not-a-cursor"})
    assert_error(response, 422, "invalid_request")
    assert response.json()["error"]["field"] == "cursor"


def test_practice_drills_the_users_weak_keys(two_users, api_url):
    insights = api_get(f"{api_url}/v1/users/{USER_A}/insights").json()
    body = api_get(f"{api_url}/v1/users/{USER_A}/practice", params={"length": 120, "seed": 5}).json()
    assert body["user_id"] == USER_A and body["source"] == "drill"
    assert 60 <= len(body["text"]) <= 240
    keys, pairs = drill_targets(insights)
    assert body["targets"] == {"keys": keys, "pairs": pairs} and keys
    assert any(key in body["text"] for key in keys)
    assert api_get(f"{api_url}/v1/users/{USER_A}/practice", params={"length": 120, "seed": 5}).json() == body
    # A typist with no tests yet still gets a passage of common words.
    fresh = api_get(f"{api_url}/v1/users/31999/practice", params={"length": 50}).json()
    assert len(fresh["text"]) >= 20


def test_api_and_ingest_metrics_reach_prometheus(two_users, api_url, stack_settings):
    # Ray's metrics agent listens on the GCS port + 4 (devstack/stack.py) and exports with a `ray_` prefix.
    port = int(stack_settings.ray_address.rsplit(":", 1)[1]) + 4
    api_get(f"{api_url}/v1/users/{USER_A}/insights")
    wanted = {
        "ray_keyscope_api_request_latency_ms_bucket",
        "ray_keyscope_api_cache_lookups",
        "ray_keyscope_ingest_consumer_lag",
        "ray_keyscope_ingest_processing_latency_seconds",
    }
    route = 'route="/v1/users/{user_id}/insights"'
    # Wait for this request's own series too: the families can appear first, from earlier requests' routes, and
    # the agent exports each new series at its next interval.
    deadline, found, text = time.monotonic() + 60, set(), ""
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        found = {name for name in wanted if any(line.startswith(name) for line in text.splitlines())}
        if found == wanted and route in text:
            break
        time.sleep(2)
    assert found == wanted
    assert route in text


def test_a_users_absence_is_cached_until_their_first_test_lands(stack, ray_driver, api_url, stack_settings):
    import redis

    from app.cache import NOT_FOUND, user_cache_key

    user_id = 31_500
    assert_error(api_get(f"{api_url}/v1/users/{user_id}/tests"), 404, "unknown_user")
    cached = redis.Redis.from_url(stack_settings.redis_url).hgetall(user_cache_key(user_id))
    assert cached == {b"tests:limit=20": NOT_FOUND}  # polling for a first test costs Redis, not ClickHouse
    test = simulate_tests(1, 1, seed=315, first_user_id=user_id)[0]
    with api_client(api_url) as client:
        assert client.post("/v1/tests", json=test).status_code == 202
    run_ingest(stack_settings)
    body = api_get(f"{api_url}/v1/users/{user_id}/tests").json()
    assert [t["test_id"] for t in body["tests"]] == [test["test_id"]]


def test_cached_first_pages_get_the_new_tests_exactly_as_the_store_pages_them(
    stack, ray_driver, api_url, stack_settings
):
    import redis

    from app.cache import encode_read, user_cache_key
    from serve.reads import UserReads

    user_id = 31_600
    tests = simulate_tests(1, 5, seed=316, first_user_id=user_id)  # test i starts on day i
    with api_client(api_url) as client:
        assert [client.post("/v1/tests", json=tests[i]).status_code for i in (0, 1, 3)] == [202] * 3
        run_ingest(stack_settings)
        for limit, shown in ((2, 2), (20, 3)):  # cached as a first page of each size
            assert len(client.get(f"/v1/users/{user_id}/tests", params={"limit": limit}).json()["tests"]) == shown
        assert client.get(f"/v1/users/{user_id}/insights").status_code == 200
        # Day 2 arrives late (older than a stored test), day 4 is the newest.
        assert [client.post("/v1/tests", json=tests[i]).status_code for i in (2, 4)] == [202] * 2
        run_ingest(stack_settings)

        cached = redis.Redis.from_url(stack_settings.redis_url).hgetall(user_cache_key(user_id))
        assert set(cached) == {b"tests:limit=2", b"tests:limit=20"}  # the pages carried, the insights dropped
        reads = UserReads(stack_settings)
        try:
            for limit in (2, 20):
                from_store = encode_read(reads._tests_page(user_id, limit, None))
                assert cached[f"tests:limit={limit}".encode()] == from_store
                assert client.get(f"/v1/users/{user_id}/tests", params={"limit": limit}).content == from_store
        finally:
            asyncio.run(reads.close())
        # Paging on from the carried page's cursor reaches every test once.
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            body = client.get(f"/v1/users/{user_id}/tests", params=params).json()
            seen += [t["test_id"] for t in body["tests"]]
            if (cursor := body["next"]) is None:
                break
    assert seen == [tests[i]["test_id"] for i in (4, 3, 2, 1, 0)]
