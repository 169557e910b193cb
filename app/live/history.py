"""What keyscope knows about a typist before a live test starts, and the slow spots it expects in the text.

Two sources, both optional (a new typist has neither): the cached insights (app/insights.py: weak letter pairs and
keys, each with its measured time and the tests behind it) and the predictor's answer for this text (serve/
predictor.py: a predicted time per character and a predicted WPM). `expect` turns them into the text's predicted
slow spots; the hint rules (app/live/hints.py) quote the same evidence.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

WEAK_UNITS = 5  # the typist's weakest pairs and keys that are looked for in the text
PREDICTED_SLOW_FACTOR = 1.6  # a character predicted this many times the text's median time is a slow spot
PREDICTED_SLOW_SPOTS = 10
MAX_EXPECT = 40  # spots sent in `ready`: a long text has many, the typist needs the first few


def unit_label(unit: str) -> str:
    """How a key or pair reads in a hint: quoted, a space shown as ␣ (the insights' own convention)."""
    return "space" if unit == " " else "'" + unit.replace(" ", "␣") + "'"


def _finite(value: Any, digits: int = 4) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return round(float(value), digits)


@dataclass(frozen=True)
class WeakUnit:
    """One of the typist's weak pairs or keys as the insights rank it (rank 1 = weakest)."""

    unit: str
    kind: str  # "pair" or "key"
    rank: int
    mean_time_ms: float | None
    time_ratio: float | None  # its smoothed time / the typist's median
    error_rate: float | None
    tests: int

    def evidence(self) -> dict[str, Any]:
        return {"source": "insights", **asdict(self)}


@dataclass(frozen=True)
class History:
    """The typist's weak units, typical speed and the predictor's view of this text."""

    weak_pairs: tuple[WeakUnit, ...] = ()
    weak_keys: tuple[WeakUnit, ...] = ()
    tests: int = 0
    mean_wpm: float | None = None  # over all their tests (insights)
    predicted_wpm: float | None = None  # for this text (predictor)
    model_version: str | None = None
    predicted_ms: tuple[float | None, ...] = ()  # per character of the text

    @classmethod
    def from_sources(cls, insights: dict[str, Any] | None, prediction: dict[str, Any] | None) -> History:
        """The history from a cached insights read and a typing prediction (either may be None)."""
        insights, prediction = insights or {}, prediction or {}

        def units(name: str, kind: str) -> tuple[WeakUnit, ...]:
            ranked = [u for u in insights.get(name) or [] if isinstance(u, dict) and u.get("eligible", True)]
            return tuple(
                WeakUnit(
                    str(u.get("key", "")), kind, rank, _finite(u.get("mean_time_ms"), 1),
                    _finite(u.get("time_ratio"), 3), _finite(u.get("error_rate"), 4), int(u.get("tests") or 0),
                )
                for rank, u in enumerate(ranked[:WEAK_UNITS], start=1)
                if u.get("key")
            )  # fmt: skip

        chars = prediction.get("chars") or []
        return cls(
            weak_pairs=units("weak_pairs", "pair"),
            weak_keys=units("weak_keys", "key"),
            tests=int(insights.get("test_count") or 0),
            mean_wpm=_finite(insights.get("mean_wpm")),
            predicted_wpm=_finite(prediction.get("predicted_wpm")),
            model_version=prediction.get("model_version"),
            predicted_ms=tuple(_finite(c.get("time_ms")) if isinstance(c, dict) else None for c in chars),
        )

    def target_wpm(self) -> tuple[float, dict[str, Any]] | None:
        """The pace a live test is compared with, and where it comes from: the predictor's WPM for this text, else
        the typist's mean; None for a typist with neither."""
        if self.predicted_wpm is not None and self.predicted_wpm > 0:
            return self.predicted_wpm, {"source": "predictor", "model_version": self.model_version}
        if self.mean_wpm is not None and self.mean_wpm > 0:
            return self.mean_wpm, {"source": "insights", "tests": self.tests}
        return None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> History:
        return cls(
            weak_pairs=tuple(WeakUnit(**u) for u in data.get("weak_pairs", ())),
            weak_keys=tuple(WeakUnit(**u) for u in data.get("weak_keys", ())),
            tests=data.get("tests", 0),
            mean_wpm=data.get("mean_wpm"),
            predicted_wpm=data.get("predicted_wpm"),
            model_version=data.get("model_version"),
            predicted_ms=tuple(data.get("predicted_ms", ())),
        )


@dataclass(frozen=True)
class SlowSpot:
    """A place in the text where the typist is expected to slow down, and why."""

    position: int  # index of the spot's first character in the text
    chars: str
    kind: str  # "slow_pair", "slow_key" or "predicted_slow"
    evidence: dict[str, Any]

    @property
    def end(self) -> int:
        return self.position + len(self.chars)

    def to_json(self) -> dict[str, Any]:
        return {"position": self.position, "chars": self.chars, "kind": self.kind, "evidence": self.evidence}


def expect(text: str, history: History) -> list[SlowSpot]:
    """The text's predicted slow spots, in text order (at most MAX_EXPECT): every occurrence of one of the typist's
    weak pairs and keys, and the characters the predictor expects to take longest."""
    spots: dict[int, SlowSpot] = {}  # by position: one spot each, a pair before a key before a prediction
    lowered = text.lower()
    for weak, kind in ((history.weak_pairs, "slow_pair"), (history.weak_keys, "slow_key")):
        for unit in weak:
            start = lowered.find(unit.unit)
            while start >= 0:
                spots.setdefault(start, SlowSpot(start, text[start : start + len(unit.unit)], kind, unit.evidence()))
                start = lowered.find(unit.unit, start + 1)
    known = [(i, ms) for i, ms in enumerate(history.predicted_ms[: len(text)]) if ms is not None and i > 0]
    if known:
        median = statistics.median(ms for _, ms in known)
        slow = sorted((ms, i) for i, ms in known if ms >= PREDICTED_SLOW_FACTOR * median)[-PREDICTED_SLOW_SPOTS:]
        for ms, i in slow:
            evidence = {
                "source": "predictor", "model_version": history.model_version, "predicted_ms": round(ms, 1),
                "median_predicted_ms": round(median, 1),
            }  # fmt: skip
            spots.setdefault(i, SlowSpot(i, text[i], "predicted_slow", evidence))
    return [spots[p] for p in sorted(spots)][:MAX_EXPECT]
