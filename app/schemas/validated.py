"""The validated typing test every stage after the edge trusts, and the error a rejected submission raises."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.keys import key_name


class FieldError(ValueError):
    """Input that cannot be accepted; `field` names the offending part of it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SubmissionError(FieldError):
    """A submission that cannot be accepted; `field` names the offending part of the input."""


@dataclass(frozen=True)
class TypingTest:
    """One finished typing test, validated. Times are whole ms from `started_at`; `up_ms` is -1 if unknown."""

    user_id: int
    test_id: str
    started_at_ms: int
    text: str
    layout: str
    language: str
    key_codes: np.ndarray  # int32: Unicode code point, or a negative named-key code
    down_ms: np.ndarray  # int32, non-decreasing
    up_ms: np.ndarray  # int32, -1 where the release is unknown

    @property
    def keystroke_count(self) -> int:
        return int(self.key_codes.shape[0])

    def keys(self) -> list[str]:
        """The key names, as submitted."""
        return [key_name(int(c)) for c in self.key_codes]

