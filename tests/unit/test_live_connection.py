"""The /v1/live connection (serve/live.py) over a real WebSocket (Starlette's test client) with a backend that
keeps its state in memory: authentication paths, bad messages, a session to `done`, idle expiry and resume. The same
behaviours run against the real stack in tests/e2e/test_live.py."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.auth import AuthError, Principal, authorize_user
from app.config import Settings
from app.live.history import History
from app.live.session import LiveSession
from app.schemas import parse_submission
from serve.live import (
    CLOSE_IDLE,
    CLOSE_RATE_LIMITED,
    CLOSE_SERVICE_RESTART,
    CLOSE_UNAUTHENTICATED,
    hand_over_open_sessions,
    live_session,
)

USER, OTHER = 8_100_101, 8_100_102
TOKENS = {"user-token": Principal("user", USER, f"user:{USER}"), "service-key": Principal("service", None, "svc")}
TEXT = "the cat sat"


class MemoryBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.submitted: list[dict[str, Any]] = []
        self.parked: dict[tuple[int, str], LiveSession] = {}
        self.allowance = 1000  # requests the rate limit lets through
        self.style = "all"  # what a hint_style experiment would give every user

    async def charge(self, principal: Principal) -> bool:
        self.allowance -= 1
        return self.allowance >= 0

    async def principal(self, credential: str) -> Principal:
        if credential not in TOKENS:
            raise AuthError(401, "invalid_credentials", "unknown credential")
        if not await self.charge(TOKENS[credential]):
            raise AuthError(429, "rate_limited", "too many requests")
        return TOKENS[credential]

    async def history(self, user_id: int, text: str, layout: str) -> History:
        return History()

    def hint_style(self, user_id: int) -> str:
        return self.style

    async def submit(self, principal: Principal, submission: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        test = parse_submission(submission)
        authorize_user(principal, test.user_id)
        self.submitted.append(submission)
        return 202, {"test_id": test.test_id, "status": "queued"}

    async def park(self, session: LiveSession) -> None:
        self.parked[(session.user_id, session.session_id)] = session

    async def claim(self, user_id: int, session_id: str) -> LiveSession | None:
        return self.parked.pop((user_id, session_id), None)


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend(Settings(live_idle_s=30.0))


@pytest.fixture
def client(backend) -> TestClient:
    app = FastAPI()

    @app.websocket("/v1/live")
    async def live(websocket: WebSocket) -> None:
        await live_session(backend, websocket)

    @app.post("/shutdown")  # what the live deployment's shutdown calls
    async def shutdown() -> dict[str, int]:
        return {"parked": await hand_over_open_sessions()}

    return TestClient(app)


def keys(text: str, start_ms: int = 0, step_ms: int = 150) -> list[dict]:
    return [{"key": c, "down": start_ms + i * step_ms, "up": start_ms + i * step_ms + 60} for i, c in enumerate(text)]


def start(user_id: int = USER, **extra: Any) -> dict:
    return {"type": "start", "user_id": user_id, "text": TEXT, "layout": "qwerty", **extra}


def test_a_whole_session_from_header_credential_to_done(client, backend):
    with client.websocket_connect("/v1/live", headers={"Authorization": "Bearer user-token"}) as ws:
        ws.send_json(start(test_id="t-live-1"))
        ready = ws.receive_json()
        assert ready["type"] == "ready" and ready["session_id"].startswith("ls_") and ready["expect"] == []
        ws.send_json({"type": "keys", "keystrokes": keys("the "), "seq": 1})
        live = ws.receive_json()
        assert live["type"] == "live" and live["seq"] == 1 and live["session_id"] == ready["session_id"]
        assert live["position"] == 4 and live["accuracy"] == 1.0 and live["wpm"] > 0
        assert set(live) >= {"wpm", "accuracy", "iki_cv", "health", "position", "hints"}
        ws.send_json({"type": "keys", "keystrokes": keys("cat sat", 1000)})
        assert ws.receive_json()["position"] == len(TEXT)
        ws.send_json({"type": "end"})
        assert ws.receive_json() == {"type": "done", "test_id": "t-live-1"}
    [submission] = backend.submitted
    assert submission["user_id"] == USER and submission["text"] == TEXT
    assert "".join(k["key"] for k in submission["keystrokes"]) == TEXT


@pytest.mark.parametrize("how", ["query", "first message", "start message"])
def test_a_browser_sends_its_token_as_a_query_parameter_or_in_the_first_message(client, how):
    url = "/v1/live?token=user-token" if how == "query" else "/v1/live"
    with client.websocket_connect(url) as ws:
        if how == "first message":
            ws.send_json({"type": "auth", "token": "user-token"})
            ws.send_json(start())
        else:
            ws.send_json(start(**({"token": "user-token"} if how == "start message" else {})))
        assert ws.receive_json()["type"] == "ready"


@pytest.mark.parametrize("url,first", [("/v1/live", start()), ("/v1/live?token=forged", start())])
def test_no_or_a_bad_credential_gets_an_error_and_the_connection_closes(client, url, first):
    with client.websocket_connect(url) as ws:
        if url == "/v1/live":
            ws.send_json(first)
        answer = ws.receive_json()
        assert answer["type"] == "error" and answer["field"] == "token"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == CLOSE_UNAUTHENTICATED


def test_a_user_token_opens_sessions_for_itself_only_a_service_key_for_anyone(client):
    with client.websocket_connect("/v1/live?token=user-token") as ws:
        ws.send_json(start(OTHER))
        refused = ws.receive_json()
        assert refused["type"] == "error" and refused["field"] == "user_id"
        ws.send_json(start(USER))  # the connection goes on
        assert ws.receive_json()["type"] == "ready"
    with client.websocket_connect("/v1/live?token=service-key") as ws:
        ws.send_json(start(OTHER))
        assert ws.receive_json()["type"] == "ready"


@pytest.mark.parametrize(
    "message,field",
    [
        ("not json", "message"),
        ("[1, 2]", "message"),
        ('{"type": "dance"}', "type"),
        ('{"type": "keys", "keystrokes": [{"key": "a", "down": 0}]}', "type"),  # before start
        ('{"type": "start", "user_id": 8100101}', "text"),
        ('{"type": "start", "user_id": 8100101, "text": "x", "layout": "klingon"}', "layout"),
        ('{"type": "end"}', "type"),
    ],
)
def test_bad_messages_get_an_error_naming_the_field_and_the_session_goes_on(client, message, field):
    with client.websocket_connect("/v1/live?token=user-token") as ws:
        ws.send_text(message)
        answer = ws.receive_json()
        assert answer == {"type": "error", "message": answer["message"], "field": field}
        ws.send_json(start())
        assert ws.receive_json()["type"] == "ready"


def test_a_bad_batch_changes_nothing(client, backend):
    with client.websocket_connect("/v1/live?token=user-token") as ws:
        ws.send_json(start())
        ws.receive_json()
        ws.send_json({"type": "keys", "keystrokes": keys("th", 1000)})
        assert ws.receive_json()["position"] == 2
        for bad, field in [
            ([{"key": "e", "down": 500}], "keystrokes[0].down"),  # before the last press
            ([{"key": "e", "down": 2000}, {"key": "NotAKey", "down": 2100}], "keystrokes[1].key"),
            ([{"key": "e", "down": 2000, "up": 1999}], "keystrokes[0].up"),
            ([], "keystrokes"),
        ]:
            ws.send_json({"type": "keys", "keystrokes": bad})
            assert ws.receive_json()["field"] == field
        ws.send_json({"type": "keys", "keystrokes": [{"key": "e", "down": 2000}]})
        assert ws.receive_json()["position"] == 3
        ws.send_json({"type": "end"})
        assert ws.receive_json()["type"] == "done"
    assert len(backend.submitted[0]["keystrokes"]) == 3


def test_a_dropped_session_resumes_for_its_user_only(client, backend):
    with client.websocket_connect("/v1/live?token=service-key") as ws:
        ws.send_json(start(USER))
        session_id = ws.receive_json()["session_id"]
        ws.send_json({"type": "keys", "keystrokes": keys("the ")})
        ws.receive_json()
    assert (USER, session_id) in backend.parked
    with client.websocket_connect("/v1/live?token=service-key") as ws:
        ws.send_json({"type": "resume", "session_id": session_id, "user_id": OTHER})
        assert ws.receive_json()["field"] == "session_id"
    with client.websocket_connect("/v1/live?token=user-token") as ws:
        ws.send_json({"type": "resume", "session_id": session_id})
        resumed = ws.receive_json()
        assert resumed["type"] == "ready" and resumed["resumed"] and resumed["position"] == 4
        ws.send_json({"type": "keys", "keystrokes": keys("cat", 2000)})
        assert ws.receive_json()["position"] == 7
        ws.send_json({"type": "end"})
        assert ws.receive_json()["type"] == "done"
    assert len(backend.submitted[0]["keystrokes"]) == 7


def test_an_idle_connection_expires(backend):
    backend.settings = Settings(live_idle_s=0.3)
    app = FastAPI()

    @app.websocket("/v1/live")
    async def live(websocket: WebSocket) -> None:
        await live_session(backend, websocket)

    with TestClient(app).websocket_connect("/v1/live?token=user-token") as ws:
        ws.send_json(start())
        ws.receive_json()
        answer = ws.receive_json()  # nothing sent: the server gives up
        assert answer["type"] == "error" and "expired" in answer["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == CLOSE_IDLE
    assert backend.parked == {}  # an expired session is gone, not resumable


def test_a_binary_frame_is_read_as_a_text_one(client):
    with client.websocket_connect("/v1/live?token=user-token") as ws:
        ws.send_bytes(b'{"type": "end"}')
        assert ws.receive_json()["field"] == "type"
        ws.send_bytes(b"\xff\xfe")
        assert ws.receive_json()["field"] == "message"


def test_every_start_is_charged_to_the_rate_limit_and_a_spent_one_refuses_the_connection(client, backend):
    backend.allowance = 2  # the connection, then one start
    with client.websocket_connect("/v1/live?token=user-token") as ws:
        ws.send_json(start())
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "keys", "keystrokes": keys("the")})  # batches cost nothing
        ws.receive_json()
        ws.send_json({"type": "end"})
        assert ws.receive_json()["type"] == "done"
        ws.send_json(start())
        refused = ws.receive_json()
        assert refused["type"] == "error" and "too many requests" in refused["message"]
    with client.websocket_connect("/v1/live?token=user-token") as ws:
        assert ws.receive_json()["field"] == "token"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == CLOSE_RATE_LIMITED


def test_the_live_application_serves_the_socket_at_its_route_prefix(backend, monkeypatch):
    """Serve mounts the `live` application at /v1/live (serve/config.yaml) as ASGI root_path; the REST app has no
    WebSocket, so /v1/live cannot drift back into the ingress unnoticed (plain uvicorn adds it on request)."""
    from starlette.routing import WebSocketRoute

    from serve import routes

    monkeypatch.setattr(routes, "_live", backend)
    client = TestClient(routes.build_live_app(), root_path=routes.LIVE_PATH)
    for path in (routes.LIVE_PATH, routes.LIVE_PATH + "/"):
        with client.websocket_connect(path + "?token=user-token") as ws:
            ws.send_json(start())
            assert ws.receive_json()["type"] == "ready"
    assert client.get(routes.LIVE_PATH + "/healthz").json() == {"status": "ok", "app": "live"}
    assert client.get(routes.LIVE_PATH + "/nothing").json()["error"]["code"] == "http_error"

    def sockets(app: FastAPI) -> list[str]:
        return [r.path for r in app.routes if isinstance(r, WebSocketRoute)]

    assert sockets(routes.build_app()) == []
    assert sockets(routes.build_app(live=True)) == [routes.LIVE_PATH]


def test_a_session_gives_the_hints_of_the_style_its_user_is_assigned(client, backend):
    # Three wrong presses in a row call for a hint; a user in the `none` variant of a hint_style experiment sees none.
    wrong = [{"key": "x", "down": 100 * i} for i in range(3)]
    for style, expected in (("all", ["errors_in_a_row"]), ("none", [])):
        backend.style = style
        with client.websocket_connect("/v1/live", headers={"Authorization": "Bearer user-token"}) as ws:
            ws.send_json(start())
            assert ws.receive_json()["hint_style"] == style
            ws.send_json({"type": "keys", "keystrokes": wrong})
            assert [h["kind"] for h in ws.receive_json()["hints"]] == expected


def test_a_replica_shutting_down_hands_its_open_sessions_to_the_resume_window(client, backend):
    with client.websocket_connect("/v1/live?token=user-token") as ws:
        ws.send_json(start(test_id="t-handed-over"))
        session_id = ws.receive_json()["session_id"]
        ws.send_json({"type": "keys", "keystrokes": keys("the ")})
        ws.receive_json()
        assert client.post("/shutdown").json() == {"parked": 1}
        assert "resume" in ws.receive_json()["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == CLOSE_SERVICE_RESTART
    assert list(backend.parked) == [(USER, session_id)]  # parked once, by the shutdown
    with client.websocket_connect("/v1/live?token=user-token") as ws:
        ws.send_json({"type": "resume", "session_id": session_id})
        assert ws.receive_json()["position"] == 4
        ws.send_json({"type": "keys", "keystrokes": keys("cat sat", 2000)})
        assert ws.receive_json()["position"] == len(TEXT)
        ws.send_json({"type": "end"})
        assert ws.receive_json() == {"type": "done", "test_id": "t-handed-over"}
    assert client.post("/shutdown").json() == {"parked": 0}  # nothing open any more
