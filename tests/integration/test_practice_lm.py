"""The practice-text language model, for real: the packaged SmolLM2 converted and loaded by transformers, small
token budgets so the file runs in seconds on two cores."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.practice.generate import write_texts
from app.practice.lm import BANNED_CHARACTERS, PracticeWriter, WriteRequest
from app.practice.model_files import is_converted, model_folder
from app.practice.signature import PracticeNeeds, parse_signature
from app.practice.words import lift
from tests.conftest import TEST_PORTS

Q = PracticeNeeds(units=("q",))


@pytest.fixture(scope="module")
def writer() -> PracticeWriter:
    folder = model_folder(Settings.from_env(TEST_PORTS))
    loaded = PracticeWriter(folder, device="cpu")
    assert is_converted(folder)
    return loaded


def test_the_converted_model_loads_with_its_chat_template(writer):
    prompt = writer.prompt(["quick", "quiet"])
    assert prompt.rstrip().endswith("<|im_start|>assistant")
    assert "Words: quick, quiet" in prompt


def test_same_seed_same_text_and_another_seed_another(writer):
    requests = [WriteRequest(Q, 1)]
    first, stats = writer.write(requests, candidates=2, max_new_tokens=24, seed=7)
    again, _ = writer.write(requests, candidates=2, max_new_tokens=24, seed=7)
    other, _ = writer.write(requests, candidates=2, max_new_tokens=24, seed=8)
    assert [c.raw for c in first[0]] == [c.raw for c in again[0]]
    assert [c.raw for c in first[0]] != [c.raw for c in other[0]]
    assert all(c.raw.strip() for c in first[0])
    assert stats.candidates == 2 and 2 <= stats.new_tokens <= 48 and stats.tokens_per_s > 0


def test_generation_never_samples_banned_characters(writer):
    requests = [WriteRequest(PracticeNeeds(units=("z",)), 1)]
    results, _ = writer.write(requests, candidates=3, max_new_tokens=40, seed=1)
    for candidate in (c for row in results for c in row):
        assert not set(candidate.raw) & BANNED_CHARACTERS, candidate.raw


def test_the_target_bias_puts_more_targets_in_the_text(writer):
    requests = [WriteRequest(Q, 2)]
    biased, _ = writer.write(requests, candidates=3, max_new_tokens=32, seed=3)
    plain, _ = writer.write(requests, candidates=3, max_new_tokens=32, seed=3, target_bias=0.0)

    def mean_lift(results):
        candidates = [c for row in results for c in row]
        return sum(lift(c.text, Q.units) for c in candidates) / len(candidates)

    assert mean_lift(biased) > mean_lift(plain)


def test_written_texts_pass_the_scorer_and_drill_their_signature(writer):
    signature = "qwerty-en-s1-q"
    texts, stats = write_texts(writer, [signature], seed=0, prompts=2, candidates=4, max_new_tokens=56)
    assert texts, "no candidate of 8 passed the scorer"
    assert stats.candidates == 8
    for text in texts:
        assert text.signature == signature and text.targets == parse_signature(signature).units
        assert text.score["passed"] and text.score["target_share"] >= 0.25
        assert "q" in text.text.lower()
    assert len({t.text_id for t in texts}) == len(texts)


def test_a_writer_returns_a_row_per_signature_at_most_the_missing_texts_and_the_call_stats_once():
    """The Ray Data actor called directly (as map_batches calls it) with the real model and a small budget."""
    import pyarrow as pa

    import pipelines.practice as practice_job
    from app.practice.texts import PracticeText

    writer = practice_job.PracticeTextWriter(TEST_PORTS["KEYSCOPE_LM_DIR"], candidates=4, prompts=2, max_new_tokens=48)
    batch = pa.Table.from_pylist(
        [
            {"signature": "qwerty-en-s1-in.s", "seed": 0, "missing": 2},
            {"signature": "qwerty-en-s3-e.r.t", "seed": 0, "missing": 1},
        ]
    )
    rows = writer(batch).to_pylist()
    assert [row["signature"] for row in rows] == ["qwerty-en-s1-in.s", "qwerty-en-s3-e.r.t"]
    assert 1 <= len(rows[0]["texts"]) <= 2 and len(rows[1]["texts"]) <= 1
    texts = [PracticeText.from_json(raw) for row in rows for raw in row["texts"]]
    assert all(text.score["passed"] and text.model == writer.writer.name for text in texts)
    assert rows[0]["candidates"] == 2 * 2 * 4 and rows[0]["new_tokens"] > 0 and rows[0]["generate_s"] > 0
    assert (rows[1]["candidates"], rows[1]["new_tokens"], rows[1]["generate_s"]) == (0, 0, 0.0)
    again = writer(batch).to_pylist()
    assert [PracticeText.from_json(raw).text for raw in again[0]["texts"]] == [
        PracticeText.from_json(raw).text for raw in rows[0]["texts"]
    ]  # same seed, same texts
