"""The transcription model: what the text field holds as keystrokes are applied, for many tests at once.

A character appends, Backspace removes the last character (nothing on an empty field), every other
named key changes nothing. All functions work on the keystrokes of many tests concatenated, with
`offsets` (length tests + 1) marking where each test starts, and use no per-keystroke Python loop.

The field length after each press is a random walk clamped at zero: s_k = S_k - min(0, min_{j≤k} S_j),
where S is the unclamped running sum of +1 (character) / -1 (Backspace) / 0 (other). A character
typed at position p survives to the end iff the length never drops back to p afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.keys import BACKSPACE_CODE


@dataclass(frozen=True)
class Transcription:
    """Per-keystroke cursor facts and the per-test transcribed text of a batch of tests."""

    position: np.ndarray  # int64: index a character press is typed into (-1 for named keys)
    survives: np.ndarray  # bool: the character press is still in the final text
    transcribed_length: np.ndarray  # int64 per test
    transcribed: list[str]


def segment_ids(offsets: np.ndarray) -> np.ndarray:
    """The test index of every keystroke, from the tests' start offsets."""
    lengths = np.diff(offsets)
    return np.repeat(np.arange(lengths.shape[0], dtype=np.int64), lengths)


def _segment_running_min(values: np.ndarray, seg: np.ndarray, big: int) -> np.ndarray:
    # Shifting each later test down by `big` keeps earlier tests from winning a running minimum.
    return np.minimum.accumulate(values - seg * big) + seg * big


def _segment_suffix_min(values: np.ndarray, seg: np.ndarray, big: int) -> np.ndarray:
    shifted = values + seg * big
    return np.minimum.accumulate(shifted[::-1])[::-1] - seg * big


def transcribe_batch(codes: np.ndarray, offsets: np.ndarray) -> Transcription:
    """Cursor positions, survivors and transcribed texts of the concatenated tests."""
    codes = np.asarray(codes, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    n = codes.shape[0]
    n_tests = offsets.shape[0] - 1
    if n == 0:
        return Transcription(np.empty(0, np.int64), np.empty(0, bool), np.zeros(n_tests, np.int64), [""] * n_tests)
    seg = segment_ids(offsets)
    is_char = codes >= 0
    step = is_char.astype(np.int64) - (codes == BACKSPACE_CODE).astype(np.int64)
    running = np.cumsum(step)
    starts = offsets[:-1]
    base = np.where(starts > 0, running[np.maximum(starts - 1, 0)], 0)
    base = np.where(np.diff(offsets) > 0, base, 0)
    unclamped = running - base[seg]
    big = 4 * (n + 1)
    length_after = unclamped - np.minimum(0, _segment_running_min(unclamped, seg, big))
    position = np.where(is_char, length_after - 1, -1)

    later_min = _segment_suffix_min(length_after, seg, big)
    next_min = np.empty_like(later_min)
    next_min[:-1] = later_min[1:]
    next_min[-1] = np.iinfo(np.int64).max
    last_of_test = offsets[1:] - 1
    next_min[last_of_test[np.diff(offsets) > 0]] = np.iinfo(np.int64).max
    survives = is_char & (next_min >= length_after)

    final_length = np.zeros(n_tests, dtype=np.int64)
    nonempty = np.diff(offsets) > 0
    final_length[nonempty] = length_after[last_of_test[nonempty]]
    kept = codes[survives].astype("<u4").tobytes().decode("utf-32-le")
    bounds = np.concatenate(([0], np.cumsum(final_length)))
    transcribed = [kept[bounds[i] : bounds[i + 1]] for i in range(n_tests)]
    return Transcription(position, survives, final_length, transcribed)


def transcribe(codes: np.ndarray) -> str:
    """The text one test's keystrokes leave in an empty field."""
    codes = np.asarray(codes)
    return transcribe_batch(codes, np.array([0, codes.shape[0]])).transcribed[0]
