"""The hint rules: what to tell a typist while they type, each hint with the evidence behind it.

- slow spot ahead: the word the cursor is in holds, still untyped, one of the typist's slow pairs or keys
  (insights) or a character the predictor expects to be slow ("'ed' ahead — your slowest pair"); once per word,
  as soon as a batch reaches it
- errors in a row: ERROR_RUN incorrect character presses in a row ("three errors in a row: slow down"); a correct
  press, Backspace or Delete ends a run, other named keys do not (the error bursts of app/analytics/errors.py)
- rhythm break: a hesitation as app/analytics/rhythm.py defines it (an interval over 3 × the median so far, or
  over 2 s), once RHYTHM_MIN_INTERVALS intervals give the median meaning; at most one per RHYTHM_COOLDOWN_MS
- pace: the test's WPM so far against the predictor's WPM for this text (else the typist's mean), once
  PACE_MIN_CHARS are typed, when it is PACE_MARGIN off; at most one per PACE_COOLDOWN_MS of typing

`style` (the `hint_style` experiment factor, app/experiments/definition.py) says which of them a session gives:
"all", "slow_spots" (only the slow spots ahead, the hints grounded in the typist's history) or "none" (a control
group that types with live numbers and no hints).

State is a few counters and the word last looked at: constant per session.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from app.keys import NAMED_KEY_CODES
from app.live.history import History, SlowSpot, unit_label
from app.live.metrics import LiveMetrics, Press

ERROR_RUN = 3
RHYTHM_MIN_INTERVALS = 10
RHYTHM_COOLDOWN_MS = 3000
PACE_MIN_CHARS = 20
PACE_MARGIN = 0.10  # of the target WPM
PACE_MIN_WPM = 3.0  # and at least this many WPM off
PACE_COOLDOWN_MS = 5000
HINT_STYLES = ("all", "slow_spots", "none")
_ENDS_RUN = (NAMED_KEY_CODES["Backspace"], NAMED_KEY_CODES["Delete"])
_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five"}


def hint(kind: str, message: str, evidence: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "message": message, "evidence": evidence}


def spot_hint(spot: SlowSpot) -> dict[str, Any]:
    """The hint announcing a slow spot ahead."""
    label = unit_label(spot.chars.lower() if spot.kind != "predicted_slow" else spot.chars)
    if spot.kind == "predicted_slow":
        why = f"predicted slow ({spot.evidence['predicted_ms']:.0f} ms)"
    else:
        noun = "pair" if spot.kind == "slow_pair" else "key"
        rank = spot.evidence["rank"]
        why = f"your slowest {noun}" if rank == 1 else f"one of your slow {noun}s (#{rank})"
    evidence = {"position": spot.position, "chars": spot.chars, "spot": spot.kind, **spot.evidence}
    return hint("slow_spot_ahead", f"{label} ahead — {why}", evidence)


@dataclass
class HintRules:
    """Hints for each batch of presses of one test."""

    text: str
    history: History
    spots: list[SlowSpot]
    error_run: int = 0
    last_rhythm_ms: int | None = None
    last_pace_ms: int | None = None
    word_checked: int = -1  # start of the last word looked ahead into
    style: str = "all"
    _spot_starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.style not in HINT_STYLES:
            raise ValueError(f"unknown hint style {self.style!r}: one of {', '.join(HINT_STYLES)}")
        self._spot_starts = [s.position for s in self.spots]

    def shown_spots(self) -> list[SlowSpot]:
        """The slow spots the session announces at its start (none for the style without hints)."""
        return [] if self.style == "none" else self.spots

    def after(self, metrics: LiveMetrics, presses: list[Press]) -> list[dict[str, Any]]:
        """The hints the batch's presses call for (already applied to `metrics`), those of the session's style."""
        hints = self._all_after(metrics, presses)  # every rule runs, so its state is the same whatever the style
        if self.style == "all":
            return hints
        return [h for h in hints if self.style == "slow_spots" and h["kind"] == "slow_spot_ahead"]

    def _all_after(self, metrics: LiveMetrics, presses: list[Press]) -> list[dict[str, Any]]:
        hints: list[dict[str, Any]] = []
        rhythm_given = False
        for press in presses:
            if press.code >= 0 and not press.correct:
                self.error_run += 1
                if self.error_run == ERROR_RUN:
                    message = f"{_NUMBERS.get(ERROR_RUN, ERROR_RUN)} errors in a row: slow down"
                    hints.append(hint("errors_in_a_row", message, {"errors_in_a_row": ERROR_RUN,
                                                                   "position": press.position}))  # fmt: skip
            elif press.code >= 0 or press.code in _ENDS_RUN:
                self.error_run = 0
            if (
                press.hesitation and not rhythm_given and press.iki_ms is not None
                and len(metrics.iki_sorted) > RHYTHM_MIN_INTERVALS
                and (self.last_rhythm_ms is None or press.down_ms - self.last_rhythm_ms >= RHYTHM_COOLDOWN_MS)
            ):  # fmt: skip
                rhythm_given, self.last_rhythm_ms = True, press.down_ms
                median = press.median_iki_ms or 0.0
                message = (
                    f"rhythm break: {press.iki_ms / 1000:.1f} s pause (your median so far {median:.0f} ms) — keep an "
                    "even pace"
                )
                evidence = {"iki_ms": press.iki_ms, "median_iki_ms": median, "position": metrics.position}
                hints.append(hint("rhythm_break", message, evidence))
        hints.extend(self._ahead(metrics.position))
        if presses:
            hints.extend(self._pace(metrics, presses[-1].down_ms))
        return hints

    def _ahead(self, position: int) -> list[dict[str, Any]]:
        """A hint for the worst slow spot still ahead in the word the cursor is in (once per word)."""
        text = self.text
        if position >= len(text):
            return []
        start = text.rfind(" ", 0, position) + 1 if position > 0 and text[position - 1] != " " else position
        if start == self.word_checked:
            return []
        self.word_checked = start
        end = text.find(" ", start)
        end = len(text) if end < 0 else end
        # A pair that starts on the space before the word ("␣t") belongs to the word too.
        lo = bisect.bisect_left(self._spot_starts, max(start - 1, 0))
        hi = bisect.bisect_left(self._spot_starts, end)
        candidates = [s for s in self.spots[lo:hi] if s.end > position]
        if not candidates:
            return []
        order = {"slow_pair": 0, "slow_key": 1, "predicted_slow": 2}
        best = min(candidates, key=lambda s: (order[s.kind], s.evidence.get("rank", 0), -s.evidence.get(
            "predicted_ms", 0)))  # fmt: skip
        return [spot_hint(best)]

    def _pace(self, metrics: LiveMetrics, now_ms: int) -> list[dict[str, Any]]:
        target = self.history.target_wpm()
        if target is None or metrics.position < PACE_MIN_CHARS:
            return []
        if self.last_pace_ms is not None and now_ms - self.last_pace_ms < PACE_COOLDOWN_MS:
            return []
        target_wpm, source = target
        wpm = metrics.wpm()
        gap = wpm - target_wpm
        if abs(gap) < max(PACE_MIN_WPM, PACE_MARGIN * target_wpm):
            return []
        self.last_pace_ms = now_ms
        what = "predicted" if source["source"] == "predictor" else "usual"
        side = "ahead of" if gap > 0 else "behind"
        evidence = {"wpm": round(wpm, 1), "target_wpm": round(target_wpm, 1), **source}
        return [hint("pace", f"{abs(gap):.0f} WPM {side} your {what} {target_wpm:.0f} WPM", evidence)]
