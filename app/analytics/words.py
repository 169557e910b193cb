"""Word-level analytics of many tests at once: Monkeytype-style char stats, net characters and word bursts.

Words are what `str.split(" ")` gives: the presented text P and the transcribed text T are split on single
spaces and word i of T is compared with word i of P (an empty text has no words; two spaces in a row make
an empty word). For word pairs, character j of the T word is compared with character j of the P word.

- chars_correct    characters of a T word equal to the P word's character at the same index, plus the
                   spaces of T that P also has (T's space after word i, where P has a word i + 1)
- chars_incorrect  characters of a T word that differ from the P word's character at the same index
- chars_extra      characters of a T word beyond the end of the P word (or of a word P does not have), plus
                   T's spaces that P does not have
- chars_missed     characters of a P word beyond the end of the T word (or of a word T does not have: the
                   test stopped early), plus P's spaces that T does not have
  so correct + incorrect + extra = len(T) and correct + incorrect + missed = len(P). This differs from
  Monkeytype, which counts a space only after a correct word and never counts words that were not typed.
  Like Monkeytype's word-by-word comparison, a space typed for a letter (or a letter for a space) shifts
  every later word, so one such slip can make many incorrect/extra/missed characters; the MSD-based error
  rates (app.analytics.errors) are the alignment-free measure.
- net characters   the characters of T words equal to their P word, each with the space after it when both
                   T and P have one (Monkeytype's correct word characters + correct spaces)
- word_burst_wpm   series, one value per non-empty word of T in order: its characters / 5 per minute from
                   the press just before the press that typed its first (surviving) character to the press
                   of its last character; NaN for a word whose first character is the test's first press,
                   or when the two presses share a millisecond
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.analytics.rhythm import segment_sum
from app.analytics.speed import CHARS_PER_WORD

_SPACE = ord(" ")


@dataclass(frozen=True)
class Words:
    """The space-separated words of many texts whose characters are concatenated."""

    offsets: np.ndarray  # int64, texts + 1: text t's words are offsets[t]:offsets[t+1]
    start: np.ndarray  # int64 per word: index of its first character in the concatenated characters
    length: np.ndarray  # int64 per word (0 for an empty word)
    word_of_char: np.ndarray  # int64 per character: its word (a space: the word it ends)
    spaces: np.ndarray  # int64 per text
    char_offsets: np.ndarray  # int64, texts + 1: text t's characters are char_offsets[t]:char_offsets[t+1]

    @property
    def count(self) -> np.ndarray:
        """Return the number of words of each text."""
        return np.diff(self.offsets)


def _with_sentinel(values: np.ndarray, sentinel: int) -> np.ndarray:
    """Return values with `sentinel` appended, so that index −1 reads the sentinel."""
    return np.append(np.asarray(values, dtype=np.int64), sentinel)


def split_words(chars: np.ndarray, lengths: np.ndarray) -> Words:
    """Return the words of texts given as concatenated code points and per-text lengths."""
    lengths = np.asarray(lengths, dtype=np.int64)
    is_space = chars == _SPACE
    char_offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    text_start = char_offsets[:-1]
    spaces_before = np.concatenate(([0], np.cumsum(is_space))).astype(np.int64)  # spaces before index g
    spaces = spaces_before[text_start + lengths] - spaces_before[text_start]
    nonempty = lengths > 0
    offsets = np.concatenate(([0], np.cumsum(np.where(nonempty, spaces + 1, 0)))).astype(np.int64)
    # A character's word: its text's first word + the spaces before it within its text.
    word_of_char = spaces_before[:-1] + np.repeat(offsets[:-1] - spaces_before[text_start], lengths)

    n_words = int(offsets[-1])
    start = np.empty(n_words, dtype=np.int64)
    end = np.empty(n_words, dtype=np.int64)
    start[offsets[:-1][nonempty]] = text_start[nonempty]
    end[offsets[1:][nonempty] - 1] = (text_start + lengths)[nonempty]
    at_space = np.flatnonzero(is_space)
    start[word_of_char[at_space] + 1] = at_space + 1  # a space ends its word and starts the next
    end[word_of_char[at_space]] = at_space
    return Words(offsets, start, end - start, word_of_char, spaces, char_offsets)


def char_stats(
    typed: np.ndarray, typed_words: Words, presented: np.ndarray, presented_words: Words
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return ({chars_correct, chars_incorrect, chars_extra, chars_missed}, net characters) per test, int64.

    `typed` are the transcribed texts' code points, `presented` the presented texts', concatenated.
    """
    n_tests = typed_words.offsets.shape[0] - 1
    t_words, p_words = typed_words.count, presented_words.count
    p_length = _with_sentinel(presented_words.length, 0)  # [−1] → no P word: length 0

    # Each T word's P word (word i of the same test), −1 where P has fewer words.
    t_test = np.repeat(np.arange(n_tests, dtype=np.int64), t_words)
    t_index = np.arange(t_test.shape[0], dtype=np.int64) - typed_words.offsets[t_test]
    partner = np.where(t_index < p_words[t_test], presented_words.offsets[t_test] + t_index, -1)

    # Character j of a T word against character j of its P word.
    word = typed_words.word_of_char
    within = np.arange(typed.shape[0], dtype=np.int64) - typed_words.start[word]  # a space: its word's length
    p_word = partner[word]
    letter = typed != _SPACE
    paired = letter & (within < p_length[p_word])
    p_char = np.where(paired, _with_sentinel(presented_words.start, 0)[p_word] + within, -1)
    same = paired & (_with_sentinel(presented, -1)[p_char] == typed)
    correct = segment_sum(same, typed_words.char_offsets, np.int64)
    incorrect = segment_sum(paired & ~same, typed_words.char_offsets, np.int64)
    extra = segment_sum(letter & ~paired, typed_words.char_offsets, np.int64)

    # Each P word's T word, for the characters T never reached.
    p_test = np.repeat(np.arange(n_tests, dtype=np.int64), p_words)
    p_index = np.arange(p_test.shape[0], dtype=np.int64) - presented_words.offsets[p_test]
    t_partner = np.where(p_index < t_words[p_test], typed_words.offsets[p_test] + p_index, -1)
    typed_length = _with_sentinel(typed_words.length, 0)[t_partner]
    missed = segment_sum(np.maximum(presented_words.length - typed_length, 0), presented_words.offsets)

    shared_spaces = np.minimum(typed_words.spaces, presented_words.spaces)
    stats = {
        "chars_correct": correct + shared_spaces,
        "chars_incorrect": incorrect,
        "chars_extra": extra + typed_words.spaces - shared_spaces,
        "chars_missed": missed + presented_words.spaces - shared_spaces,
    }

    # Net characters: T words equal to their P word (same length, no differing character), with the space
    # after them where both texts have one.
    differing = np.bincount(word[letter & ~same], minlength=t_test.shape[0])
    equal = (partner >= 0) & (differing == 0) & (typed_words.length == p_length[partner])
    followed = (t_index < t_words[t_test] - 1) & (t_index < p_words[t_test] - 1)
    net = segment_sum(np.where(equal, typed_words.length + followed, 0), typed_words.offsets)
    return {name: values.astype(np.int64) for name, values in stats.items()}, net.astype(np.int64)


def word_burst_wpm(
    typed_words: Words,
    survivor_press: np.ndarray,
    downs: np.ndarray,
    offsets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (values float64, offsets int64 tests + 1): burst WPM of each non-empty word of T.

    `survivor_press[g]` is the index of the press that typed character g of the concatenated T texts.
    """
    n_tests = offsets.shape[0] - 1
    t_test = np.repeat(np.arange(n_tests, dtype=np.int64), typed_words.count)
    keep = typed_words.length > 0
    first = survivor_press[typed_words.start[keep]]
    last = survivor_press[typed_words.start[keep] + typed_words.length[keep] - 1]
    before = first - 1
    timed = before >= offsets[:-1][t_test[keep]]
    elapsed = np.where(timed, downs[last] - downs[np.maximum(before, 0)], 0).astype(np.float64)
    values = np.full(first.shape[0], np.nan)
    np.divide(typed_words.length[keep] * (60_000 / CHARS_PER_WORD), elapsed, out=values, where=timed & (elapsed > 0))
    burst_offsets = np.concatenate(([0], np.cumsum(np.bincount(t_test[keep], minlength=n_tests)))).astype(np.int64)
    return values, burst_offsets
