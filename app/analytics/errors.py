"""Errors of many tests at once: error rates, error patterns and where on the keyboard errors happen.

P = presented text, T = transcribed text. A character press is a key press that types a character; it is
correct when it types the presented character at the position it is typed into (position p of the field:
the field's length before the press), incorrect otherwise (also beyond the end of P).

Error rates (Soukoreff & MacKenzie, CHI 2003), from
- INF  (`inf`)        incorrect and not fixed = MSD(P, T), the Levenshtein distance
- C    (`c_correct`)  correct = max(len(P), len(T)) − INF
- IF   (`if_`)        incorrect but fixed = character presses that were erased (not in T): S&M count every
                      erased character, including correct ones erased on the way back to an error
- uncorrected_error_rate = INF / (C + INF), corrected_error_rate = IF / (C + INF + IF),
  total_error_rate = (INF + IF) / (C + INF + IF)  (NaN only when P and T are both empty)
- accuracy = correct character presses / character presses (Monkeytype: corrected mistakes still count;
  NaN without character presses)
- kspc = key presses / len(T), ecpc = corrections / len(T) (NaN for an empty T), where
  `corrections` = Backspace and Delete presses

Error patterns, per character press at position p (P[p] is the presented character there; the previous or
next character press means within the same test, ignoring named keys):
- transpositions   the press types P[p + 1] ≠ P[p] and the next character press types P[p] at p + 1
                   ("teh" for "the": counted once, at the 'e')
- dropped_letters  the press types P[p + 1] ≠ P[p] (P[p] was skipped), is not a transposition, and is typed
                   at p = 0 or right after a correct character press at p − 1 (so the presses after a skip,
                   all one character out of step, do not count again)
- doubled_letters  the press types P[p − 1] ≠ P[p] (or p is past the end of P) right after a character
                   press of the same character at p − 1, and is neither of the above ("thhe", "catt")
- error_bursts     runs of ≥ 2 incorrect character presses in a row; a correct character press, Backspace
                   or Delete ends a run, other named keys (Shift…) do not

Where errors happen: each incorrect character press with a presented character (p < len(P)) is located by
the PRESENTED character's key on the test's layout (app.analytics.layouts): its finger (FINGERS order), hand
(left, right; the spacebar has none) and row (number, top, home, bottom, space). Presented characters that
the layout cannot type are not located.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from app.analytics.layouts import FINGERS, HAND_CODES, LAYOUTS, SPACE_ROW, get_layout
from app.analytics.rhythm import ratio
from app.keys import NAMED_KEY_CODES

_BACKSPACE = NAMED_KEY_CODES["Backspace"]
_DELETE = NAMED_KEY_CODES["Delete"]
ROWS: tuple[str, ...] = ("number", "top", "home", "bottom", "space")
HANDS: tuple[str, ...] = tuple(sorted(HAND_CODES, key=HAND_CODES.__getitem__))  # ("left", "right")


def error_rates(
    presented_length: np.ndarray, transcribed_length: np.ndarray, distance: np.ndarray, char_presses: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Return ({uncorrected, corrected, total error rates}, {c_correct, inf, if_}) per test."""
    inf = np.asarray(distance, dtype=np.int64)
    longest = np.maximum(presented_length, transcribed_length).astype(np.int64)
    correct = longest - inf
    fixed = np.asarray(char_presses, dtype=np.int64) - transcribed_length
    everything = correct + inf + fixed
    rates = {
        "uncorrected_error_rate": ratio(inf, correct + inf),
        "corrected_error_rate": ratio(fixed, everything),
        "total_error_rate": ratio(inf + fixed, everything),
    }
    return rates, {"c_correct": correct, "inf": inf, "if_": fixed}


def pattern_counts(
    codes: np.ndarray,
    position: np.ndarray,
    wrong: np.ndarray,
    presented: np.ndarray,
    presented_start: np.ndarray,
    presented_length: np.ndarray,
    offsets: np.ndarray,
) -> dict[str, np.ndarray]:
    """Return transpositions, dropped_letters, doubled_letters and error_bursts per test (int64).

    `wrong` marks incorrect character presses; `presented` holds the presented texts' code points
    concatenated, text t from presented_start[t]. Every pattern starts at an incorrect character press, so
    the work is done on those few presses only.
    """
    n_tests = offsets.shape[0] - 1
    at = np.flatnonzero(wrong)
    test = np.searchsorted(offsets, at, side="right") - 1
    key, p = codes[at], position[at]
    length, base = presented_length[test], presented_start[test]

    def presented_at(index: np.ndarray) -> np.ndarray:
        """P[index] of each press's test, −1 outside P."""
        inside = (index >= 0) & (index < length)
        out = np.full(at.shape[0], -1, dtype=np.int64)
        out[inside] = presented[(base + index)[inside]]
        return out

    here, ahead, behind = presented_at(p), presented_at(p + 1), presented_at(p - 1)

    # The character presses just before and after each, within its test (−1: none).
    chars = np.flatnonzero(codes >= 0)
    rank = np.searchsorted(chars, at)  # at is a character press: chars[rank] == at
    previous = np.where(rank >= 1, chars[np.maximum(rank - 1, 0)], -1)
    previous[previous < offsets[:-1][test]] = -1
    following = np.where(rank + 1 < chars.shape[0], chars[np.minimum(rank + 1, chars.shape[0] - 1)], -1)
    following[following >= offsets[1:][test]] = -1
    has_previous, has_following = previous >= 0, following >= 0
    previous, following = np.maximum(previous, 0), np.maximum(following, 0)

    skips = (ahead >= 0) & (key == ahead) & (ahead != here)
    transposition = skips & has_following & (position[following] == p + 1) & (codes[following] == here)
    in_step = has_previous & (position[previous] == p - 1) & ~wrong[previous]
    dropped = skips & ~transposition & ((p == 0) | in_step)
    doubled = (behind >= 0) & (key == behind) & (key != here) & has_previous & (position[previous] == p - 1)
    doubled &= (codes[previous] == key) & ~transposition & ~dropped

    # Error bursts: among character presses, Backspaces and Deletes, an incorrect press right after an
    # incorrect one makes a pair; each run of pairs is one burst.
    kept = np.flatnonzero((codes >= 0) | (codes == _BACKSPACE) | (codes == _DELETE))
    kept_rank = np.searchsorted(kept, at)
    pair = np.zeros(at.shape[0], dtype=bool)
    pair[1:] = (np.diff(kept_rank) == 1) & (test[1:] == test[:-1])
    starts_run = pair.copy()
    starts_run[1:] &= ~pair[:-1]

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(test[mask], minlength=n_tests).astype(np.int64)

    return {
        "transpositions": count(transposition),
        "doubled_letters": count(doubled),
        "dropped_letters": count(dropped),
        "error_bursts": count(starts_run),
    }


@cache
def _key_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (finger, hand, row) lookup tables, each layouts × code points (int8, −1 = none)."""
    models = [get_layout(name) for name in LAYOUTS]
    size = max(ord(char) for model in models for char in model.characters) + 1
    finger = np.full((len(LAYOUTS), size), -1, dtype=np.int8)
    hand = np.full((len(LAYOUTS), size), -1, dtype=np.int8)
    row = np.full((len(LAYOUTS), size), -1, dtype=np.int8)
    for index, model in enumerate(models):
        for char in model.characters:
            key = model.key_info(char)
            assert key is not None
            finger[index, ord(char)] = FINGERS.index(key.finger)
            hand[index, ord(char)] = -1 if key.hand is None else HAND_CODES[key.hand]
            row[index, ord(char)] = key.row
    return finger, hand, row


def layout_indices(layouts: list[str]) -> np.ndarray:
    """Return the index into LAYOUTS of each layout name (ValueError for unknown names)."""
    known = {name: LAYOUTS.index(get_layout(name).name) for name in set(layouts)}
    return np.array([known[name] for name in layouts], dtype=np.int64)


def error_locations(
    target: np.ndarray, wrong: np.ndarray, layout_index: np.ndarray, offsets: np.ndarray
) -> dict[str, np.ndarray]:
    """Return errors_by_finger (tests × 9), errors_by_hand (× 2) and errors_by_row (× 5) as int64.

    `target` is the presented code point of each press (−1 none), `wrong` marks incorrect character presses,
    `layout_index` is each test's index into LAYOUTS.
    """
    n_tests = layout_index.shape[0]
    finger_table, hand_table, row_table = _key_tables()
    located = np.flatnonzero(wrong & (target >= 0) & (target < finger_table.shape[1]))
    tests = np.searchsorted(offsets, located, side="right") - 1
    layout = layout_index[tests]
    char = target[located]
    out = {}
    for name, table, width in (
        ("errors_by_finger", finger_table, len(FINGERS)),
        ("errors_by_hand", hand_table, len(HANDS)),
        ("errors_by_row", row_table, SPACE_ROW + 1),
    ):
        code = table[layout, char].astype(np.int64)
        known = code >= 0
        cells = np.bincount(tests[known] * width + code[known], minlength=n_tests * width)
        out[name] = cells.astype(np.int64).reshape(n_tests, width)
    return out
