"""Words for practice texts, from the word-frequency lists of `wordfreq`: which words exercise a typist's target
units, which strings are dictionary words, and how often the units occur in ordinary text of the language.

Target words must be common enough for the typist's skill band (a beginner practises 'q' on "quite", not
"quixotic"), typeable on the layout, and hold a target unit; the more of the units a word holds and the commoner
it is, the likelier it is drawn.
"""

from __future__ import annotations

import functools
import random
import re
from pathlib import Path

from wordfreq import get_frequency_dict, top_n_list, zipf_frequency

from app.analytics.layouts import get_layout
from app.practice.signature import PracticeNeeds

VOCABULARY_SIZE = 30_000  # the commonest words of a language considered for targets and for "ordinary text"
# Least Zipf frequency of a target word per skill band (7 = "the", 4 = once per 10 k words, 3 = per 1 M).
MIN_ZIPF_BY_SKILL = (4.3, 3.9, 3.5, 3.2, 3.0)
DICTIONARY_MIN_ZIPF = 2.5  # a token at least this common is a dictionary word (names and junk are rarer)
MIN_WORD_CHARS = 3
BLOCKED_PATH = Path(__file__).with_name("blocked_words.txt")
_WORD = re.compile(r"[a-z]+")
_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


@functools.cache
def blocked_words() -> frozenset[str]:
    """Words no practice text may hold (offensive ones), lowercase."""
    lines = BLOCKED_PATH.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@functools.cache
def vocabulary(language: str) -> tuple[str, ...]:
    """The language's commonest alphabetic words, most common first (wordfreq's list), blocked words left out."""
    blocked = blocked_words()
    return tuple(
        word for word in top_n_list(language, VOCABULARY_SIZE) if _WORD.fullmatch(word) and word not in blocked
    )


@functools.lru_cache(maxsize=200_000)
def is_dictionary_word(token: str, language: str = "en") -> bool:
    """True when `token` (a word, with or without an apostrophe, any case) is a common word of the language."""
    return zipf_frequency(token.lower(), language) >= DICTIONARY_MIN_ZIPF


def words_of(text: str) -> list[str]:
    """The word tokens of a text, as written (letters with at most one inner apostrophe)."""
    return _TOKEN.findall(text)


def units_in(word: str, units: tuple[str, ...]) -> int:
    """How many times the word (lowercased) holds any of the units."""
    lower = word.lower()
    return sum(lower.count(unit) for unit in units)


@functools.lru_cache(maxsize=1024)  # bounded: a writer process meets many signatures over its life
def _candidates(needs: PracticeNeeds) -> tuple[tuple[str, ...], tuple[float, ...]]:
    typeable = set(get_layout(needs.layout).characters)
    min_zipf = MIN_ZIPF_BY_SKILL[needs.skill]
    words: list[str] = []
    weights: list[float] = []
    for word in vocabulary(needs.language):
        if len(word) < MIN_WORD_CHARS or not set(word) <= typeable:
            continue
        hits = units_in(word, needs.units)
        if not hits:
            continue
        zipf = zipf_frequency(word, needs.language)
        if zipf < min_zipf:
            continue
        words.append(word)
        # Commoner words read more naturally; each extra target occurrence counts.
        weights.append(hits * (zipf - min_zipf + 0.5))
    return tuple(words), tuple(weights)


def target_words(needs: PracticeNeeds, count: int, rng: random.Random) -> list[str]:
    """Up to `count` distinct common words holding the target units, drawn by weight with `rng`. A typist with no
    target units gets common words of ordinary text, so a prompt always has words to build on."""
    if not needs.units:
        pool = [w for w in vocabulary(needs.language)[:2000] if len(w) >= 4]
        return rng.sample(pool, min(count, len(pool)))
    words, weights = _candidates(needs)
    chosen: list[str] = []
    # Draw per unit in turn so every target is represented, then by weight.
    for unit in needs.units:
        own = [(w, wt) for w, wt in zip(words, weights) if unit in w and w not in chosen]
        if own and len(chosen) < count:
            chosen.append(rng.choices([w for w, _ in own], weights=[wt for _, wt in own])[0])
    tries = 0
    while len(chosen) < min(count, len(words)) and tries < 20 * count:
        word = rng.choices(words, weights=weights)[0]
        if word not in chosen:
            chosen.append(word)
        tries += 1
    return chosen


@functools.cache
def _ordinary_counts(language: str) -> tuple[dict[str, float], float]:
    """Every letter's and letter pair's frequency-weighted count over the vocabulary, and the weighted characters
    (a space after each word): one pass, so a process pays for it once (the practice deployment at start)."""
    frequencies = get_frequency_dict(language)
    counts: dict[str, float] = {}
    chars = 0.0
    for word in vocabulary(language):
        weight = frequencies.get(word, 0.0)
        chars += weight * (len(word) + 1)
        for i, letter in enumerate(word):
            counts[letter] = counts.get(letter, 0.0) + weight
            if i:
                pair = word[i - 1 : i + 1]
                counts[pair] = counts.get(pair, 0.0) + weight
    return counts, chars


def ordinary_rate(unit: str, language: str = "en") -> float:
    """Occurrences of a letter or letter pair per character of ordinary running text in the language: the
    vocabulary weighted by word frequency, a space after each word. The baseline a practice text's lift is measured
    against."""
    counts, chars = _ordinary_counts(language)
    return counts.get(unit, 0.0) / chars if chars else 0.0


def warm(language: str = "en") -> None:
    """Build the language's tables now rather than on a first request."""
    _ordinary_counts(language)


def unit_rate(text: str, unit: str) -> float:
    """Occurrences of a unit per character of a text (case-insensitive, within words)."""
    if not text:
        return 0.0
    return sum(word.lower().count(unit) for word in words_of(text)) / len(text)


def unit_lifts(text: str, units: tuple[str, ...], language: str = "en") -> dict[str, float]:
    """How many times more often each unit occurs in `text` than in ordinary text (1.0 = as often)."""
    lifts = {}
    for unit in units:
        base = ordinary_rate(unit, language)
        lifts[unit] = unit_rate(text, unit) / base if base > 0 else 0.0
    return lifts


def lift(text: str, units: tuple[str, ...], language: str = "en") -> float:
    """The units' lifts averaged: how many times more often the typist's targets occur than in ordinary text. Per
    unit, so a rare weak key ('q') counts as much as a common one ('e'); 0 without units."""
    lifts = unit_lifts(text, units, language)
    return sum(lifts.values()) / len(lifts) if lifts else 0.0
