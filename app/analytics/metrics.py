"""Per-test analytics of many typing tests at once, as defined in typing-facts.md: the ingest path's entry point.

P = presented text, T = transcribed text (app.analytics.transcription), S = seconds from the first to the
last key press; a key press is every key-down, named keys included; a character press is one that types
a character. `analyse_batch` returns, per test:

- metrics (float64, NaN where undefined; the JSON layer turns NaN into null), METRIC_NAMES:
  speed (app.analytics.speed)      wpm, raw_wpm, net_wpm, consistency
  errors (app.analytics.errors)    accuracy, uncorrected_error_rate, corrected_error_rate, total_error_rate,
                                   kspc, ecpc
  rhythm (app.analytics.rhythm)    mean_iki_ms, median_iki_ms, iki_cv, key_consistency, slowdown,
                                   mean_hold_ms, rollover_ratio
  health (app.analytics.health)    health_score and health_speed, health_accuracy, health_consistency,
                                   health_rhythm, health_fatigue
- counts (int64), COUNT_NAMES: char stats chars_correct/incorrect/extra/missed (app.analytics.words);
  c_correct, inf, if_, corrections and the error patterns transpositions, doubled_letters, dropped_letters,
  error_bursts (app.analytics.errors); hesitations, hesitations_word_start, hesitations_after_error
  (app.analytics.rhythm)
- errors_by_finger / errors_by_hand / errors_by_row (int64, tests × 9 / 2 / 5; app.analytics.errors)
- series (values float64, offsets int64 tests + 1), SERIES_NAMES: per_second_wpm (app.analytics.speed),
  word_burst_wpm (app.analytics.words)
and the per-keystroke facts the storage tables need. Every step is numpy over the whole batch; the only
per-test Python is the Levenshtein distance (rapidfuzz) and slicing texts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rapidfuzz.distance import Levenshtein

from app.analytics import errors, health, rhythm, speed, words
from app.analytics.transcription import Transcription, segment_ids, transcribe_batch
from app.schemas import (
    COUNT_FIELDS,
    ERROR_LOCATION_FIELDS,
    METRIC_FIELDS,
    NAMED_KEY_CODES,
    SERIES_FIELDS,
    TypingTest,
)

# The names are the storage and API contract, defined once in app/schemas.py.
METRIC_NAMES = METRIC_FIELDS
COUNT_NAMES = COUNT_FIELDS
SERIES_NAMES = SERIES_FIELDS
ERROR_LOCATION_NAMES = ERROR_LOCATION_FIELDS
_BACKSPACE, _DELETE = NAMED_KEY_CODES["Backspace"], NAMED_KEY_CODES["Delete"]


@dataclass(frozen=True)
class TestBatch:
    """The keystrokes of many tests, concatenated; `offsets[i]:offsets[i+1]` are test i's."""

    __test__ = False  # a typing test, not a pytest test class

    offsets: np.ndarray  # int64, tests + 1
    key_codes: np.ndarray  # int32
    down_ms: np.ndarray  # int32
    up_ms: np.ndarray  # int32, -1 unknown
    texts: list[str]
    layouts: list[str] = field(default_factory=list)  # per test; left empty, every test is "qwerty"

    def __post_init__(self) -> None:
        if not self.layouts:
            object.__setattr__(self, "layouts", ["qwerty"] * self.test_count)
        if len(self.layouts) != self.test_count or len(self.texts) != self.test_count:
            raise ValueError("TestBatch needs one text and one layout per test")

    @classmethod
    def from_tests(cls, tests: list[TypingTest]) -> TestBatch:
        """One batch holding the given tests in order."""
        counts = np.array([t.keystroke_count for t in tests], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)

        def join(name: str) -> np.ndarray:
            if not tests:
                return np.empty(0, np.int32)
            return np.concatenate([getattr(t, name) for t in tests]).astype(np.int32)

        return cls(
            offsets,
            join("key_codes"),
            join("down_ms"),
            join("up_ms"),
            [t.text for t in tests],
            [t.layout for t in tests],
        )

    @property
    def test_count(self) -> int:
        return int(self.offsets.shape[0] - 1)


@dataclass(frozen=True)
class BatchAnalysis:
    """Per-test metrics, counts, error locations and series, and per-keystroke facts of a TestBatch."""

    metrics: dict[str, np.ndarray]  # METRIC_NAMES -> float64 per test, NaN where undefined
    transcription: Transcription
    target_codes: np.ndarray  # int64 per keystroke: presented code point at the typed position, -1 if none
    presented_before: np.ndarray  # int64 per keystroke: presented code point before the typed position, -1 if none
    correct: np.ndarray  # bool per keystroke (character presses only can be correct)
    iki_ms: np.ndarray  # int32 per keystroke: time since the previous press of the test, -1 for the first
    hold_ms: np.ndarray  # int32 per keystroke, -1 unknown
    duration_ms: np.ndarray  # int64 per test: first to last press
    counts: dict[str, np.ndarray]  # COUNT_NAMES -> int64 per test
    errors_by_finger: np.ndarray  # int64, tests × 9 (layouts.FINGERS order)
    errors_by_hand: np.ndarray  # int64, tests × 2 (left, right)
    errors_by_row: np.ndarray  # int64, tests × 5 (number, top, home, bottom, space)
    series: dict[str, tuple[np.ndarray, np.ndarray]]  # SERIES_NAMES -> (values float64, offsets int64 tests + 1)


def _codepoints(texts: list[str]) -> np.ndarray:
    return np.frombuffer("".join(texts).encode("utf-32-le"), dtype="<u4").astype(np.int64)


def analyse_batch(batch: TestBatch) -> BatchAnalysis:
    """Return the per-test metrics, counts, error locations, series and per-keystroke facts of the batch."""
    n_tests = batch.test_count
    offsets = np.asarray(batch.offsets, dtype=np.int64)
    seg = segment_ids(offsets)
    counts = np.diff(offsets)
    codes = batch.key_codes.astype(np.int64)
    downs = batch.down_ms.astype(np.int64)
    ups = batch.up_ms.astype(np.int64)
    transcription = transcribe_batch(codes, offsets)
    t_length = transcription.transcribed_length

    # Where each character press lands in the presented text.
    presented = _codepoints(batch.texts)
    p_length = np.array([len(t) for t in batch.texts], dtype=np.int64)
    p_start = np.concatenate(([0], np.cumsum(p_length)[:-1])).astype(np.int64)
    position = transcription.position
    is_char = codes >= 0
    has_target = is_char & (position >= 0) & (position < p_length[seg])
    target = np.full(codes.shape[0], -1, dtype=np.int64)
    target[has_target] = presented[(p_start[seg] + position)[has_target]]
    correct = has_target & (target == codes)
    wrong = is_char & ~correct
    has_before = has_target & (position >= 1)
    presented_before = np.full(codes.shape[0], -1, dtype=np.int64)
    presented_before[has_before] = presented[(p_start[seg] + position - 1)[has_before]]

    duration_ms = np.zeros(n_tests, dtype=np.int64)
    some = counts > 0
    duration_ms[some] = downs[offsets[1:][some] - 1] - downs[offsets[:-1][some]]
    char_presses = rhythm.per_test_count(is_char, offsets)
    corrections = rhythm.per_test_count((codes == _BACKSPACE) | (codes == _DELETE), offsets)

    # Rhythm.
    iki, has_iki = rhythm.inter_key_intervals(downs, offsets)
    iki_metrics = rhythm.iki_metrics(iki, has_iki, offsets)
    hold, hold_metrics = rhythm.hold_and_rollover(downs, ups, has_iki, offsets)
    hesitations = rhythm.hesitation_counts(iki, has_iki, iki_metrics["median_iki_ms"], codes, wrong, offsets)

    # Errors.
    distance = np.array(
        [Levenshtein.distance(p, t) for p, t in zip(batch.texts, transcription.transcribed)], dtype=np.int64
    )
    rates, soukoreff = errors.error_rates(p_length, t_length, distance, char_presses)
    patterns = errors.pattern_counts(codes, position, wrong, presented, p_start, p_length, offsets)
    locations = errors.error_locations(target, wrong, errors.layout_indices(batch.layouts), offsets)

    # Words and speed.
    survivor_press = np.flatnonzero(transcription.survives)
    typed = codes[survivor_press]
    typed_words = words.split_words(typed, t_length)
    stats, net_chars = words.char_stats(typed, typed_words, presented, words.split_words(presented, p_length))
    per_second = speed.per_second_wpm(downs, is_char, offsets, duration_ms)
    consistency = speed.series_consistency(*per_second)
    wpm = speed.hci_wpm(t_length, duration_ms)

    metrics = {
        "wpm": wpm,
        "accuracy": rhythm.ratio(rhythm.per_test_count(correct, offsets), char_presses),
        "kspc": rhythm.ratio(counts, t_length),
        "raw_wpm": speed.characters_wpm(char_presses, duration_ms),
        "net_wpm": speed.characters_wpm(net_chars, duration_ms),
        "ecpc": rhythm.ratio(corrections, t_length),
        "consistency": consistency,
        **rates,
        **iki_metrics,
        **hold_metrics,
        **health.health_components(
            wpm,
            rates["total_error_rate"],
            consistency,
            hesitations["hesitations"],
            np.maximum(counts - 1, 0),
            iki_metrics["slowdown"],
        ),
    }
    all_counts = {**stats, **soukoreff, "corrections": corrections, **hesitations, **patterns}
    return BatchAnalysis(
        metrics={name: metrics[name] for name in METRIC_NAMES},
        transcription=transcription,
        target_codes=target,
        presented_before=presented_before,
        correct=correct,
        iki_ms=iki.astype(np.int32),
        hold_ms=hold.astype(np.int32),
        duration_ms=duration_ms,
        counts={name: all_counts[name].astype(np.int64) for name in COUNT_NAMES},
        errors_by_finger=locations["errors_by_finger"],
        errors_by_hand=locations["errors_by_hand"],
        errors_by_row=locations["errors_by_row"],
        series={
            "per_second_wpm": per_second,
            "word_burst_wpm": words.word_burst_wpm(typed_words, survivor_press, downs, offsets),
        },
    )


def analyse_test(test: TypingTest) -> dict[str, float]:
    """Return the metrics of one test (METRIC_NAMES → float, NaN where undefined); a convenience over analyse_batch."""
    analysis = analyse_batch(TestBatch.from_tests([test]))
    return {name: float(values[0]) for name, values in analysis.metrics.items()}
