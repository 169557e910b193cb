"""Keyboard layouts: key positions, hands and fingers, neighbours, and the vectorised code lookups."""

from __future__ import annotations

import string

import numpy as np
import pytest

from app.analytics.layouts import (
    FINGERS,
    LAYOUTS,
    KeyboardLayout,
    finger_codes,
    get_layout,
    hand_codes,
    text_codepoints,
)

# What English typing tests present: every layout must be able to type all of it.
ENGLISH_CHARACTERS = string.ascii_letters + string.digits + " .,;:'\"?!-()"


def test_layout_names() -> None:
    assert LAYOUTS == ("qwerty", "qwertz", "azerty", "dvorak", "colemak")
    for name in LAYOUTS:
        layout = get_layout(name)
        assert isinstance(layout, KeyboardLayout)
        assert layout.name == name
    assert get_layout(" QWERTY ") is get_layout("qwerty")


def test_unknown_layout_names_the_known_ones() -> None:
    with pytest.raises(ValueError) as excinfo:
        get_layout("workman")
    message = str(excinfo.value)
    assert "workman" in message
    for name in LAYOUTS:
        assert name in message


@pytest.mark.parametrize("name", LAYOUTS)
def test_every_layout_types_english_text(name: str) -> None:
    layout = get_layout(name)
    missing = [char for char in ENGLISH_CHARACTERS if layout.key_info(char) is None]
    assert missing == []
    # 47 ANSI character keys and the spacebar; no character is on two keys.
    assert len(layout.keys) == 48
    legends = [key.char for key in layout.keys] + [key.shifted for key in layout.keys[:-1] if key.shifted]
    assert len(legends) == len(set(legends))


@pytest.mark.parametrize("name", LAYOUTS)
def test_capitals_share_their_letter_key_and_need_shift(name: str) -> None:
    layout = get_layout(name)
    for letter in string.ascii_lowercase:
        assert layout.key_info(letter.upper()) is layout.key_info(letter)
        assert layout.needs_shift(letter.upper())
        assert not layout.needs_shift(letter)
    assert not layout.needs_shift(" ")


@pytest.mark.parametrize(
    ("name", "char", "row", "column", "hand", "finger"),
    [
        ("qwerty", "f", 2, 3, "left", "left_index"),
        ("qwerty", "J", 2, 6, "right", "right_index"),
        ("qwerty", "a", 2, 0, "left", "left_pinky"),
        ("qwerty", "q", 1, 0, "left", "left_pinky"),
        ("qwerty", "p", 1, 9, "right", "right_pinky"),
        ("qwerty", "1", 0, 1, "left", "left_pinky"),
        ("qwerty", "!", 0, 1, "left", "left_pinky"),
        ("qwerty", "m", 3, 6, "right", "right_index"),
        ("qwerty", "?", 3, 9, "right", "right_pinky"),
        ("qwertz", "z", 1, 5, "right", "right_index"),
        ("qwertz", "y", 3, 0, "left", "left_pinky"),
        ("azerty", "a", 1, 0, "left", "left_pinky"),
        ("azerty", "q", 2, 0, "left", "left_pinky"),
        ("azerty", "m", 2, 9, "right", "right_pinky"),
        ("azerty", "1", 0, 1, "left", "left_pinky"),
        ("dvorak", "e", 2, 2, "left", "left_middle"),
        ("dvorak", "t", 2, 7, "right", "right_middle"),
        ("dvorak", "'", 1, 0, "left", "left_pinky"),
        ("colemak", "t", 2, 3, "left", "left_index"),
        ("colemak", "n", 2, 6, "right", "right_index"),
        ("colemak", "k", 3, 5, "right", "right_index"),
    ],
)
def test_key_positions(name: str, char: str, row: int, column: int, hand: str, finger: str) -> None:
    layout = get_layout(name)
    key = layout.key_info(char)
    assert key is not None
    assert (key.row, key.column, key.hand, key.finger) == (row, column, hand, finger)
    assert layout.hand(char) == hand
    assert layout.finger(char) == finger


def test_space_is_typed_by_a_thumb_of_either_hand() -> None:
    for name in LAYOUTS:
        layout = get_layout(name)
        key = layout.key_info(" ")
        assert key is not None
        assert (key.row, key.finger, key.hand) == (4, "thumb", None)
        assert layout.hand(" ") is None


def test_unknown_characters() -> None:
    layout = get_layout("qwerty")
    for char in ("\n", "€", "é", "😀"):
        assert layout.key_info(char) is None
        assert layout.hand(char) is None
        assert layout.finger(char) is None
        assert layout.neighbours(char) == ""
        assert not layout.needs_shift(char)


def test_qwerty_neighbours() -> None:
    layout = get_layout("qwerty")
    assert sorted(layout.neighbours("s")) == sorted("weadzx")
    assert sorted(layout.neighbours("S")) == sorted("WEADZX")  # Shift still held after the slip
    assert sorted(layout.neighbours("q")) == sorted("12wa")
    assert sorted(layout.neighbours("b")) == sorted("vngh ")
    assert sorted(layout.neighbours(" ")) == sorted("cvbnm")
    assert sorted(layout.neighbours("/")) == sorted(".;'")
    assert sorted(layout.neighbours("?")) == sorted('>:"')


def test_neighbours_follow_the_layout() -> None:
    assert sorted(get_layout("dvorak").neighbours("e")) == sorted("o.puqj")
    assert sorted(get_layout("colemak").neighbours("e")) == sorted("uynim,")
    assert sorted(get_layout("azerty").neighbours("a")) == sorted("&ézq")
    assert sorted(get_layout("qwertz").neighbours("t")) == sorted("56rzfg")


@pytest.mark.parametrize("name", LAYOUTS)
def test_neighbours_are_symmetric_and_exclude_the_key(name: str) -> None:
    layout = get_layout(name)
    for key in layout.keys:
        neighbours = layout.neighbours(key.char)
        assert key.char not in neighbours
        assert 1 <= len(neighbours) <= 6  # the key left of 1 touches only 1 (Tab is not modelled)
        for other in neighbours:
            assert key.char in layout.neighbours(other)


@pytest.mark.parametrize("name", LAYOUTS)
def test_hand_and_finger_codes_match_the_scalar_lookups(name: str) -> None:
    layout = get_layout(name)
    text = layout.characters + "\n€😀"
    codepoints = text_codepoints(text)
    assert codepoints.dtype == np.int32
    hands = hand_codes(layout, codepoints)
    fingers = finger_codes(name, codepoints)
    assert hands.dtype == np.int8 and fingers.dtype == np.int8
    expected_hands = [{"left": 0, "right": 1, None: -1}[layout.hand(char)] for char in text]
    expected_fingers = [
        -1 if layout.finger(char) is None else FINGERS.index(layout.finger(char)) for char in text
    ]
    assert hands.tolist() == expected_hands
    assert fingers.tolist() == expected_fingers


def test_hand_codes_worked_example() -> None:
    codepoints = np.array([ord("f"), ord("J"), ord(" "), ord("?"), -5, 0x1F600, ord("é")], dtype=np.int32)
    assert hand_codes("qwerty", codepoints).tolist() == [0, 1, -1, 1, -1, -1, -1]
    assert hand_codes("azerty", codepoints).tolist() == [0, 1, -1, 1, -1, -1, 0]
    assert finger_codes("qwerty", codepoints).tolist() == [3, 4, 8, 7, -1, -1, -1]
    # Any shape and integer width goes through the same table.
    grid = np.array([[ord("a"), ord("l")], [ord("t"), 0]], dtype=np.int64)
    assert hand_codes("dvorak", grid).tolist() == [[0, 1], [1, -1]]


def test_text_codepoints() -> None:
    assert text_codepoints("Hé😀").tolist() == [72, 233, 0x1F600]
    assert text_codepoints("").shape == (0,)
