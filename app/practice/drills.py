"""Practice drills: passages of common English words aimed at a typist's weak keys and letter pairs.

A drill is a run of words from `practice_words.txt` (a few thousand common lowercase words, roughly most
common first). A steady TARGET_SHARE of the word slots are *target* words — each exercising a target key or
letter pair, the targets taking turns in proportion to the recommendations' priority — and the rest are
filler words drawn by how common they are, so the passage still reads like ordinary text. How a target shapes a
word:

- a letter ('q') or a pair of letters ('ck'): words containing it, weighted by how often;
- a capital ('T'), or a pair starting with one ('Th'): words starting with that letter, capitalised;
- a pair with a space: ' t' words starting with 't', 't ' words ending with it;
- a digit: a number holding the digit; other characters (',', ';', '-'): after a word, and a pair such as
  'e,' after a word ending in 'e'.

Targets nothing can exercise (a character the layout cannot type, 'é' on QWERTY; a letter no word holds)
are dropped, and with no usable target the drill is common words alone. Everything drawn comes from one
`random.Random(seed)`, so a seed gives the same passage.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.analytics.layouts import get_layout

WORDS_PATH = Path(__file__).with_name("practice_words.txt")
TARGET_SHARE = 0.6  # share of word slots that exercise a target; the rest keeps the text ordinary
RANK_OFFSET = 50  # filler weight 1 / (rank + RANK_OFFSET): common words often, rare ones now and then
MAX_FIT_TRIES = 30  # draws spent looking for a last word that fits the remaining length
FALLBACK_TARGETS = 3  # weak keys / pairs taken from the rankings when no recommendation names any
TARGET_POOL_CACHE = 512  # target pools kept between calls (units come from typists' texts: any characters)


@functools.cache
def practice_words() -> tuple[str, ...]:
    """Return the drill vocabulary: lowercase words, most common first (comment lines skipped)."""
    lines = WORDS_PATH.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@dataclass(frozen=True)
class _Pool:
    """Tokens to draw from, with their cumulative weights."""

    tokens: tuple[str, ...]
    cumulative: tuple[float, ...]

    @staticmethod
    def of(weighted: Iterable[tuple[str, float]]) -> _Pool | None:
        """Return a pool of the tokens with positive weight, or None when there are none."""
        kept = [(token, weight) for token, weight in weighted if weight > 0]
        if not kept:
            return None
        tokens, weights = zip(*kept)
        return _Pool(tuple(tokens), tuple(itertools.accumulate(weights)))

    def draw(self, rng: random.Random) -> str:
        """Return one token, drawn in proportion to its weight."""
        return rng.choices(self.tokens, cum_weights=self.cumulative)[0]


def _rank_weight(rank: int) -> float:
    return 1.0 / (rank + RANK_OFFSET)


def _numbers_with(digit: str) -> list[tuple[str, float]]:
    """Return numbers of one to four digits that contain `digit`, the shorter the likelier."""
    found = []
    for value in range(10_000):
        text = str(value)
        if digit in text:
            found.append((text, text.count(digit) / len(text) ** 2))
    return found


@functools.cache
def _vocabulary(layout: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """Return the practice words typeable on `layout`, and every character the layout types."""
    typeable = frozenset(get_layout(layout).characters)
    return tuple(word for word in practice_words() if set(word) <= typeable), typeable


@functools.cache
def _filler_pool(layout: str) -> _Pool:
    """Return the words of ordinary text: every typeable word, the commoner the likelier."""
    pool = _Pool.of((word, _rank_weight(rank)) for rank, word in enumerate(_vocabulary(layout)[0]))
    assert pool is not None, "the practice vocabulary is empty"
    return pool


@functools.lru_cache(maxsize=TARGET_POOL_CACHE)
def _target_pool(unit: str, layout: str) -> _Pool | None:
    """Return the tokens that exercise one target key or letter pair, or None when nothing can."""
    words, typeable = _vocabulary(layout)
    if not unit or not set(unit) <= typeable | {" "} or unit.isspace() or len(unit) > 2:
        return None
    ranked = list(enumerate(words))
    lower = unit.lower()
    if unit.isalpha():
        if unit[0].isupper():
            # 'T' or 'Th': the capital starts a word; what follows it is lowercase as in running text.
            return _Pool.of(
                (word.capitalize(), _rank_weight(rank)) for rank, word in ranked if word.startswith(lower)
            )
        return _Pool.of((word, word.count(unit) * _rank_weight(rank)) for rank, word in ranked)
    if len(unit) == 1 and unit.isdigit():
        return _Pool.of(_numbers_with(unit))
    if len(unit) == 1:  # punctuation: after a word, as in text
        return _Pool.of((word + unit, _rank_weight(rank)) for rank, word in ranked)
    first, second = unit
    if first == " " and second.isalpha():
        shape = str.capitalize if second.isupper() else str.lower
        return _Pool.of((shape(word), _rank_weight(rank)) for rank, word in ranked if word.startswith(second.lower()))
    if second == " " and first.isalpha() and first.islower():
        return _Pool.of((word, _rank_weight(rank)) for rank, word in ranked if word.endswith(first))
    if first.isalpha() and first.islower() and not second.isalnum() and second != " ":
        return _Pool.of((word + second, _rank_weight(rank)) for rank, word in ranked if word.endswith(first))
    return None


def build_drill(
    targets_keys: Sequence[str],
    targets_pairs: Sequence[str],
    length_chars: int = 200,
    seed: int | None = None,
    *,
    layout: str = "qwerty",
) -> str:
    """Return a practice passage of at most `length_chars` characters (never empty) aimed at the targets.

    `targets_keys` / `targets_pairs` are in priority order (most important first, as `drill_targets` returns
    them); earlier targets are drawn more often. Words are separated by single spaces and use only
    characters typeable on `layout`. The passage ends within a few characters of `length_chars` (one word
    when `length_chars` is shorter than any word). The same arguments and seed give the same passage.
    """
    if length_chars < 1:
        raise ValueError(f"length_chars must be at least 1, got {length_chars}")
    words, _ = _vocabulary(layout.strip().lower())
    filler = _filler_pool(layout.strip().lower())

    seen: set[str] = set()
    targets: list[_Pool] = []
    for unit in [*targets_keys, *targets_pairs]:
        if unit in seen:
            continue
        seen.add(unit)
        pool = _target_pool(unit, layout.strip().lower())
        if pool is not None:
            targets.append(pool)
    # Priority weights n, n − 1, …, 1: the first target is drawn most, every target still appears.
    priority = [float(len(targets) - i) for i in range(len(targets))]

    rng = random.Random(seed)
    # Slots are scheduled, not drawn: every 1 / TARGET_SHARE-th slot is a target, and targets take turns by
    # weight (smooth weighted round robin), so a 30-word drill holds its first target as often as its weight
    # says instead of anywhere from none to many times. The words themselves, and the phase, stay random.
    credit = rng.random()
    turns = [0.0] * len(targets)
    total = sum(priority)

    def next_token() -> str:
        nonlocal credit
        credit += TARGET_SHARE
        if targets and credit >= 1.0:
            credit -= 1.0
            for i, weight in enumerate(priority):
                turns[i] += weight
            chosen = max(range(len(turns)), key=turns.__getitem__)
            turns[chosen] -= total
            return targets[chosen].draw(rng)
        return filler.draw(rng)

    tokens: list[str] = []
    length = 0
    while True:
        room = length_chars - length - (1 if tokens else 0)
        token = next_token()
        if tokens and token == tokens[-1]:
            token = next_token()  # one redraw: "the the" reads as a typo
        if len(token) > room:
            fitting = (t for t in (next_token() for _ in range(MAX_FIT_TRIES)) if len(t) <= room)
            token = next(fitting, "")
            if not token:
                break
        length += len(token) + (1 if tokens else 0)
        tokens.append(token)
    if not tokens:  # shorter than every word drawn: one short common word rather than nothing
        tokens.append(min(words[:100], key=len))
    return " ".join(tokens)


def drill_targets(insights: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Return (keys, pairs) a drill should target, most important first, from a user's insights JSON.

    The targets are those of the recommendations (`recommendations[].targets.keys / .pairs`, by priority:
    drill_keys, same_finger_pair, drill_pairs). When no recommendation names one, the weakest few keys and
    pairs of the rankings (`weak_keys`, `weak_pairs`) stand in, so a typist without a standout weakness still
    practises their relatively weakest units.
    """
    keys: list[str] = []
    pairs: list[str] = []
    recommendations = sorted(insights.get("recommendations") or [], key=lambda item: item.get("priority", 0))
    for item in recommendations:
        targets = item.get("targets") or {}
        keys.extend(k for k in targets.get("keys") or [] if k not in keys)
        pairs.extend(p for p in targets.get("pairs") or [] if p not in pairs)
    if not keys and not pairs:
        keys = [unit["key"] for unit in (insights.get("weak_keys") or [])[:FALLBACK_TARGETS]]
        pairs = [unit["key"] for unit in (insights.get("weak_pairs") or [])[:FALLBACK_TARGETS]]
    return keys, pairs
