"""Answering "a practice text for this typist": a cached language-model text they have not just typed, else the
rule-based drill at once with the signature queued for writing (serve/practice.py calls this).

While an experiment on `practice_generator` runs (app/experiments/), the experiment layer says which generator the
user gets: `rules` serves the drill even when written texts are cached, `lm` answers as without an experiment.
Asking records the user's exposure in memory (written in batches by the layer's own thread); a failure of the
layer serves the text as without an experiment.

A text of about `words` words is composed from the signature's cached texts, best first, skipping the ones served
to the user in their last few requests (served.py); when every cached text was served recently, the one served
longest ago comes back and the signature is queued for more. Cut to `words` words, at a sentence end when one is
near.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any, Protocol

from app.experiments.runtime import Assignment
from app.practice.drills import build_drill, drill_targets
from app.practice.score import score_passage
from app.practice.served import ServedTexts
from app.practice.signature import needs_from_insights
from app.practice.texts import PracticeText, TextCache
from app.practice.words import warm as warm_words

log = logging.getLogger("keyscope.practice")

FACTOR = "practice_generator"  # the experiment factor this module reads (app/experiments/definition.py)
MIN_FRESH = 2  # a signature with fewer texts the user has not seen recently is queued for more
SENTENCE_SLACK = 0.3  # end at a sentence within this share of `words` rather than mid-sentence
CHARS_PER_WORD = 6  # a drill of `words` words is built this many characters a word, then cut


def cut_words(text: str, words: int) -> str:
    """The first `words` words of `text` (whitespace-separated), ending at a sentence end within the slack."""
    tokens = text.split()
    if len(tokens) <= words:
        return " ".join(tokens)
    lowest = max(1, int(words * (1 - SENTENCE_SLACK)))
    for end in range(words, lowest - 1, -1):
        if tokens[end - 1][-1] in ".!?":
            return " ".join(tokens[:end])
    return " ".join(tokens[:words]).rstrip(",;:")


def compose(texts: Sequence[PracticeText], recent: Sequence[str], words: int) -> list[PracticeText]:
    """The texts that make up about `words` words: unserved first (best first), then the least recently served."""
    fresh = [t for t in texts if t.text_id not in recent]
    order = {text_id: i for i, text_id in enumerate(recent)}
    stale = sorted((t for t in texts if t.text_id in order), key=lambda t: -order[t.text_id])
    chosen: list[PracticeText] = []
    count = 0
    for text in [*fresh, *stale]:
        if count >= words:
            break
        chosen.append(text)
        count += len(text.text.split())
    return chosen


class ExperimentChooser(Protocol):
    """The experiment layer as this module uses it (app/experiments/runtime.py `ExperimentRuntime`)."""

    def choose(self, user_id: int, factor: str) -> Assignment | None: ...


class PracticeTexts:
    """The practice-text answer for a user (sync; the deployment calls it in a worker thread)."""

    def __init__(self, cache: TextCache, served: ServedTexts, experiments: ExperimentChooser | None = None) -> None:
        self.cache = cache
        self.served = served
        self.experiments = experiments

    def _assignment(self, user_id: int) -> Assignment | None:
        if self.experiments is None:
            return None
        try:
            return self.experiments.choose(user_id, FACTOR)
        except Exception as exc:  # an experiment must never fail the route
            log.warning("experiment assignment failed for user %s: %r", user_id, exc)
            return None

    def for_user(self, user_id: int, insights: dict[str, Any] | None, words: int) -> dict[str, Any]:
        needs = needs_from_insights(insights)
        signature = needs.signature
        assignment = self._assignment(user_id)
        written = assignment is None or assignment.value == "lm"  # else the experiment gives this user the drill
        texts = self.cache.texts(signature) if written else []
        recent = self.served.recent(user_id) if written else []
        chosen = compose(texts, recent, words)
        fresh_left = sum(t.text_id not in recent for t in texts) - sum(t.text_id not in recent for t in chosen)
        if written and (not chosen or fresh_left < MIN_FRESH):
            self.cache.want(signature)
        if chosen:
            self.served.record(user_id, [t.text_id for t in chosen])
            text = cut_words(" ".join(t.text for t in chosen), words)
            generator, targets = "lm", list(needs.units)
        else:
            keys, pairs = drill_targets(insights) if insights else ([], [])
            drill = build_drill(keys, pairs, length_chars=words * CHARS_PER_WORD, seed=random.randrange(2**31),
                                layout=needs.layout)
            text = cut_words(drill, words)
            generator, targets = "rules", list(dict.fromkeys([*keys, *pairs]))
        answer = {
            "user_id": user_id,
            "text": text,
            "targets": targets,
            "generator": generator,
            "signature": signature,
            "text_ids": [t.text_id for t in chosen],
            "score": score_passage(text, needs).as_dict(),
        }
        if assignment is not None:
            answer["experiment"] = assignment.as_dict()
        return answer


def warm() -> None:
    """Build the tables a first answer would otherwise build (the drills' vocabulary, ordinary English's letter and
    pair rates for the score: a few hundred ms), so a new replica's first requests are as fast as later ones."""
    warm_words("en")
    build_drill(["q"], ["th"], length_chars=60, seed=0)

