"""Practice-text building blocks without the model: signatures, target words, the scorer."""

from __future__ import annotations

import random

import pytest

from app.practice.score import clean_text, score_text
from app.practice.signature import (
    GENERAL_NEEDS,
    PracticeNeeds,
    SignatureError,
    lm_units,
    needs_from_insights,
    parse_signature,
    skill_band,
)
from app.practice.words import blocked_words, is_dictionary_word, lift, ordinary_rate, target_words, unit_lifts

QU = PracticeNeeds(units=("q", "u"))


def insights(keys=(), pairs=(), layout="qwerty", wpm=52.0):
    return {
        "layout": layout,
        "recent": {"wpm": wpm},
        "recommendations": [{"priority": 1, "targets": {"keys": list(keys), "pairs": list(pairs)}}],
    }


def test_a_signature_names_layout_language_skill_and_sorted_letter_targets():
    needs = needs_from_insights(insights(keys=["Q", ";", "z"], pairs=["th", "e ", "ed"]))
    # Capitals fold to letters, punctuation and pairs with a space are the drills' business, at most three units.
    assert needs == PracticeNeeds("qwerty", "en", 2, ("q", "th", "z"))
    assert needs.signature == "qwerty-en-s2-q.th.z"
    assert parse_signature(needs.signature) == needs


def test_typists_with_the_same_needs_share_a_signature_whatever_the_order_of_their_targets():
    a = needs_from_insights(insights(keys=["z", "q"], wpm=41))
    b = needs_from_insights(insights(keys=["q", "z"], wpm=59))
    assert a.signature == b.signature == "qwerty-en-s2-q.z"


def test_no_insights_or_no_targets_give_general_text():
    assert needs_from_insights(None) == GENERAL_NEEDS
    assert needs_from_insights({}).signature == "qwerty-en-s1-any"
    assert needs_from_insights(insights(layout="dvorak", wpm=90)).signature == "dvorak-en-s4-any"
    assert needs_from_insights(insights(layout="klingon")).layout == "qwerty"


@pytest.mark.parametrize(
    ("wpm", "band"), [(None, 1), (float("nan"), 1), (10, 0), (25, 1), (45, 2), (79.9, 3), (120, 4)]
)
def test_skill_bands(wpm, band):
    assert skill_band(wpm) == band


def test_lm_units_keep_priority_then_sort():
    assert lm_units(["a", "b", "c", "d"], ["ab"]) == ("a", "b", "c")


@pytest.mark.parametrize(
    "bad",
    ["", "qwerty", "qwerty-en-s9-q", "qwerty-en-s1-Q", "qwerty-en-s1-th.q", "qwerty-en-s1-q.q", "foo-en-s1-q",
     "qwerty-en-s1-abc", "qwerty-en-s1-a.b.c.d", "qwerty-en-s1-q;drop"],
)
def test_a_malformed_signature_is_refused_naming_the_field(bad):
    with pytest.raises(SignatureError) as caught:
        parse_signature(bad, field="signature")
    assert caught.value.field == "signature"


def test_target_words_hold_the_targets_are_common_typeable_and_deterministic():
    needs = PracticeNeeds("qwerty", "en", 0, ("q", "th"))
    words = target_words(needs, 8, random.Random(3))
    assert words == target_words(needs, 8, random.Random(3))
    assert len(words) == len(set(words)) == 8
    assert all("q" in w or "th" in w for w in words)
    assert any("q" in w for w in words) and any("th" in w for w in words)  # every target represented
    assert all(is_dictionary_word(w) for w in words)
    assert not set(words) & blocked_words()


def test_target_words_avoid_blocked_words_even_when_they_hold_the_target():
    needs = PracticeNeeds("qwerty", "en", 4, ("ck",))
    drawn = {w for seed in range(40) for w in target_words(needs, 6, random.Random(seed))}
    assert "fuck" not in drawn and "fucking" not in drawn and "dick" not in drawn
    assert "back" in drawn or "check" in drawn


def test_lift_compares_with_ordinary_english():
    assert 0 < ordinary_rate("q") < 0.002  # q is about 0.1 % of letters
    assert lift("The quick queen quietly quit the quiz.", ("q",)) > 20
    assert lift("The cat sat on the mat.", ("q",)) == 0
    # Per unit: a rare target counts as much as a common one.
    lifts = unit_lifts("The queen sat.", ("q", "e"))
    assert lifts["q"] > 10 * lifts["e"]
    assert lift("The queen sat.", ("q", "e")) == pytest.approx((lifts["q"] + lifts["e"]) / 2)


def test_clean_text_makes_typography_plain_and_drops_an_unfinished_sentence():
    raw = "\u201cIt\u2019s a quiet day \u2014 quite so. The queen was"
    assert clean_text(raw) == "\u201cIt's a quiet day - quite so.".replace("\u201c", '"')


GOOD = "The queen asked a quick question about the quiet square. Her quilt was unique and quite old."


def test_a_good_text_passes_and_reports_its_measures():
    score = score_text(GOOD, QU)
    assert score.passed, score.problems
    assert score.words == 17
    assert score.target_share >= 0.5 and score.dictionary_share == 1.0 and score.lift > 3


@pytest.mark.parametrize(
    ("junk", "problem"),
    [
        ("<|im_start|>assistant The queen asked a quick question about the quiet square today.", "special tokens"),
        ("The **queen** asked a quick question about the quiet square today now.", "markup"),
        ("assistant: The queen asked a quick question about the quiet square today.", "chat roles"),
        ("1. The queen asked a quick question. 2. The queen was quite unique today.", "list"),
        ("Here are two sentences with the words: queen, quick, quiet and unique.", "task"),
        ("I'm happy to help with your question! What can I assist you with today, quickly?", "assistant"),
        ("The queen quit. The queen quit. The queen quit. The queen quit the quiet square.", "repeated run"),
        ("The queen asked a quick question about the quiet square in Zxqvlorp Quagmirevillex.", "dictionary"),
        ("The queen asked a quick question about the quiet square at 10 past noon.", "digits"),
        ("The queen asked a quick question about the quiet square and then she", "unfinished"),
        ("Queen quiet.", "words, not"),
        ("The dog sat on the mat and the cat ran to the big red barn by the pond.", "target words"),
        ("Quick, quiet, queen, quilt and unique are words about the quiet square.", "echo"),
        ("The queen asked a quick question about the quiet square and said shit.", "blocked"),
        ("The queen asked a quick question about the quiet square in Zürich.", "cannot type"),
    ],
)
def test_the_scorer_rejects_junk(junk, problem):
    score = score_text(junk, QU, prompt_words=("quick", "quiet", "queen", "quilt", "unique"))
    assert not score.passed
    assert any(problem in p for p in score.problems), score.problems
