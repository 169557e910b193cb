"""Serving practice texts, without the stack: how a passage is composed from a signature's texts and cut to length
(app/practice/serving.py), and the response models that document the two routes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.practice.score import score_text
from app.practice.serving import compose, cut_words
from app.practice.signature import parse_signature
from app.practice.texts import PracticeText
from serve.models import PracticeText as PracticeTextModel
from serve.models import SignatureTexts
from serve.practice_writer import claim_key

SIGNATURE = "qwerty-en-s2-e.t"


def written(text: str, value: float) -> PracticeText:
    return PracticeText(
        signature=SIGNATURE, text=text, targets=("e", "t"), prompt_words=("tea",), score={"value": value},
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
    }
    model = PracticeTextModel.model_validate(answer)
    assert set(PracticeTextModel.model_fields) == set(answer)
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
