"""Practice texts on the real stack (issue #16, serving): a typist slow on 'q' gets a rule-based drill at once while
their signature is queued, the practice deployment's background writer (live generation is on in the test stack)
writes language-model texts for it with the real model, and the next requests get those, never the one just served;
the signature's texts are reachable without personal data with CDN headers; what was served to whom is exported and
deleted with the user.

One writing round of the model (about 10-20 s of CPU per signature) carries every assertion about written texts.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from datetime import UTC, datetime

import httpx
import pytest
import redis

from app.auth import issue_token
from app.clickhouse.client import clickhouse_client
from app.practice.served import served_key, signature_key
from app.practice.signature import GENERAL_NEEDS
from app.practice.texts import TEXTS_PREFIX, WANTED_KEY, claim_key
from pipelines.ingest import run_ingest
from pipelines.insights import refresh_users
from tests.api import api_client, api_get
from tests.typists import slow_q_history

pytestmark = pytest.mark.stack

TYPIST = 7_600_001  # slow on 'q', HISTORY_TESTS tests
NEWCOMER = 7_600_002  # no tests
HISTORY_TESTS = 12
WRITING_TIMEOUT_S = 240  # the model writes ~30-90 tokens/s on 2 cores; a round is 2 prompts × 4 samples × 64 tokens
WORDS = 5  # below every written text's length (the scorer's minimum is 8): each answer is one written text


def history() -> list[dict]:
    return slow_q_history(TYPIST, HISTORY_TESTS, seed=17, start=datetime(2026, 10, 1, 9, tzinfo=UTC))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def db(stack_settings) -> redis.Redis:
    client = redis.Redis.from_url(stack_settings.redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def tokens(stack) -> dict[str, str]:
    secret = stack.settings.token_secrets[0]
    return {
        "typist": issue_token(secret, "user", user_id=TYPIST, ttl_s=900),
        "admin": issue_token(secret, "admin", ttl_s=900),
    }


@pytest.fixture(scope="module")
def typist(stack, ray_driver, api_url, stack_settings) -> int:
    with api_client(api_url) as client:
        statuses = [client.post("/v1/tests", json=t).status_code for t in history()]
    assert statuses == [202] * HISTORY_TESTS
    run_ingest(stack_settings)
    forget_texts_of_signature(stack_settings)
    return TYPIST


def forget_texts_of_signature(settings) -> None:
    """Earlier tests' slow-'q' typists (the dashboard's) can share this typist's signature, and the deployment's
    writer wrote texts for theirs: drop those, so this typist's first request is a miss as the tests below need."""
    assert refresh_users(settings, [TYPIST]) == 1  # records the typist's signature
    db = redis.Redis.from_url(settings.redis_url)
    clickhouse = clickhouse_client(settings.clickhouse_url)
    try:
        signature = db.get(signature_key(TYPIST)).decode()
        clickhouse.command("ALTER TABLE practice_texts DELETE WHERE signature = {s:String} SETTINGS mutations_sync = 1",
                           parameters={"s": signature})
        db.delete(TEXTS_PREFIX + signature, claim_key(signature))
        db.zrem(WANTED_KEY, signature)
    finally:
        clickhouse.close()
        db.close()


def practice_text(api_url: str, user_id: int, words: int = WORDS, **options) -> httpx.Response:
    return api_get(f"{api_url}/v1/users/{user_id}/practice-text", params={"words": words}, **options)


@pytest.fixture(scope="module")
def first_answer(typist, api_url, db) -> dict:
    """The typist's first answer: their signature has no texts yet, so a drill, and the signature queued."""
    response = practice_text(api_url, typist, words=30)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    # Read at once: the writer takes the signature off the queue only after the model has written (seconds).
    body["queued"] = db.zscore(WANTED_KEY, body["signature"]) is not None
    return body


@pytest.fixture(scope="module")
def written_answers(first_answer, api_url) -> list[dict]:
    """Answers polled until the background writer's texts arrive, then one more: [first LM answer, the next]."""
    deadline = time.monotonic() + WRITING_TIMEOUT_S
    while time.monotonic() < deadline:
        body = practice_text(api_url, TYPIST).json()
        if body["generator"] == "lm":
            break
        assert body["generator"] == "rules" and body["signature"] == first_answer["signature"]
        time.sleep(2)
    else:
        pytest.fail(f"no written text for {first_answer['signature']} within {WRITING_TIMEOUT_S} s")
    # Two texts at least, so the next answer has one not served yet (fewer than two unserved queues more).
    url = f"{api_url}/v1/practice-texts/{first_answer['signature']}"
    while len(api_get(url).json()["texts"]) < 2:
        assert time.monotonic() < deadline, "the writer wrote fewer than two texts"
        time.sleep(2)
    return [body, practice_text(api_url, TYPIST).json()]


def test_a_user_without_tests_gets_general_practice_text(stack, api_url):
    response = practice_text(api_url, NEWCOMER, words=20)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == NEWCOMER
    assert body["signature"] == GENERAL_NEEDS.signature == "qwerty-en-s1-any"
    assert body["generator"] in ("rules", "lm")
    assert 5 <= len(body["text"].split()) <= 20


def test_a_miss_answers_a_drill_at_once_and_queues_the_signature(first_answer):
    assert first_answer["generator"] == "rules"
    assert first_answer["signature"].startswith("qwerty-en-") and "q" in first_answer["signature"].split("-")[3]
    assert "q" in first_answer["targets"]
    assert first_answer["text"].count("q") >= 3, first_answer["text"]
    assert first_answer["text_ids"] == []
    assert first_answer["queued"], "the missed signature was not queued for writing"


def test_the_background_writer_writes_texts_that_drill_the_targets(first_answer, written_answers):
    lm = written_answers[0]
    assert lm["generator"] == "lm"
    assert lm["signature"] == first_answer["signature"]
    assert lm["text_ids"] and lm["text"]
    assert lm["score"]["target_share"] > 0, lm  # rescored as cut to `words`, so it may end mid-sentence
    print("practice-text answer:", json.dumps(lm))  # docs/api.md's example (pytest -s)


def test_consecutive_requests_do_not_repeat_the_text_just_served(written_answers):
    first, second = written_answers
    assert second["generator"] == "lm"
    assert not set(first["text_ids"]) & set(second["text_ids"]), (first, second)


def test_a_signatures_texts_are_cacheable_without_personal_data(first_answer, written_answers, api_url, tokens):
    signature = first_answer["signature"]
    url = f"{api_url}/v1/practice-texts/{signature}"
    response = httpx.get(url, headers=bearer(tokens["typist"]))  # any valid credential
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "public, max-age=300"
    body = response.json()
    assert body["signature"] == signature
    served = {text_id for answer in written_answers for text_id in answer["text_ids"]}
    assert served <= {text["id"] for text in body["texts"]}
    assert all(set(text) == {"id", "text", "targets", "generator", "score", "created_at"} for text in body["texts"])
    assert str(TYPIST) not in response.text
    print("practice-texts answer:", response.text)  # docs/api.md's example (pytest -s)
    etag = response.headers["etag"]
    again = httpx.get(url, headers={**bearer(tokens["typist"]), "If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag
    assert httpx.get(url).status_code == 401


def test_a_malformed_signature_is_422_naming_the_field(api_url):
    for signature in ("not-a-signature", "qwerty-en-s2-t.e", "nolayout-en-s1-any", "qwerty-en-s9-q"):
        response = api_get(f"{api_url}/v1/practice-texts/{signature}")
        assert response.status_code == 422, (signature, response.text)
        assert response.json()["error"]["field"] == "signature"
        assert response.json()["error"]["code"] == "invalid_request"


def test_words_out_of_range_is_422_naming_the_field(api_url):
    for words in (4, 201):
        response = practice_text(api_url, NEWCOMER, words=words)
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "words"


def test_a_user_token_reads_only_its_own_practice_text(typist, api_url, tokens):
    own = practice_text(api_url, TYPIST, headers=bearer(tokens["typist"]))
    assert own.status_code == 200
    other = practice_text(api_url, NEWCOMER, headers=bearer(tokens["typist"]))
    assert other.status_code == 403 and other.json()["error"]["code"] == "forbidden"


def test_practice_metrics_reach_prometheus(written_answers, stack_settings):
    port = int(stack_settings.ray_address.rsplit(":", 1)[1]) + 4  # Ray's metrics agent (devstack/stack.py)
    wanted = ('ray_keyscope_practice_latency_ms_bucket', 'result="hit"', 'result="miss"',
              "ray_keyscope_practice_texts_written")
    deadline, text = time.monotonic() + 60, ""
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        if all(part in text for part in wanted):
            break
        time.sleep(2)
    assert [part for part in wanted if part not in text] == []


def test_what_was_served_is_exported_and_deleted_with_the_user(written_answers, api_url, tokens, db):
    assert db.exists(served_key(TYPIST))
    response = httpx.get(f"{api_url}/v1/users/{TYPIST}/export", headers=bearer(tokens["typist"]), timeout=120)
    assert response.status_code == 200, response.text
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert "practice/practice.json" in archive.namelist()
    record = json.loads(archive.read("practice/practice.json"))
    assert set(written_answers[0]["text_ids"]) <= set(record["served_text_ids"])
    deleted = httpx.delete(f"{api_url}/v1/users/{TYPIST}", headers=bearer(tokens["admin"]), timeout=300)
    assert deleted.status_code == 200, deleted.text
    assert not db.exists(served_key(TYPIST))
