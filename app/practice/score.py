"""Scores a practice text: does it drill the targets, read as real words, and carry no junk.

The language model follows "use these words" loosely and sometimes writes lists, markup, its own role tokens,
an echo of the prompt or a word three times over, so every candidate is scored and only one that passes every
check is kept (else the typist gets the rule-based drill). The same scorer rates the drills, so the two are
compared on one scale (`keyscope bench practice`).

- `target_share`: share of words holding a target unit;
- `lift`: how many times more often each target unit occurs than in ordinary text of the language, averaged over
  the units (words.py);
- `dictionary_share`: share of words that are common words of the language;
- `distinct_share`: distinct words / words;
- `words`: the count, within bounds;
- `problems`: what failed (junk, repeated n-grams, untypeable characters, blocked words, …); empty = passed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

from app.analytics.layouts import get_layout
from app.practice.signature import PracticeNeeds
from app.practice.words import blocked_words, is_dictionary_word, lift, units_in, words_of

MIN_WORDS = 8
MAX_WORDS = 80
MIN_TARGET_SHARE = 0.25
MIN_DICTIONARY_SHARE = 0.95
REPEAT_NGRAM = 3  # no run of this many words may appear twice
MAX_WORD_REPEATS = 3  # no word (but the shortest function words) more often than this
FUNCTION_WORDS = frozenset("a an and the of to in on at for is it i was with as but or my we you he she they".split())
# Things a practice sentence never holds: markup, chat roles and special tokens, list numbering, talk about the
# task itself.
_JUNK = (
    (re.compile(r"<\|?[a-z_]+\|?>|\[/?[A-Za-z]+\]|</?[a-z]+>"), "markup or special tokens"),
    (re.compile(r"[*#`_~{}\[\]|\\<>@^=+]"), "markup characters"),
    (re.compile(r"\b(assistant|user|system)\s*:", re.I), "chat roles"),
    (re.compile(r"(^|\s)(\d+[.)]|-)\s+\w", re.M), "a list"),
    (re.compile(r"\b(sentences?|these words|the words?|words:|typing practice|as an ai|language model|"
                r"here (is|are)|i hope|let me know)\b", re.I), "talk about the task"),
    (re.compile(r"\b(happy|glad|here) to help\b|\b(can|may) i (help|assist)\b|\bassist you\b|\bhow can i\b", re.I),
     "the model talking as an assistant"),
    (re.compile(r"https?://|www\.|\.com\b", re.I), "a link"),
    (re.compile(r"\d"), "digits"),
)
# Typographic characters the model writes and every layout types as their plain forms.
_PLAIN = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
                        "\u2026": "...", "\u00a0": " "})


@dataclass(frozen=True)
class TextScore:
    words: int
    target_share: float
    lift: float
    dictionary_share: float
    distinct_share: float
    problems: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def value(self) -> float:
        """One number to rank passing candidates by: target density first, then variety."""
        return round(self.target_share + 0.05 * min(self.lift, 10.0) + 0.2 * self.distinct_share, 4)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = list(self.problems)
        data["passed"] = self.passed
        data["value"] = self.value
        return data


def clean_text(raw: str) -> str:
    """The text as a typist gets it: typographic punctuation made plain, whitespace single spaces, wrapping quotes
    and a trailing unfinished sentence dropped (generation stops at a token budget, mid-sentence)."""
    text = unicodedata.normalize("NFC", raw).translate(_PLAIN)
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    last_stop = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
    if text and text[-1] not in ".!?" and last_stop > 0:
        text = text[: last_stop + 1]
    return text.strip()


def score_text(
    text: str, needs: PracticeNeeds, *, prompt_words: tuple[str, ...] = (), min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS, whole_sentences: bool = True,
) -> TextScore:
    """Score `text` (cleaned) for a typist with `needs`; `prompt_words` are the words the prompt listed, whose
    echo as a list is junk. `whole_sentences=False` for a passage cut to a length, which may end mid-sentence."""
    words = words_of(text)
    lowered = [word.lower() for word in words]
    problems: list[str] = []
    if not min_words <= len(words) <= max_words:
        problems.append(f"{len(words)} words, not {min_words}-{max_words}")
    typeable = set(get_layout(needs.layout).characters) | {" "}
    untypeable = sorted(set(text) - typeable)
    if untypeable:
        problems.append(f"characters the {needs.layout} layout cannot type: {''.join(untypeable)!r}")
    for pattern, what in _JUNK:
        if pattern.search(text):
            problems.append(what)
    if whole_sentences and text and text[-1] not in ".!?":
        problems.append("an unfinished sentence")
    blocked = sorted({word for word in lowered if word in blocked_words()})
    if blocked:
        problems.append("a blocked word")
    grams = [tuple(lowered[i : i + REPEAT_NGRAM]) for i in range(len(lowered) - REPEAT_NGRAM + 1)]
    if len(set(grams)) < len(grams):
        problems.append(f"a repeated run of {REPEAT_NGRAM} words")
    counts: dict[str, int] = {}
    for word in lowered:
        counts[word] = counts.get(word, 0) + 1
    if any(n > MAX_WORD_REPEATS for w, n in counts.items() if w not in FUNCTION_WORDS):
        problems.append(f"a word more than {MAX_WORD_REPEATS} times")
    if len(prompt_words) >= 2 and _echoes_list(lowered, prompt_words):
        problems.append("an echo of the prompt's word list")
    dictionary = sum(is_dictionary_word(word, needs.language) for word in words) / len(words) if words else 0.0
    if words and dictionary < MIN_DICTIONARY_SHARE:
        problems.append(f"dictionary words {dictionary:.0%} < {MIN_DICTIONARY_SHARE:.0%}")
    target = sum(units_in(word, needs.units) > 0 for word in words) / len(words) if words and needs.units else 0.0
    if needs.units and target < MIN_TARGET_SHARE:
        problems.append(f"target words {target:.0%} < {MIN_TARGET_SHARE:.0%}")
    return TextScore(
        words=len(words),
        target_share=round(target, 4),
        lift=round(lift(text, needs.units, needs.language), 3),
        dictionary_share=round(dictionary, 4),
        distinct_share=round(len(counts) / len(words), 4) if words else 0.0,
        problems=tuple(problems),
    )


def score_passage(text: str, needs: PracticeNeeds) -> TextScore:
    """Score a passage as served: cut to a requested length, so any length and possibly mid-sentence."""
    return score_text(text, needs, min_words=1, max_words=10**9, whole_sentences=False)


def _echoes_list(lowered: list[str], prompt_words: tuple[str, ...]) -> bool:
    """True when three or more of the prompt's words follow one another, as in "quick, square, equal"."""
    listed = {word.lower() for word in prompt_words}
    run = 0
    for word in lowered:
        run = run + 1 if word in listed else 0
        if run >= 3:
            return True
    return False
