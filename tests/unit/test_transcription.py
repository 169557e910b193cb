import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.analytics.transcription import transcribe, transcribe_batch
from app.schemas import NAMED_KEY_CODES
from tests.reference import reference_metrics

BS = NAMED_KEY_CODES["Backspace"]
SHIFT = NAMED_KEY_CODES["Shift"]


def codes(*keys: str) -> np.ndarray:
    return np.array([ord(k) if len(k) == 1 else NAMED_KEY_CODES[k] for k in keys], dtype=np.int32)


def test_characters_append_backspace_removes_other_named_keys_do_nothing():
    assert transcribe(codes("c", "a", "t")) == "cat"
    assert transcribe(codes("c", "x", "Backspace", "a", "Shift", "T")) == "caT"
    assert transcribe(codes("Backspace", "Backspace", "a")) == "a"  # Backspace on an empty field does nothing
    assert transcribe(codes("a", "b", "Backspace", "Backspace", "Backspace")) == ""
    assert transcribe(codes("a", "Delete", "Enter", "Tab", "b")) == "ab"


def test_positions_and_survivors_by_hand():
    # keys:      t  g  ⌫  h  e   → field "the"
    # position:  0  1  -  1  2     (g typed into 1, removed; h typed into 1 again)
    # survives:  T  F  F  T  T
    result = transcribe_batch(codes("t", "g", "Backspace", "h", "e"), np.array([0, 5]))
    assert result.position.tolist() == [0, 1, -1, 1, 2]
    assert result.survives.tolist() == [True, False, False, True, True]
    assert result.transcribed == ["the"]


def test_tests_in_a_batch_do_not_leak_into_each_other():
    # The second test starts with Backspaces: they must not delete the first test's characters.
    batch = np.concatenate([codes("a", "b", "c"), codes("Backspace", "Backspace", "x"), codes("Backspace")])
    result = transcribe_batch(batch, np.array([0, 3, 6, 7]))
    assert result.transcribed == ["abc", "x", ""]
    assert result.transcribed_length.tolist() == [3, 1, 0]


def test_empty_tests_in_a_batch():
    result = transcribe_batch(codes("a"), np.array([0, 0, 1, 1]))
    assert result.transcribed == ["", "a", ""]


keys = st.sampled_from(["a", "b", "é", " ", "Backspace", "Backspace", "Shift", "Delete"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(keys, min_size=0, max_size=40), min_size=1, max_size=6))
def test_batch_matches_the_press_by_press_reference(tests):
    flat = [k for t in tests for k in t]
    offsets = np.concatenate(([0], np.cumsum([len(t) for t in tests])))
    result = transcribe_batch(codes(*flat) if flat else np.empty(0, np.int32), offsets)
    for i, test in enumerate(tests):
        strokes = [{"key": k, "down": j, "up": None} for j, k in enumerate(test)]
        expected = reference_metrics("x", strokes)["transcribed"] if test else ""
        assert result.transcribed[i] == expected
