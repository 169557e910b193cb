"""A test's metrics so far, updated press by press while it is typed: the numbers of a live answer.

The definitions are the stored ones (app/analytics: transcription, speed, errors, rhythm, health); only the
bookkeeping differs. Where the stored metric compares with the whole presented text P, the live one compares with
the part typed so far, P[:len(T)] (a test half typed is not half wrong), so once T is as long as P the two agree:
tests/unit/test_live_metrics.py checks them against `analyse_test` on simulated tests.

Each press costs O(log n) (the sorted intervals for the median); each answer a few microseconds, and the health
score (O(len(T)) for the Levenshtein distance, rapidfuzz in C, and numpy calls on one-element arrays) once per
HEALTH_EVERY_MS of typing. State grows with the presses, which the session bounds (Settings.max_keystrokes).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np
from rapidfuzz.distance import Levenshtein

from app.analytics import health, speed
from app.analytics.rhythm import HESITATION_FACTOR, HESITATION_MS, consistency_score
from app.keys import NAMED_KEY_CODES

_BACKSPACE = NAMED_KEY_CODES["Backspace"]
HEALTH_EVERY_MS = 1000


def _number(value: float, digits: int) -> float | None:
    """JSON's view of a metric: rounded, None where it is undefined."""
    return None if value is None or math.isnan(value) else round(float(value), digits)


@dataclass
class Press:
    """What one key press did, for the hint rules."""

    code: int
    down_ms: int
    iki_ms: int | None  # since the previous press; None for the first
    position: int  # where a character press was typed (the field's length before it); -1 for named keys
    correct: bool
    hesitation: bool  # iki over HESITATION_FACTOR × the median so far, or over HESITATION_MS
    median_iki_ms: float | None  # the median interval before this press


@dataclass
class LiveMetrics:
    """The running sums behind wpm, accuracy, iki_cv and the health score of the presses applied so far."""

    text: str
    typed: list[str] = field(default_factory=list)  # the field's content (T)
    typed_correct: list[bool] = field(default_factory=list)
    presses: int = 0
    char_presses: int = 0
    correct_presses: int = 0
    first_down: int = -1
    last_down: int = -1
    iki_sorted: list[int] = field(default_factory=list)
    iki_sum: int = 0
    iki_prefix: list[int] = field(default_factory=lambda: [0])  # running sums in press order: the slowdown's thirds
    mean_iki: float = 0.0  # Welford's running mean and squared deviations of the intervals
    iki_m2: float = 0.0
    char_presses_per_second: list[int] = field(default_factory=list)
    _health: tuple[int, float] | None = None  # (last press's time, score) of the last health computation

    @property
    def position(self) -> int:
        """The field's length: where the next character goes."""
        return len(self.typed)

    def median_iki(self) -> float:
        n = len(self.iki_sorted)
        if n == 0:
            return math.nan
        return (self.iki_sorted[(n - 1) // 2] + self.iki_sorted[n // 2]) / 2.0

    def press(self, code: int, down_ms: int) -> Press:
        """Apply one key press (the transcription model: a character appends, Backspace removes the last)."""
        iki = None if self.presses == 0 else down_ms - self.last_down
        median_before = self.median_iki()
        hesitation = iki is not None and (
            iki > HESITATION_MS or (not math.isnan(median_before) and iki > HESITATION_FACTOR * median_before)
        )
        if self.presses == 0:
            self.first_down = down_ms
        else:
            assert iki is not None
            bisect.insort(self.iki_sorted, iki)
            self.iki_sum += iki
            self.iki_prefix.append(self.iki_sum)
            delta = iki - self.mean_iki
            self.mean_iki += delta / len(self.iki_sorted)
            self.iki_m2 += delta * (iki - self.mean_iki)
        self.presses += 1
        self.last_down = down_ms
        position, correct = -1, False
        if code >= 0:
            position = len(self.typed)
            correct = position < len(self.text) and ord(self.text[position]) == code
            self.typed.append(chr(code))
            self.typed_correct.append(correct)
            self.char_presses += 1
            self.correct_presses += correct
            second = (down_ms - self.first_down) // 1000
            if second >= len(self.char_presses_per_second):
                self.char_presses_per_second.extend([0] * (second + 1 - len(self.char_presses_per_second)))
            self.char_presses_per_second[second] += 1
        elif code == _BACKSPACE and self.typed:
            self.typed.pop()
            self.typed_correct.pop()
        return Press(code, down_ms, iki, position, correct, hesitation, None if math.isnan(median_before) else
                     median_before)  # fmt: skip

    # -- the metrics, by app/analytics' definitions ------------------------------------------------------------------

    def duration_ms(self) -> int:
        return 0 if self.presses == 0 else self.last_down - self.first_down

    def wpm(self) -> float:
        return float(speed.hci_wpm(np.array([len(self.typed)]), np.array([self.duration_ms()]))[0])

    def accuracy(self) -> float:
        return self.correct_presses / self.char_presses if self.char_presses else math.nan

    def iki_cv(self) -> float:
        n = len(self.iki_sorted)
        if n < 2 or self.mean_iki <= 0:
            return math.nan
        return math.sqrt(max(self.iki_m2, 0.0) / n) / self.mean_iki

    def total_error_rate(self) -> float:
        """(INF + IF) / (C + INF + IF) against the presented text typed so far (app/analytics/errors.py)."""
        typed = "".join(self.typed)
        inf = Levenshtein.distance(self.text[: len(typed)], typed)
        correct = len(typed) - inf
        fixed = self.char_presses - len(typed)
        everything = correct + inf + fixed
        return (inf + fixed) / everything if everything > 0 else math.nan

    def consistency(self) -> float:
        """Monkeytype's consistency of the whole seconds' raw WPM (app/analytics/speed.py); the series is short
        (one value a second), so plain Python beats numpy's per-call cost here."""
        seconds = self.duration_ms() // 1000
        if seconds < 2:
            return math.nan
        series = self.char_presses_per_second[:seconds]
        series = series + [0] * (seconds - len(series))
        mean = sum(series) / seconds
        if mean <= 0:
            return math.nan
        cv = math.sqrt(sum((value - mean) ** 2 for value in series) / seconds) / mean
        return float(consistency_score(np.array([cv]))[0])

    def hesitations(self) -> int:
        """Intervals over HESITATION_FACTOR × the median so far, or over HESITATION_MS (app/analytics/rhythm.py)."""
        if not self.iki_sorted:
            return 0
        threshold = min(HESITATION_FACTOR * self.median_iki(), HESITATION_MS)
        return len(self.iki_sorted) - bisect.bisect_right(self.iki_sorted, threshold)

    def slowdown(self) -> float:
        third = len(self.iki_sorted) // 3
        if third < 1:
            return math.nan
        first = self.iki_prefix[third]
        last = self.iki_prefix[-1] - self.iki_prefix[-1 - third]
        return last / first - 1.0 if first > 0 else math.nan

    def health(self, wpm: float | None = None) -> float:
        components = health.health_components(
            np.array([self.wpm() if wpm is None else wpm]),
            np.array([self.total_error_rate()]),
            np.array([self.consistency()]),
            np.array([self.hesitations()]),
            np.array([max(self.presses - 1, 0)]),
            np.array([self.slowdown()]),
        )
        return float(components["health_score"][0])

    def live_health(self, wpm: float) -> float:
        """The health score, recomputed once per HEALTH_EVERY_MS of typing: a whole-test score barely moves from one
        press to the next, and it is most of an answer's CPU (numpy calls on one-element arrays)."""
        if self._health is None or self.last_down - self._health[0] >= HEALTH_EVERY_MS or math.isnan(self._health[1]):
            self._health = (self.last_down, self.health(wpm))
        return self._health[1]

    def snapshot(self) -> dict[str, float | int | None]:
        """The live answer's numbers (JSON-ready: undefined metrics are None)."""
        wpm = self.wpm()
        return {
            "wpm": _number(wpm, 1),
            "accuracy": _number(self.accuracy(), 4),
            "iki_cv": _number(self.iki_cv(), 3),
            "health": _number(self.live_health(wpm), 1),
            "position": self.position,
        }
