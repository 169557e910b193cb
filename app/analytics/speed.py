"""Typing speed of many tests at once: WPM as the HCI literature and as typing sites define it.

S = seconds from the first to the last key press of the test; a "word" is 5 characters. Values are
float64 per test, NaN where undefined (S = 0: one press, or all presses in the same millisecond).

- wpm              (len(T) − 1) / S × 60 / 5 (MacKenzie 2002: the first character starts the clock);
                   an empty transcription scores 0
- raw_wpm          character presses (every key that types a character, erased or not) / 5 per minute
                   over S; like Monkeytype's "raw", but over S (first to last press), so one-press tests
                   are undefined rather than infinitely fast
- net_wpm          characters of correctly typed words with their following spaces / 5 per minute over S
                   (Monkeytype's "wpm"; which words count is decided in app.analytics.words)
- per_second_wpm   series: character presses in each whole second of the test (second s holds the presses
                   with s × 1000 ≤ down − first down < (s + 1) × 1000) × 60 / 5; the last, partial second is
                   dropped (a test of S seconds has ⌊S⌋ values), so a slow final press cannot make a spike
- consistency      Monkeytype's `100 × (1 − tanh(cv + cv³/3 + cv⁵/5))` on the cv (population std / mean)
                   of per_second_wpm; NaN under 2 whole seconds or when no character was typed in them
"""

from __future__ import annotations

import numpy as np

from app.analytics.rhythm import consistency_score, grouped_cv, ratio

CHARS_PER_WORD = 5
_WPM_PER_CHAR_PER_MS = 60_000 / CHARS_PER_WORD  # characters per ms → words per minute


def hci_wpm(transcribed_length: np.ndarray, duration_ms: np.ndarray) -> np.ndarray:
    """Return (len(T) − 1) / S × 60 / 5 per test; 0 for an empty T, NaN when S = 0."""
    characters = np.maximum(np.asarray(transcribed_length, dtype=np.float64) - 1, 0)
    return characters_wpm(characters, duration_ms)


def characters_wpm(characters: np.ndarray, duration_ms: np.ndarray) -> np.ndarray:
    """Return characters / 5 per minute of the first-to-last-press duration; NaN when the duration is 0."""
    return ratio(np.asarray(characters, dtype=np.float64) * _WPM_PER_CHAR_PER_MS, duration_ms)


def per_second_wpm(
    downs: np.ndarray, is_char: np.ndarray, offsets: np.ndarray, duration_ms: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return (values float64, offsets int64 tests + 1): raw WPM of every whole second of every test."""
    n_tests = offsets.shape[0] - 1
    seconds = np.asarray(duration_ms, dtype=np.int64) // 1000
    series_offsets = np.concatenate(([0], np.cumsum(seconds))).astype(np.int64)
    counts = np.diff(offsets)
    first_down = np.zeros(n_tests, dtype=np.int64)
    first_down[counts > 0] = downs[offsets[:-1][counts > 0]]
    # Each character press's slot in the concatenated series: its test's first slot + its whole second.
    second = (downs - np.repeat(first_down, counts)) // 1000
    inside = is_char & (second < np.repeat(seconds, counts))
    slot = second + np.repeat(series_offsets[:-1], counts)
    presses = np.bincount(slot[inside], minlength=int(series_offsets[-1]))
    return presses * (60.0 / CHARS_PER_WORD), series_offsets


def series_consistency(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Return the consistency (0–100) of each test's series of values; NaN under 2 values or a zero mean."""
    return consistency_score(grouped_cv(values, offsets))
