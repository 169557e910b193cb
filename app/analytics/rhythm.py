"""Rhythm of a test's key presses: inter-key intervals (IKI), their spread, hesitations, holds and slowdown.

Every function takes per-keystroke arrays of many tests concatenated (`offsets`, tests + 1, = where each
test's keystrokes start) and returns one float64 per test, NaN where the value is undefined, or one int64
count per test. Per-test sums are np.add.reduceat over the tests' contiguous slices; no per-keystroke
Python loop. The module also holds the per-test arithmetic (ratio, segment sums, cv, median) that the other
analytics modules share.

An IKI belongs to the press it ends at: a test of n presses has n − 1 IKIs, on presses 1 … n − 1.

- mean_iki_ms, median_iki_ms   mean and median of the test's IKIs (NaN under 2 presses)
- iki_cv                      population standard deviation / mean of the IKIs (NaN under 2 IKIs or mean 0)
- key_consistency             Monkeytype's `100 × (1 − tanh(cv + cv³/3 + cv⁵/5))` on the IKIs' cv
- hesitations                 presses whose IKI is over 3 × the test's median IKI or over 2000 ms
  - at a word start           the press is not a space, Backspace or Delete, and the last character press
                              before it in the test is a space (or there is none): the Shift before a
                              capital counts, like the letter
  - after an error            the press before it is an incorrect character press or a Backspace
- slowdown                    mean IKI of the last third of the IKIs / mean IKI of the first third − 1, thirds
                              of ⌊(n − 1) / 3⌋ IKIs (NaN under 3 IKIs or when the first third sums to 0);
                              positive = slower at the end (fatigue)
- mean_hold_ms                mean release − press over presses with a known release (NaN when none)
- rollover_ratio              share of presses after the first that go down before the previous press is
                              released; an unknown release counts as not rolled over (NaN under 2 presses)
"""

from __future__ import annotations

import numpy as np

from app.keys import NAMED_KEY_CODES

HESITATION_FACTOR = 3.0  # × the test's median IKI
HESITATION_MS = 2000  # an IKI over this is a hesitation whatever the median
_SPACE = ord(" ")
_BACKSPACE = NAMED_KEY_CODES["Backspace"]
_DELETE = NAMED_KEY_CODES["Delete"]


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Return numerator / denominator as float64, NaN where the denominator is not positive."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def segment_sum(values: np.ndarray, offsets: np.ndarray, dtype: type | None = None) -> np.ndarray:
    """Return the sum of each segment `values[offsets[i]:offsets[i+1]]` (0 for an empty one).

    np.add.reduceat over the non-empty segments' starts: each runs to the next non-empty start, which is
    its own end; it is an order of magnitude faster than np.bincount with weights.
    """
    values = np.asarray(values)
    lengths = np.diff(offsets)
    out = np.zeros(lengths.shape[0], dtype=dtype or (np.float64 if values.dtype.kind == "f" else np.int64))
    some = lengths > 0
    if some.any():
        out[some] = np.add.reduceat(values, offsets[:-1][some], dtype=out.dtype)
    return out


def per_test_count(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Return how many keystrokes of each test (`offsets`, tests + 1) are marked in `mask` (int64)."""
    return segment_sum(mask, offsets, np.int64)


def consistency_score(cv: np.ndarray) -> np.ndarray:
    """Return Monkeytype's consistency `100 × (1 − tanh(cv + cv³/3 + cv⁵/5))` of coefficients of variation."""
    cv = np.asarray(cv, dtype=np.float64)
    return 100.0 * (1.0 - np.tanh(cv + cv**3 / 3.0 + cv**5 / 5.0))


def grouped_cv(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Return population std / mean of each segment of values (NaN under 2 values or a mean ≤ 0)."""
    values = np.asarray(values, dtype=np.float64)
    n = np.diff(offsets)
    mean = ratio(segment_sum(values, offsets), n)
    # Two passes (mean, then squared deviations) rather than E[x²] − E[x]², which cancels badly.
    deviation = values - np.repeat(np.nan_to_num(mean), n)
    variance = ratio(segment_sum(deviation * deviation, offsets), n)
    cv = ratio(np.sqrt(variance), mean)
    cv[n < 2] = np.nan
    return cv


def grouped_median(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Return the median of each segment of integer values (mean of the middle two; NaN when empty).

    One sort of (segment, value) packed into an int64 key (values must lie within ±2**32); the keys come
    in runs already ordered by segment, which the stable sort (timsort) exploits.
    """
    values = np.asarray(values, dtype=np.int64)
    n = np.diff(offsets)
    group = np.repeat(np.arange(n.shape[0], dtype=np.int64), n)
    key = np.sort(group << 34 | (values + (1 << 32)), kind="stable")
    ordered = (key & ((1 << 34) - 1)) - (1 << 32)
    median = np.full(n.shape[0], np.nan)
    some = n > 0
    starts = offsets[:-1][some]
    median[some] = (ordered[starts + (n[some] - 1) // 2] + ordered[starts + n[some] // 2]) / 2.0
    return median


def inter_key_intervals(downs: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (iki_ms int64 per keystroke, has_iki bool): time since the previous press of the same test."""
    n = downs.shape[0]
    has_iki = np.ones(n, dtype=bool)
    counts = np.diff(offsets)
    has_iki[offsets[:-1][counts > 0]] = False
    iki = np.full(n, -1, dtype=np.int64)
    iki[1:] = downs[1:] - downs[:-1]
    iki[~has_iki] = -1
    return iki, has_iki


def iki_metrics(iki: np.ndarray, has_iki: np.ndarray, offsets: np.ndarray) -> dict[str, np.ndarray]:
    """Return mean_iki_ms, median_iki_ms, iki_cv, key_consistency and slowdown per test."""
    values = iki[has_iki]
    n_iki = np.maximum(np.diff(offsets) - 1, 0)  # every press but a test's first has an IKI
    iki_offsets = np.concatenate(([0], np.cumsum(n_iki))).astype(np.int64)
    mean = ratio(segment_sum(values, iki_offsets), n_iki)
    cv = grouped_cv(values, iki_offsets)

    # Sums of the first and last thirds from the running sum (integers: exact).
    running = np.concatenate(([0], np.cumsum(values))).astype(np.int64)
    third = n_iki // 3
    first_third = running[iki_offsets[:-1] + third] - running[iki_offsets[:-1]]
    last_third = running[iki_offsets[1:]] - running[iki_offsets[1:] - third]
    slowdown = ratio(last_third, first_third) - 1.0  # equal thirds: the ratio of sums is the ratio of means
    slowdown[third < 1] = np.nan
    return {
        "mean_iki_ms": mean,
        "median_iki_ms": grouped_median(values, iki_offsets),
        "iki_cv": cv,
        "key_consistency": consistency_score(cv),
        "slowdown": slowdown,
    }


def hesitation_counts(
    iki: np.ndarray,
    has_iki: np.ndarray,
    median_iki: np.ndarray,
    codes: np.ndarray,
    wrong_char: np.ndarray,
    offsets: np.ndarray,
) -> dict[str, np.ndarray]:
    """Return hesitations, hesitations_word_start and hesitations_after_error per test (int64).

    `wrong_char` marks incorrect character presses.
    """
    n_tests = offsets.shape[0] - 1
    counts = np.diff(offsets)
    threshold = np.repeat(np.nan_to_num(median_iki * HESITATION_FACTOR, nan=np.inf), counts)
    at = np.flatnonzero(has_iki & ((iki > threshold) | (iki > HESITATION_MS)))  # few: work on these only
    test = np.searchsorted(offsets, at, side="right") - 1

    # The last character press before each hesitation, within its test.
    chars = np.flatnonzero(codes >= 0)
    before = np.searchsorted(chars, at) - 1
    last_char = np.full(at.shape[0], -1, dtype=np.int64)
    last_char[before >= 0] = chars[before[before >= 0]]
    has_char_before = last_char >= offsets[:-1][test]
    key = codes[at]
    word_start = (~has_char_before | (codes[np.maximum(last_char, 0)] == _SPACE)) & (key != _SPACE)
    word_start &= (key != _BACKSPACE) & (key != _DELETE)
    after_error = wrong_char[at - 1] | (codes[at - 1] == _BACKSPACE)  # a hesitation is never a test's first press
    return {
        "hesitations": np.bincount(test, minlength=n_tests).astype(np.int64),
        "hesitations_word_start": np.bincount(test[word_start], minlength=n_tests).astype(np.int64),
        "hesitations_after_error": np.bincount(test[after_error], minlength=n_tests).astype(np.int64),
    }


def hold_and_rollover(
    downs: np.ndarray, ups: np.ndarray, has_iki: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return (hold_ms per keystroke, -1 unknown; {mean_hold_ms, rollover_ratio} per test)."""
    known = ups >= 0
    hold = np.where(known, ups - downs, -1)
    mean_hold = ratio(segment_sum(np.where(known, hold, 0), offsets), per_test_count(known, offsets))
    previous_up = np.full(downs.shape[0], -1, dtype=np.int64)
    previous_up[1:] = ups[:-1]
    rolled = has_iki & (previous_up >= 0) & (downs < previous_up)
    rollover = ratio(per_test_count(rolled, offsets), np.maximum(np.diff(offsets) - 1, 0))
    return hold, {"mean_hold_ms": mean_hold, "rollover_ratio": rollover}
