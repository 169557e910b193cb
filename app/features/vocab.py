"""The characters keyscope keeps per-typist statistics for: case-folded letters, digits, space and common
punctuation, each with a small id; everything else shares id 0. A letter pair is `first * VOCAB_SIZE + second`."""

from __future__ import annotations

import numpy as np

CHARACTERS = " abcdefghijklmnopqrstuvwxyz0123456789.,;:'\"!?-()/&@#$%*+=_"
VOCAB_SIZE = 64  # ids 1..len(CHARACTERS); 0 for any other character; room for a few more
PAIR_COUNT = VOCAB_SIZE * VOCAB_SIZE
assert len(CHARACTERS) < VOCAB_SIZE

_TABLE_SIZE = 0x250  # Latin-1 and Latin Extended-A/B fold into the table; code points above are "other"
_ID_TABLE = np.zeros(_TABLE_SIZE, dtype=np.int16)
for _i, _c in enumerate(CHARACTERS, start=1):
    _ID_TABLE[ord(_c)] = _i
    if _c.upper() != _c and len(_c.upper()) == 1:
        _ID_TABLE[ord(_c.upper())] = _i


def codepoint_ids(codepoints: np.ndarray) -> np.ndarray:
    """The vocabulary id (int16) of each code point; 0 for a character outside the vocabulary."""
    codepoints = np.asarray(codepoints, dtype=np.int64)
    ids = np.zeros(codepoints.shape, dtype=np.int16)
    inside = (codepoints >= 0) & (codepoints < _TABLE_SIZE)
    ids[inside] = _ID_TABLE[codepoints[inside]]
    return ids


def text_codepoints(text: str) -> np.ndarray:
    """The code points of `text` (int64)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)


def char_ids(text: str) -> np.ndarray:
    """The vocabulary id of each character of `text`."""
    return codepoint_ids(text_codepoints(text))


def pair_ids(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The pair id of each (first, second) character id."""
    return first.astype(np.int32) * VOCAB_SIZE + second.astype(np.int32)


def string_ids(names: list[str]) -> np.ndarray:
    """The id of each one-character string (a key name); 0 for longer names or characters outside the vocabulary."""
    return np.array([int(_ID_TABLE[ord(n)]) if len(n) == 1 and ord(n) < _TABLE_SIZE else 0 for n in names], np.int32)


def string_pair_ids(names: list[str]) -> np.ndarray:
    """The pair id of each two-character string (a letter-pair name); 0 where it is not two characters."""
    out = np.zeros(len(names), dtype=np.int32)
    for i, name in enumerate(names):
        if len(name) == 2:
            a, b = ord(name[0]), ord(name[1])
            first = int(_ID_TABLE[a]) if a < _TABLE_SIZE else 0
            second = int(_ID_TABLE[b]) if b < _TABLE_SIZE else 0
            out[i] = first * VOCAB_SIZE + second
    return out
