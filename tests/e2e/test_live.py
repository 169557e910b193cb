"""/v1/live against the Serve applications on the real stack: WebSocket sessions through the stack's HTTP port
(HAProxy to the `live` application's replicas when Ray bundles it), served by that application and not the REST
ingress, credentials refused and accepted, hints from a typist's stored history (the `keyscope` application's
insights, reached across applications), a session that ends in exactly one stored test (even when the platform POSTs
it again), bad messages that change nothing (and reach no Kafka topic), a dropped connection resumed, a silent one
expired, and two users' sessions that never mix."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import yaml
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from app.auth import issue_token, settings_with_local_secrets
from app.kafka import end_offsets
from devstack.cluster_state import haproxy_servers, serve_details
from devstack.stack import haproxy_binary
from pipelines.ingest import run_ingest
from serve.deploy import CONFIG_PATH
from serve.live import CLOSE_IDLE, CLOSE_UNAUTHENTICATED
from tests.api import SERVICE_HEADERS, api_get, api_post
from tests.typists import slow_q_history

pytestmark = pytest.mark.stack

TYPIST, NEWCOMER, THIRD = 8_100_001, 8_100_002, 8_100_003
SILENT, ROUTED = 8_200_101, 8_200_102
HISTORY_TESTS = 8
TEXT = "the queen quit quickly and the aqua quilt was quiet"
STEP_MS = 170


def user_token(stack, user_id: int) -> str:
    secret = settings_with_local_secrets(stack.settings).token_secrets[0]
    return issue_token(secret, "user", user_id=user_id, ttl_s=3600)


def live(api_url: str, query: str = "", headers: dict[str, str] | None = None) -> ClientConnection:
    return connect(api_url.replace("http://", "ws://") + "/v1/live" + query, additional_headers=headers,
                   open_timeout=30, close_timeout=5)  # fmt: skip


def ask(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    ws.send(json.dumps(message))
    return json.loads(ws.recv(timeout=30))


def strokes(text: str, first_ms: int = 0) -> list[dict[str, int | str]]:
    return [{"key": c, "down": first_ms + i * STEP_MS, "up": first_ms + i * STEP_MS + 70} for i, c in enumerate(text)]


def start(user_id: int, **extra: Any) -> dict[str, Any]:
    return {"type": "start", "user_id": user_id, "text": TEXT, "layout": "qwerty", **extra}


def ingest(settings) -> None:  # noqa: ANN001
    with ThreadPoolExecutor(max_workers=1) as pool:  # the job runs its own event loops
        pool.submit(run_ingest, settings).result()


def topic_end(settings) -> dict[int, int]:  # noqa: ANN001
    import asyncio

    return {
        topic: asyncio.run(end_offsets(settings, topic)) for topic in (settings.keystroke_topic, settings.dlq_topic)
    }


@pytest.fixture(scope="module")
def slow_q_typist(stack, ray_driver, api_url, stack_settings) -> int:
    tests = slow_q_history(TYPIST, HISTORY_TESTS, seed=18, start=datetime(2026, 11, 1, 9, tzinfo=UTC))
    assert [api_post(f"{api_url}/v1/tests", json=t).status_code for t in tests] == [202] * HISTORY_TESTS
    ingest(stack_settings)
    insights = api_get(f"{api_url}/v1/users/{TYPIST}/insights").json()
    assert "q" in [unit["key"] for unit in insights["weak_keys"]]
    return TYPIST


def test_credentials_are_refused_before_anything_happens(stack, api_url):
    for query, first in [("", start(TYPIST)), ("?token=not-a-token", None), ("?token=ksk_" + "x" * 43, None)]:
        with live(api_url, query) as ws:
            if first is not None:
                ws.send(json.dumps(first))
            answer = json.loads(ws.recv(timeout=30))
            assert answer["type"] == "error" and answer["field"] == "token", answer
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=30)
            assert closed.value.rcvd.code == CLOSE_UNAUTHENTICATED
    # A user token opens sessions for its own user only; the refusal names the field and the connection goes on.
    with live(api_url, headers={"Authorization": f"Bearer {user_token(stack, NEWCOMER)}"}) as ws:
        refused = ask(ws, start(TYPIST))
        assert refused["type"] == "error" and refused["field"] == "user_id"
        assert ask(ws, start(NEWCOMER))["type"] == "ready"


def test_a_session_gives_hints_from_history_and_ends_in_exactly_one_stored_test(
    stack, slow_q_typist, api_url, stack_settings
):
    with live(api_url) as ws:  # the browser's way: the credential in the first message
        ws.send(json.dumps({"type": "auth", "token": user_token(stack, slow_q_typist)}))
        ready = ask(ws, start(slow_q_typist, test_id="live-e2e-1"))
        assert ready["type"] == "ready" and ready["test_id"] == "live-e2e-1"
        q_spots = [s for s in ready["expect"] if s["chars"].lower() == "q"]
        assert q_spots and q_spots[0]["kind"] == "slow_key" and q_spots[0]["evidence"]["source"] == "insights"
        assert [s["position"] for s in q_spots] == [i for i, c in enumerate(TEXT) if c == "q"]

        answers, keystrokes = [], strokes(TEXT)
        for seq, first in enumerate(range(0, len(keystrokes), 3)):
            answer = ask(ws, {"type": "keys", "keystrokes": keystrokes[first : first + 3], "seq": seq})
            assert answer["type"] == "live" and answer["seq"] == seq and answer["session_id"] == ready["session_id"]
            answers.append(answer)
        assert [a["position"] for a in answers] == [min(len(TEXT), 3 * (i + 1)) for i in range(len(answers))]
        last = answers[-1]
        assert last["accuracy"] == 1.0 and last["wpm"] == pytest.approx((len(TEXT) - 1) / ((len(TEXT) - 1) * STEP_MS
                                                                          / 60_000) / 5, abs=0.1)  # fmt: skip
        hints = [h for a in answers for h in a["hints"]]
        ahead = [h for h in hints if h["kind"] == "slow_spot_ahead"]
        assert ahead and all(h["evidence"]["source"] == "insights" for h in ahead)
        # The typist's slow 'q' (a slow key, or a pair holding it) is announced before each word that holds it.
        assert any("q" in h["evidence"]["chars"].lower() for h in ahead), ahead
        pattern = r"'.+' ahead — (your slowest|one of your slow) (key|pair).*"
        assert all(re.fullmatch(pattern, h["message"]) for h in ahead)

        done = ask(ws, {"type": "end"})
        assert done == {"type": "done", "test_id": "live-e2e-1"}

    # The platform's backend sends the same test again: it is stored once.
    again = {"user_id": slow_q_typist, "test_id": "live-e2e-1", "started_at": "2026-12-06T10:00:00Z", "text": TEXT,
             "keystrokes": strokes(TEXT)}  # fmt: skip
    assert api_post(f"{api_url}/v1/tests", json=again).status_code == 202
    ingest(stack_settings)
    tests = api_get(f"{api_url}/v1/users/{slow_q_typist}/tests", params={"limit": 100}).json()["tests"]
    assert [t["test_id"] for t in tests].count("live-e2e-1") == 1
    assert len(tests) == HISTORY_TESTS + 1
    stored = next(t for t in tests if t["test_id"] == "live-e2e-1")
    assert stored["wpm"] == pytest.approx(last["wpm"], abs=0.05) and stored["accuracy"] == 1.0


def test_bad_messages_get_errors_the_session_goes_on_and_nothing_reaches_kafka(stack, api_url, stack_settings):
    before = topic_end(stack_settings)
    with live(api_url, headers=SERVICE_HEADERS) as ws:
        assert ask(ws, {"type": "end"})["field"] == "type"  # nothing started
        ws.send("{not json")
        assert json.loads(ws.recv(timeout=30))["field"] == "message"
        assert ask(ws, {"type": "start", "user_id": THIRD, "text": ""})["field"] == "text"
        assert ask(ws, start(THIRD))["type"] == "ready"
        assert ask(ws, {"type": "end"})["field"] == "keystrokes"  # nothing typed: nothing to submit
        assert ask(ws, {"type": "keys", "keystrokes": strokes("th", 1000)})["position"] == 2
        for bad, field in [
            ([{"key": "e", "down": 10}], "keystrokes[0].down"),
            ([{"key": "Hyper", "down": 2000}], "keystrokes[0].key"),
            ([{"key": "e", "down": 2000, "up": 10}], "keystrokes[0].up"),
            ("th", "keystrokes"),
        ]:
            answer = ask(ws, {"type": "keys", "keystrokes": bad})
            assert answer == {"type": "error", "message": answer["message"], "field": field}
        assert ask(ws, {"type": "keys", "keystrokes": strokes("e", 2000)})["position"] == 3
    assert topic_end(stack_settings) == before


def test_a_dropped_connection_resumes_with_its_session_id_for_its_user_only(stack, api_url, stack_settings):
    with live(api_url, headers={"Authorization": f"Bearer {user_token(stack, THIRD)}"}) as ws:
        ready = ask(ws, start(THIRD, test_id="live-e2e-resume"))
        assert ask(ws, {"type": "keys", "keystrokes": strokes("the que")})["position"] == 7
        ws.socket.close()  # dropped, no closing handshake
    intruder = {"Authorization": f"Bearer {user_token(stack, NEWCOMER)}"}
    with live(api_url, headers=intruder) as ws:
        assert ask(ws, {"type": "resume", "session_id": ready["session_id"]})["field"] == "session_id"
    with live(api_url, headers=SERVICE_HEADERS) as ws:  # a service key names the user; the wrong one finds nothing
        assert ask(ws, {"type": "resume", "session_id": ready["session_id"], "user_id": NEWCOMER})["field"] == (
            "session_id"
        )
    with live(api_url, f"?token={user_token(stack, THIRD)}") as ws:
        resumed = ask(ws, {"type": "resume", "session_id": ready["session_id"]})
        assert resumed["type"] == "ready" and resumed["resumed"] and resumed["position"] == 7
        answer = ask(ws, {"type": "keys", "keystrokes": strokes(TEXT[7:], 7 * STEP_MS)})
        assert answer["position"] == len(TEXT) and answer["accuracy"] == 1.0
        assert ask(ws, {"type": "end"}) == {"type": "done", "test_id": "live-e2e-resume"}
    with live(api_url, f"?token={user_token(stack, THIRD)}") as ws:  # a session resumes once
        assert ask(ws, {"type": "resume", "session_id": ready["session_id"]})["field"] == "session_id"
    ingest(stack_settings)
    [stored] = api_get(f"{api_url}/v1/users/{THIRD}/tests").json()["tests"]
    assert stored["test_id"] == "live-e2e-resume" and stored["keystroke_count"] == len(TEXT)


def test_two_users_sessions_never_mix(stack, api_url):
    texts = {NEWCOMER: "abc abc abc abc", THIRD: "xyz xyz xyz xyz xyz"}
    sockets = {u: live(api_url, f"?token={user_token(stack, u)}") for u in texts}
    try:
        ready = {u: ask(ws, {"type": "start", "user_id": u, "text": texts[u]}) for u, ws in sockets.items()}
        assert ready[NEWCOMER]["session_id"] != ready[THIRD]["session_id"]
        for i in range(4):  # interleaved batches: each answer is its own session's
            for u, ws in sockets.items():
                batch = strokes(texts[u][i * 4 : i * 4 + 4], i * 4 * STEP_MS)
                answer = ask(ws, {"type": "keys", "keystrokes": batch, "seq": i})
                assert answer["session_id"] == ready[u]["session_id"] and answer["seq"] == i
                assert answer["position"] == min(4 * (i + 1), len(texts[u])) and answer["accuracy"] == 1.0
    finally:
        for ws in sockets.values():
            ws.close()


def test_v1_live_is_served_by_the_live_application_not_the_rest_ingress(stack, api_url, stack_settings):
    """Each WebSocket is an ongoing request for its whole life, so /v1/live is an application of its own
    (serve/config.yaml): the REST ingress's autoscaling never sees the sessions."""
    # The route table of the stack's HTTP port (HAProxy, or Serve's proxy): the longest matching prefix wins.
    assert httpx.get(api_url + "/-/routes", timeout=10).json() == {"/v1/live": "live", "/": "keyscope"}
    applications = serve_details(stack_settings)["applications"]
    assert {name: app["status"] for name, app in applications.items()} == {"keyscope": "RUNNING", "live": "RUNNING"}
    assert applications["live"]["route_prefix"] == "/v1/live"
    assert set(applications["live"]["deployments"]) == {"live"}
    assert "live" not in applications["keyscope"]["deployments"]
    [config] = [app for app in yaml.safe_load(CONFIG_PATH.read_text())["applications"] if app["name"] == "live"]
    min_replicas = config["deployments"][0]["autoscaling_config"]["min_replicas"]
    replicas = applications["live"]["deployments"]["live"]["replicas"]
    assert sum(r["state"] == "RUNNING" for r in replicas) >= min_replicas
    assert httpx.get(api_url + "/v1/live/healthz", timeout=10).json() == {"status": "ok", "app": "live"}

    def sessions(app: str) -> int:  # connections HAProxy has given the app's replicas so far
        return sum(server.sessions for server in haproxy_servers(stack_settings, app))

    proxied = haproxy_binary() is not None  # else the stack runs Serve's own proxy (devstack/stack.py)
    before = {app: sessions(app) for app in applications} if proxied else {}
    with live(api_url, f"?token={user_token(stack, ROUTED)}") as ws:
        assert ask(ws, start(ROUTED))["type"] == "ready"
        if proxied:
            assert sessions("live") == before["live"] + 1, "the WebSocket went to a live replica"
            assert sessions("keyscope") >= before["keyscope"]


def test_a_silent_connection_is_closed_and_its_session_does_not_resume(stack, api_url, stack_settings):
    idle_s = stack_settings.live_idle_s
    assert idle_s <= 10, "the test stack shortens KEYSCOPE_LIVE_IDLE_S (tests/conftest.py)"
    token = user_token(stack, SILENT)
    with live(api_url, f"?token={token}") as ws:
        ready = ask(ws, start(SILENT, test_id="live-e2e-idle"))
        assert ask(ws, {"type": "keys", "keystrokes": strokes("the q")})["position"] == 5
        silent = time.monotonic()
        expired = json.loads(ws.recv(timeout=idle_s + 30))
        waited = time.monotonic() - silent
        assert expired["type"] == "error" and "expired" in expired["message"], expired
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd.code == CLOSE_IDLE
    assert idle_s - 0.5 <= waited < idle_s + 10, waited
    # Expired, not parked: no connection can resume it, its own user's included.
    with live(api_url, f"?token={token}") as ws:
        refused = ask(ws, {"type": "resume", "session_id": ready["session_id"]})
        assert refused["type"] == "error" and refused["field"] == "session_id", refused
