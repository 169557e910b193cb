"""Serving practice texts, without the stack: how a passage is composed from a signature's texts and cut to length
(app/practice/serving.py), the response models that document the two routes, and how the background writer claims
and releases queued signatures (serve/practice_writer.py; the e2e test runs it with the real model and stores)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from app.config import Settings
from app.practice.score import score_text
from app.practice.serving import compose, cut_words
from app.practice.signature import parse_signature
from app.practice.texts import PracticeText, claim_key
from serve.models import PracticeText as PracticeTextModel
from serve.models import SignatureTexts
from serve.practice_writer import BATCH, BackgroundWriter

SIGNATURE = "qwerty-en-s2-e.t"


def written(text: str, value: float, signature: str = SIGNATURE) -> PracticeText:
    return PracticeText(
        signature=signature, text=text, targets=("e", "t"), prompt_words=("tea",), score={"value": value},
        model="m", seed=0, created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


TEXTS = [
    written("One two three four five.", 0.9),  # 5 words each
    written("Six seven eight nine ten.", 0.8),
    written("Eleven twelve thirteen fourteen fifteen.", 0.7),
]
A, B, C = (t.text_id for t in TEXTS)


def test_cut_words_keeps_short_texts_whole_and_joins_whitespace():
    assert cut_words("a  b\nc", 5) == "a b c"


def test_cut_words_ends_at_a_sentence_within_the_slack():
    text = "One two three four five six seven. Eight nine ten eleven"
    assert cut_words(text, 9) == "One two three four five six seven."  # 7 of 9 words: within 30 %


def test_cut_words_cuts_mid_sentence_when_no_sentence_end_is_near_and_drops_a_dangling_comma():
    assert cut_words("one two three, four five six seven eight nine ten", 3) == "one two three"
    assert cut_words("alpha beta gamma delta epsilon zeta eta theta", 4) == "alpha beta gamma delta"


def test_compose_takes_unserved_texts_best_first_until_enough_words():
    assert [t.text_id for t in compose(TEXTS, [], 5)] == [A]
    assert [t.text_id for t in compose(TEXTS, [], 6)] == [A, B]
    assert [t.text_id for t in compose(TEXTS, [A], 5)] == [B]


def test_compose_skips_recently_served_texts_then_reuses_the_one_served_longest_ago():
    # recent is newest first: C was served just now, A longest ago.
    assert [t.text_id for t in compose(TEXTS, [C, B, A], 5)] == [A]
    assert [t.text_id for t in compose(TEXTS, [C, A], 12)] == [B, A, C]


def test_compose_of_no_texts_is_empty():
    assert compose([], [A], 30) == []


def test_the_response_models_document_every_field_the_deployment_answers():
    needs = parse_signature(SIGNATURE)
    score = score_text("The street was quiet and the tea was sweet.", needs, min_words=1, max_words=10**6).as_dict()
    answer = {
        "user_id": 7_600_001, "text": "The street was quiet.", "targets": ["e", "t"], "generator": "lm",
        "signature": SIGNATURE, "text_ids": [A], "score": score,
        "experiment": {"name": "practice-gen-1", "variant": "lm"},  # while an experiment on the generator runs
    }
    model = PracticeTextModel.model_validate(answer)
    assert set(PracticeTextModel.model_fields) == set(answer)
    assert model.experiment is not None and model.experiment.variant == "lm"
    assert set(model.score.model_dump()) == set(score)  # no field of the score goes undocumented
    public = TEXTS[0].public()
    texts = SignatureTexts.model_validate({"signature": SIGNATURE, "texts": [{**public, "score": score}]})
    assert set(texts.texts[0].model_dump()) == set(public)
    assert texts.texts[0].created_at == "2026-01-02T03:04:05Z"


@pytest.mark.parametrize("field", ["user_id", "text", "targets", "generator", "signature", "text_ids", "score"])
def test_a_practice_text_answer_missing_a_field_is_rejected(field):
    needs = parse_signature(SIGNATURE)
    answer = {
        "user_id": 1, "text": "x", "targets": [], "generator": "rules", "signature": SIGNATURE, "text_ids": [],
        "score": score_text("x", needs, min_words=1, max_words=10).as_dict(),
    }
    del answer[field]
    with pytest.raises(ValueError, match=field):
        PracticeTextModel.model_validate(answer)


def test_writers_claim_a_signature_under_a_key_of_its_own():
    assert claim_key(SIGNATURE) == "keyscope:practice:writing:qwerty-en-s2-e.t"


class QueueOnly:
    """The parts of TextCache (and its Redis) the background writer uses, in memory."""

    def __init__(self, queued: list[str]) -> None:
        self.queue = list(queued)
        self.keys: dict[str, str] = {}
        self.stored: list[PracticeText] = []
        self.redis = self

    def queued(self, key: str, limit: int) -> list[str]:
        return self.queue[:limit]

    def done(self, signatures) -> None:
        self.queue = [s for s in self.queue if s not in set(signatures)]

    def put(self, texts) -> None:
        self.stored.extend(texts)

    def set(self, key: str, value: str, ex: int, nx: bool = False) -> bool:
        assert ex > 0
        if nx and key in self.keys:
            return False
        self.keys[key] = value
        return True

    def delete(self, *keys: str) -> None:
        for key in keys:
            self.keys.pop(key, None)


class ScriptedWriter(BackgroundWriter):
    """The writer with generation replaced (the model's own tests cover writing): one text per signature."""

    fail = False
    unwritable: tuple[str, ...] = ()  # signatures no candidate passes for

    def _write(self, signatures):
        self.wrote = list(signatures)
        if self.fail:
            raise RuntimeError("out of memory")
        return [written(f"A text for {s}.", 1.0, s) for s in signatures if s not in self.unwritable], 0.1


def test_the_writer_claims_at_most_a_batch_skips_claimed_and_malformed_signatures_and_releases_its_claims():
    queued = ["qwerty-en-s1-any", "bad signature", *(f"qwerty-en-s{i}-q" for i in range(5))]
    cache = QueueOnly(queued)
    cache.keys[claim_key("qwerty-en-s0-q")] = "another replica"
    writer = ScriptedWriter(Settings(), cache)
    texts = asyncio.run(writer.step())
    assert writer.wrote == ["qwerty-en-s1-any", "qwerty-en-s1-q", "qwerty-en-s2-q", "qwerty-en-s3-q"][:BATCH]
    assert len(texts) == len(cache.stored) == BATCH
    assert cache.queue == ["qwerty-en-s0-q", "qwerty-en-s4-q"]  # written and malformed ones left the queue
    assert cache.keys == {claim_key("qwerty-en-s0-q"): "another replica"}


def test_a_signature_nothing_passed_for_stays_claimed_for_a_cooldown_and_leaves_the_queue():
    cache = QueueOnly(["qwerty-en-s1-q", "qwerty-en-s1-z"])
    writer = ScriptedWriter(Settings(), cache)
    writer.unwritable = ("qwerty-en-s1-z",)
    texts = asyncio.run(writer.step())
    assert [t.signature for t in texts] == ["qwerty-en-s1-q"]
    assert cache.queue == []
    # The claim stays (with the cooldown's expiry), so the next misses do not each cost a writing round.
    assert cache.keys == {claim_key("qwerty-en-s1-z"): "failed"}


def test_a_failed_round_keeps_the_signatures_queued_and_unclaimed():
    cache = QueueOnly(["qwerty-en-s1-any"])
    writer = ScriptedWriter(Settings(), cache)
    writer.fail = True
    with pytest.raises(RuntimeError):
        asyncio.run(writer.step())
    assert cache.queue == ["qwerty-en-s1-any"] and cache.keys == {} and cache.stored == []
