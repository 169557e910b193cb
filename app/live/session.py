"""One live test: its text, the keystrokes so far, their metrics and hint rules, and the submission it ends in.

A session belongs to one user for its whole life: its id is random (unguessable) and wherever sessions are kept
they are keyed by user id and session id together, so a session id never reaches another user's state. Its
state is bounded by the text (Settings.max_text_chars) and the keystrokes (Settings.max_keystrokes, the
submission's own limit). It serializes to JSON (`to_json`) for the resume window; `from_json` replays the
keystrokes, so a resumed session's metrics are the ones it left with.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from app.keys import key_name
from app.live.hints import HintRules
from app.live.history import History, expect
from app.live.metrics import LiveMetrics
from app.live.protocol import Keys, ProtocolError, Start
from app.schemas.fields import format_started_at


def new_session_id() -> str:
    return "ls_" + secrets.token_urlsafe(18)


def new_test_id() -> str:
    return "live-" + secrets.token_hex(12)


@dataclass
class LiveSession:
    session_id: str
    user_id: int
    test_id: str
    text: str
    layout: str
    language: str
    started_at_ms: int
    history: History
    max_keystrokes: int
    codes: list[int] = field(default_factory=list)
    downs: list[int] = field(default_factory=list)
    ups: list[int] = field(default_factory=list)
    hint_style: str = "all"  # app/live/hints.py; a `hint_style` experiment's variant chooses it
    metrics: LiveMetrics = field(init=False)
    rules: HintRules = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = LiveMetrics(self.text)
        self.rules = HintRules(self.text, self.history, expect(self.text, self.history), style=self.hint_style)

    @classmethod
    def begin(
        cls, start: Start, history: History, now_ms: int, max_keystrokes: int, hint_style: str = "all"
    ) -> LiveSession:
        """A new session for a `start` message; the test id and start time default to fresh ones."""
        return cls(
            new_session_id(), start.user_id, start.test_id or new_test_id(), start.text, start.layout, start.language,
            start.started_at_ms if start.started_at_ms is not None else now_ms, history, max_keystrokes,
            hint_style=hint_style,
        )  # fmt: skip

    def ready(self) -> dict[str, Any]:
        return {
            "type": "ready",
            "session_id": self.session_id,
            "test_id": self.test_id,
            "expect": [spot.to_json() for spot in self.rules.shown_spots()],
            "hint_style": self.hint_style,
        }

    def apply(self, keys: Keys) -> dict[str, Any]:
        """The live answer to a batch; ProtocolError (nothing applied) when the batch does not continue the test."""
        n = int(keys.codes.shape[0])
        if len(self.codes) + n > self.max_keystrokes:
            raise ProtocolError(
                "keystrokes", f"the test would hold more than {self.max_keystrokes} keystrokes; send `end`"
            )
        codes, downs, ups = keys.codes.tolist(), keys.downs.tolist(), keys.ups.tolist()
        if self.downs and downs[0] < self.downs[-1]:
            raise ProtocolError("keystrokes[0].down", f"times must not decrease ({downs[0]} after {self.downs[-1]})")
        presses = [self.metrics.press(code, down) for code, down in zip(codes, downs)]
        self.codes += codes
        self.downs += downs
        self.ups += ups
        answer: dict[str, Any] = {"type": "live", "session_id": self.session_id}
        if keys.seq is not None:
            answer["seq"] = keys.seq
        answer.update(self.metrics.snapshot())
        answer["keystrokes"] = len(self.codes)
        answer["hints"] = self.rules.after(self.metrics, presses)
        return answer

    def submission(self) -> dict[str, Any]:
        """The finished test as a POST /v1/tests body."""
        keystrokes = [
            {"key": key_name(code), "down": down} if up < 0 else {"key": key_name(code), "down": down, "up": up}
            for code, down, up in zip(self.codes, self.downs, self.ups)
        ]
        return {
            "user_id": self.user_id,
            "test_id": self.test_id,
            "started_at": format_started_at(self.started_at_ms),
            "text": self.text,
            "layout": self.layout,
            "language": self.language,
            "keystrokes": keystrokes,
        }

    # -- the resume window ----------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id, "user_id": self.user_id, "test_id": self.test_id, "text": self.text,
            "layout": self.layout, "language": self.language, "started_at_ms": self.started_at_ms,
            "history": self.history.to_json(), "max_keystrokes": self.max_keystrokes, "codes": self.codes,
            "downs": self.downs, "ups": self.ups, "hint_style": self.hint_style,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LiveSession:
        """The session `to_json` wrote, its keystrokes replayed (their hints were sent before the drop)."""
        session = cls(
            data["session_id"], data["user_id"], data["test_id"], data["text"], data["layout"], data["language"],
            data["started_at_ms"], History.from_json(data["history"]), data["max_keystrokes"],
            hint_style=data.get("hint_style", "all"),
        )  # fmt: skip
        presses = [session.metrics.press(code, down) for code, down in zip(data["codes"], data["downs"])]
        session.rules.after(session.metrics, presses)
        session.codes, session.downs, session.ups = list(data["codes"]), list(data["downs"]), list(data["ups"])
        return session
