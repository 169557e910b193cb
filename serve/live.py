"""The /v1/live WebSocket: live feedback while a test is typed (the protocol: docs/live.md).

One connection carries one test at a time. The credential comes as `Authorization: Bearer` on the upgrade request,
as the `token` query parameter, or in the first message (browsers cannot set WebSocket headers); it is checked and
charged to its rate limit once per connection, and every `start` or `resume` is authorized for its user like a REST
route (a user token for itself only, a service key or admin token for any user); every `start` and `resume` is
charged to the rate limit too, as a request (batches are not). A refused credential gets an
error message and the connection closes (4401 no or a bad credential, 4429 rate limited); every other bad
message gets `{"type": "error", "message", "field"}` and the session goes on.

The session's state lives in this replica while its connection is open (app/live/session.py). When the
connection drops mid-test, the session is parked in Redis for `Settings.live_resume_s` (app/live/parking.py) and a
`resume` on any replica continues it; a connection silent for `Settings.live_idle_s` is closed (4408) and its
session dropped. `end` submits the whole test through the same code as POST /v1/tests (Gateway.queue_submission),
so a test reaches Kafka only once it is valid, and re-sending it with its `test_id` stores nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Protocol

import orjson
from fastapi import WebSocket, WebSocketDisconnect

from app.auth import AuthError, Principal, authorize_user
from app.config import Settings
from app.experiments.runtime import ExperimentRuntime
from app.live.history import History
from app.live.parking import SessionParking
from app.live.protocol import Auth, End, Keys, ProtocolError, Resume, Start, decode, parse, token_of
from app.live.session import LiveSession
from serve.gateway import Gateway
from serve.prediction_request import MAX_PREDICT_CHARS, TypingRequest

log = logging.getLogger("keyscope.live")

CLOSE_UNAUTHENTICATED = 4401
CLOSE_RATE_LIMITED = 4429
CLOSE_IDLE = 4408
CLOSE_SERVICE_RESTART = 1012  # the replica is shutting down: the client reconnects and resumes elsewhere
HISTORY_TIMEOUT_S = 3.0  # `ready` waits this long for the insights and the prediction, then starts without
RESUME_WAIT_S = 2.0  # a reconnect can beat the old connection's drop being noticed and parked: look again this long
RESUME_POLL_S = 0.05
HINT_FACTOR = "hint_style"  # the experiment factor a session's hints follow (app/experiments/definition.py)
MISSING_CREDENTIAL = (
    'send the credential first: {"type": "auth", "token": "…"}, or as ?token= or an Authorization header'
)


class LiveBackend(Protocol):
    """What a live connection needs of the API (GatewayLive; a fake in the unit tests)."""

    settings: Settings

    async def principal(self, credential: str) -> Principal: ...

    async def charge(self, principal: Principal) -> bool: ...

    async def history(self, user_id: int, text: str, layout: str) -> History: ...

    def hint_style(self, user_id: int) -> str: ...

    async def submit(self, principal: Principal, submission: dict[str, Any]) -> tuple[int, dict[str, Any]]: ...

    async def park(self, session: LiveSession) -> None: ...

    async def claim(self, user_id: int, session_id: str) -> LiveSession | None: ...


class GatewayLive:
    """The live backend of a Serve replica: the replica's Gateway (serve/gateway.py) and the resume window."""

    def __init__(self, gateway: Gateway, experiments: ExperimentRuntime | None = None) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.parking = SessionParking(gateway.settings.redis_url, gateway.settings.live_resume_s)
        self.experiments = experiments

    def hint_style(self, user_id: int) -> str:
        """The hints a new session of the user gives: the variant of a running `hint_style` experiment (recorded as
        an exposure), else all of them. Memory only (app/experiments/runtime.py)."""
        chosen = self.experiments.choose(user_id, HINT_FACTOR) if self.experiments is not None else None
        return chosen.value if chosen is not None else "all"

    async def principal(self, credential: str) -> Principal:
        principal = await self.gateway.authenticated(f"Bearer {credential}")
        if not await self.charge(principal):
            raise AuthError(429, "rate_limited", f"too many requests for {principal.name}; retry later")
        return principal

    async def charge(self, principal: Principal) -> bool:
        """Take one request from the principal's rate limit (app/ratelimit.py); False when it is spent."""
        return (await self.gateway.limiter.check(principal)).allowed

    async def history(self, user_id: int, text: str, layout: str) -> History:
        """The typist's cached insights and the predictor's view of the text; what fails or is slow is left out."""

        async def insights() -> dict[str, Any] | None:
            body = await self.gateway.cached_read(user_id, "insights", {})
            return None if body is None else json.loads(body)

        async def prediction() -> dict[str, Any] | None:
            if self.gateway.predictions is None:
                return None
            body = await self.gateway.predictions.predict_typing(
                TypingRequest(user_id, text[:MAX_PREDICT_CHARS], layout)
            )
            return None if body is None else json.loads(body)

        async def bounded(call: Any, what: str) -> dict[str, Any] | None:
            try:
                return await asyncio.wait_for(call(), HISTORY_TIMEOUT_S)
            except Exception as exc:  # a live test runs without history rather than not at all
                log.warning("live: %s of user %s unavailable: %r", what, user_id, exc)
                return None

        found, predicted = await asyncio.gather(bounded(insights, "insights"), bounded(prediction, "prediction"))
        return History.from_sources(found, predicted)

    async def submit(self, principal: Principal, submission: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = await self.gateway.queue_submission(principal, submission)
        return response.status_code, json.loads(response.body)

    async def park(self, session: LiveSession) -> None:
        await self.parking.park(session)

    async def claim(self, user_id: int, session_id: str) -> LiveSession | None:
        return await self.parking.claim(user_id, session_id)

    async def close(self) -> None:
        await hand_over_open_sessions()  # before the resume window's connection closes
        await self.parking.close()
        if self.experiments is not None:
            await asyncio.to_thread(self.experiments.close)


def error(message: str, field: str | None = None) -> dict[str, Any]:
    return {"type": "error", "message": message, "field": field}


# The connections this process serves (a replica is one process), so a replica being shut down (a downscale, a
# redeploy) hands their sessions to the resume window instead of dropping them with the process.
_OPEN: set[LiveConnection] = set()


async def hand_over_open_sessions() -> int:
    """Park every open connection's session and close the connection with 1012, so its client resumes on another
    replica; the number of sessions parked. Serve calls it, through the deployment's shutdown, once the replica has
    stopped taking new connections."""
    parked = 0
    for connection in list(_OPEN):
        parked += await connection.hand_over()
    return parked


class LiveConnection:
    """One WebSocket connection: its principal and the session it carries."""

    def __init__(self, backend: LiveBackend, websocket: WebSocket) -> None:
        self.backend = backend
        self.websocket = websocket
        self.principal: Principal | None = None
        self.session: LiveSession | None = None

    async def send(self, message: dict[str, Any]) -> None:
        await self.websocket.send_text(orjson.dumps(message).decode())

    async def refuse(self, exc: AuthError) -> None:
        await self.send(error(exc.message, "token"))
        await self.websocket.close(CLOSE_RATE_LIMITED if exc.status == 429 else CLOSE_UNAUTHENTICATED, exc.code)

    async def run(self) -> None:
        """Serve the connection until it closes; a session whose connection drops mid-test is parked."""
        try:
            await self.serve()
        except asyncio.CancelledError:
            # Serve cancels the request of a client that went away, which can come before the disconnect message.
            await asyncio.shield(self.dropped())
            raise
        except WebSocketDisconnect:
            await self.dropped()
        except Exception as exc:  # sending to a connection that just went away, say
            log.warning("live: connection of session %s failed: %r", self.session and self.session.session_id, exc)
            await self.dropped()

    async def serve(self) -> None:
        await self.websocket.accept()
        header = self.websocket.headers.get("authorization")
        credential = self.websocket.query_params.get("token")
        if header:
            scheme, _, value = header.strip().partition(" ")
            credential = value.strip() if scheme.lower() == "bearer" else header
        if credential:
            try:
                self.principal = await self.backend.principal(credential)
            except AuthError as exc:
                await self.refuse(exc)
                return
        idle_s = self.backend.settings.live_idle_s
        while True:
            try:
                async with asyncio.timeout(idle_s):  # not wait_for: that wraps every message in a task of its own
                    message = await self.websocket.receive()
            except TimeoutError:
                self.session = None  # expired: not resumable
                await self.send(error(f"no message for {idle_s:g} s: the session has expired"))
                await self.websocket.close(CLOSE_IDLE, "idle")
                return
            if message["type"] == "websocket.disconnect":
                await self.dropped()
                return
            try:
                if not await self.handle(message.get("text") or message.get("bytes") or ""):
                    return
            except ProtocolError as exc:
                await self.send(error(exc.message, exc.field))
            except WebSocketDisconnect:
                raise
            except Exception:  # a bug must not end the typist's test: say so, keep the session
                log.exception("live: message of session %s failed", self.session and self.session.session_id)
                await self.send(error("the server could not handle this message"))

    async def dropped(self) -> None:
        """The connection is gone mid-test: park the session for a `resume`."""
        if self.session is not None:
            try:
                await self.backend.park(self.session)
            except Exception as exc:
                log.warning("live: parking session %s failed: %r", self.session.session_id, exc)

    async def hand_over(self) -> int:
        """The replica is going away: park the session (once: it is no longer this connection's) and close with
        1012. 1 if a session was parked."""
        session, self.session = self.session, None
        if session is not None:
            try:
                await self.backend.park(session)
            except Exception as exc:
                log.warning("live: parking session %s at shutdown failed: %r", session.session_id, exc)
                session = None
        try:
            await self.send(error("the server is restarting: reconnect and send `resume` with your session_id"))
            await self.websocket.close(CLOSE_SERVICE_RESTART, "restart")
        except Exception:  # the client went away meanwhile
            pass
        return int(session is not None)

    async def handle(self, raw: str | bytes) -> bool:
        """Answer one message; False when the connection was closed."""
        obj = decode(raw)
        if self.principal is None:
            token = token_of(obj)
            if token is None:
                await self.refuse(AuthError(401, "missing_credentials", MISSING_CREDENTIAL))
                return False
            try:
                self.principal = await self.backend.principal(token)
            except AuthError as exc:
                await self.refuse(exc)
                return False
            if obj.get("type") == "auth":
                return True
        message = parse(obj, self.backend.settings.max_text_chars)
        if isinstance(message, Keys):
            if self.session is None:
                raise ProtocolError("type", "no test is running: send `start` first")
            await self.send(self.session.apply(message))
        elif isinstance(message, Start):
            await self.start(message)
        elif isinstance(message, Resume):
            await self.resume(message)
        elif isinstance(message, End):
            await self.end()
        elif isinstance(message, Auth):
            raise ProtocolError("type", "this connection is authenticated already")
        return True

    def authorize(self, user_id: int) -> None:
        assert self.principal is not None
        try:
            authorize_user(self.principal, user_id)
        except AuthError as exc:
            raise ProtocolError("user_id", exc.message) from None

    async def charge(self) -> None:
        """A test started or resumed costs a request of the rate limit, as a submission does; batches cost none."""
        assert self.principal is not None
        if not await self.backend.charge(self.principal):
            raise ProtocolError("type", f"too many requests for {self.principal.name}; retry in a few seconds")

    async def start(self, start: Start) -> None:
        if self.session is not None:
            raise ProtocolError("type", "a test is running: send `end` first")
        self.authorize(start.user_id)
        await self.charge()
        history = await self.backend.history(start.user_id, start.text, start.layout)
        self.session = LiveSession.begin(
            start, history, int(time.time() * 1000), self.backend.settings.max_keystrokes,
            hint_style=self.backend.hint_style(start.user_id),
        )  # fmt: skip
        await self.send(self.session.ready())

    async def resume(self, resume: Resume) -> None:
        assert self.principal is not None
        if self.session is not None:
            raise ProtocolError("type", "a test is running: send `end` first")
        user_id = resume.user_id if resume.user_id is not None else self.principal.user_id
        if user_id is None:
            raise ProtocolError("user_id", "is required with a service key")
        self.authorize(user_id)
        await self.charge()
        deadline = time.monotonic() + RESUME_WAIT_S
        session = await self.backend.claim(user_id, resume.session_id)
        while session is None and time.monotonic() < deadline:
            await asyncio.sleep(RESUME_POLL_S)
            session = await self.backend.claim(user_id, resume.session_id)
        if session is None:
            raise ProtocolError("session_id", f"user {user_id} has no session {resume.session_id} to resume: it "
                                "ended, expired, is still open elsewhere, or is not theirs")  # fmt: skip
        self.session = session
        await self.send({**session.ready(), "resumed": True, "position": session.metrics.position,
                         "keystrokes": len(session.codes)})  # fmt: skip

    async def end(self) -> None:
        if self.session is None:
            raise ProtocolError("type", "no test is running: send `start` first")
        if not self.session.codes:
            raise ProtocolError("keystrokes", "the test has no keystrokes to submit")
        assert self.principal is not None
        status, body = await self.backend.submit(self.principal, self.session.submission())
        if status != 202:
            problem = body.get("error") or {}
            message = problem.get("message") or f"the submission was refused ({status})"
            raise ProtocolError(problem.get("field") or "end", message)
        self.session = None
        await self.send({"type": "done", "test_id": body["test_id"]})


async def live_session(backend: LiveBackend, websocket: WebSocket) -> None:
    """Serve one /v1/live connection until it closes."""
    connection = LiveConnection(backend, websocket)
    _OPEN.add(connection)
    try:
        await connection.run()
    finally:
        _OPEN.discard(connection)
