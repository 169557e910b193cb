"""Per-test metrics of many typing tests at once, as defined in typing-facts.md.

P = presented text, T = transcribed text, S = seconds from the first to the last key press; a key
press is every key-down, named keys included. Undefined values (a one-key test has no IKI, an empty
transcription has no KSPC) are reported as 0.0 so every field is a plain number.

- wpm                     (len(T) − 1) / S × 60 / 5  (0 when S = 0 or len(T) ≤ 1)
- uncorrected_error_rate  Levenshtein(P, T) / max(len(P), len(T))
- kspc                    key presses / len(T)
- mean_iki_ms             mean time between consecutive key presses = (last − first) / (n − 1)
- mean_hold_ms            mean release − press over presses with a known release
- rollover_ratio          share of presses after the first that go down before the previous is released
- accuracy                correct character presses / character presses; a character press is correct
                          when it produces the presented character at the position it is typed into
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rapidfuzz.distance import Levenshtein

from app.analytics.transcription import Transcription, segment_ids, transcribe_batch
from app.schemas import TypingTest


@dataclass(frozen=True)
class TestBatch:
    """The keystrokes of many tests, concatenated; `offsets[i]:offsets[i+1]` are test i's."""

    __test__ = False  # a typing test, not a pytest test class

    offsets: np.ndarray  # int64, tests + 1
    key_codes: np.ndarray  # int32
    down_ms: np.ndarray  # int32
    up_ms: np.ndarray  # int32, -1 unknown
    texts: list[str]

    @classmethod
    def from_tests(cls, tests: list[TypingTest]) -> TestBatch:
        """One batch holding the given tests in order."""
        counts = np.array([t.keystroke_count for t in tests], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)

        def join(name: str) -> np.ndarray:
            if not tests:
                return np.empty(0, np.int32)
            return np.concatenate([getattr(t, name) for t in tests]).astype(np.int32)

        return cls(offsets, join("key_codes"), join("down_ms"), join("up_ms"), [t.text for t in tests])

    @property
    def test_count(self) -> int:
        return int(self.offsets.shape[0] - 1)


@dataclass(frozen=True)
class BatchAnalysis:
    """Per-test metrics and per-keystroke facts of a TestBatch."""

    metrics: dict[str, np.ndarray]  # metric name -> float64 per test
    transcription: Transcription
    target_codes: np.ndarray  # int64 per keystroke: presented code point at the typed position, -1 if none
    presented_before: np.ndarray  # int64 per keystroke: presented code point before the typed position, -1 if none
    correct: np.ndarray  # bool per keystroke (character presses only can be correct)
    iki_ms: np.ndarray  # int32 per keystroke: time since the previous press of the test, -1 for the first
    hold_ms: np.ndarray  # int32 per keystroke, -1 unknown
    duration_ms: np.ndarray  # int64 per test: first to last press


def _per_test_sum(values: np.ndarray, seg: np.ndarray, n_tests: int) -> np.ndarray:
    return np.bincount(seg, weights=values, minlength=n_tests)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(numerator.shape[0], dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def analyse_batch(batch: TestBatch) -> BatchAnalysis:
    """The per-test metrics and per-keystroke facts of every test in the batch."""
    n_tests = batch.test_count
    offsets = batch.offsets
    seg = segment_ids(offsets)
    counts = np.diff(offsets)
    codes = batch.key_codes.astype(np.int64)
    downs = batch.down_ms.astype(np.int64)
    ups = batch.up_ms.astype(np.int64)
    transcription = transcribe_batch(codes, offsets)

    first = np.zeros(codes.shape[0], dtype=bool)
    first[offsets[:-1][counts > 0]] = True
    iki = np.empty_like(downs)
    iki[0:1] = -1
    iki[1:] = downs[1:] - downs[:-1]
    iki[first] = -1
    prev_up = np.empty_like(ups)
    prev_up[0:1] = -1
    prev_up[1:] = ups[:-1]
    prev_up[first] = -1

    presented = "".join(batch.texts)
    presented_codes = np.frombuffer(presented.encode("utf-32-le"), dtype="<u4").astype(np.int64)
    text_lengths = np.array([len(t) for t in batch.texts], dtype=np.int64)
    text_starts = np.concatenate(([0], np.cumsum(text_lengths)[:-1])).astype(np.int64)
    position = transcription.position
    is_char = codes >= 0
    has_target = is_char & (position < text_lengths[seg]) & (position >= 0)
    target_index = np.where(has_target, text_starts[seg] + position, 0)
    target = np.where(has_target, presented_codes[target_index] if presented_codes.size else -1, -1)
    correct = has_target & (target == codes)
    has_before = has_target & (position >= 1)
    before_index = np.where(has_before, target_index - 1, 0)
    presented_before = np.where(has_before, presented_codes[before_index] if presented_codes.size else -1, -1)

    last = np.where(counts > 0, offsets[1:] - 1, 0)
    start = np.where(counts > 0, offsets[:-1], 0)
    duration_ms = np.where(counts > 0, downs[last] - downs[start], 0)
    t_len = transcription.transcribed_length.astype(np.float64)
    seconds = duration_ms / 1000.0
    wpm = _safe_ratio(np.maximum(t_len - 1, 0) * 60.0 / 5.0, seconds)

    distances = np.array(
        [Levenshtein.distance(p, t) for p, t in zip(batch.texts, transcription.transcribed)], dtype=np.float64
    )
    uncorrected = _safe_ratio(distances, np.maximum(text_lengths, transcription.transcribed_length).astype(float))

    known_hold = ups >= 0
    hold = np.where(known_hold, ups - downs, -1)
    hold_sum = _per_test_sum(np.where(known_hold, hold, 0).astype(np.float64), seg, n_tests)
    hold_n = _per_test_sum(known_hold.astype(np.float64), seg, n_tests)
    rolled = (prev_up >= 0) & (downs < prev_up) & ~first
    char_presses = _per_test_sum(is_char.astype(np.float64), seg, n_tests)

    metrics = {
        "wpm": wpm,
        "accuracy": _safe_ratio(_per_test_sum(correct.astype(np.float64), seg, n_tests), char_presses),
        "uncorrected_error_rate": uncorrected,
        "kspc": _safe_ratio(counts.astype(np.float64), t_len),
        "mean_iki_ms": _safe_ratio(duration_ms.astype(np.float64), (counts - 1).astype(np.float64)),
        "mean_hold_ms": _safe_ratio(hold_sum, hold_n),
        "rollover_ratio": _safe_ratio(
            _per_test_sum(rolled.astype(np.float64), seg, n_tests), (counts - 1).astype(np.float64)
        ),
    }
    return BatchAnalysis(
        metrics=metrics,
        transcription=transcription,
        target_codes=target,
        presented_before=presented_before,
        correct=correct,
        iki_ms=iki.astype(np.int32),
        hold_ms=hold.astype(np.int32),
        duration_ms=duration_ms.astype(np.int64),
    )


def analyse_test(test: TypingTest) -> dict[str, float]:
    """The metrics of one test (a convenience over analyse_batch)."""
    analysis = analyse_batch(TestBatch.from_tests([test]))
    return {name: float(values[0]) for name, values in analysis.metrics.items()}
