"""Keyboard layouts: where each character's key sits, which hand and finger type it, and its neighbours.

Every layout is modelled on the same ANSI (US-style) physical board: a number row, three letter rows and
a spacebar typed by a thumb. A character and its Shift partner ('a'/'A', '1'/'!') share one key; Shift
itself is not modelled. Fingers follow the usual touch-typing chart by physical column, so the same
position is typed by the same finger on every layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

LAYOUTS: tuple[str, ...] = ("qwerty", "qwertz", "azerty", "dvorak", "colemak")

Hand = Literal["left", "right"]

FINGERS: tuple[str, ...] = (
    "left_pinky",
    "left_ring",
    "left_middle",
    "left_index",
    "right_index",
    "right_middle",
    "right_ring",
    "right_pinky",
    "thumb",
)
HAND_CODES: dict[str, int] = {"left": 0, "right": 1}
FINGER_CODES: dict[str, int] = {name: code for code, name in enumerate(FINGERS)}

NUMBER_ROW, TOP_ROW, HOME_ROW, BOTTOM_ROW, SPACE_ROW = 0, 1, 2, 3, 4

# Left edge of each row's first character key, in key widths: Tab (1.5), Caps Lock (1.75) and the left
# Shift (2.25) push the letter rows right, which is what makes the diagonal neighbours.
_ROW_OFFSETS = (0.0, 1.5, 1.75, 2.25)
# Three 1.25-wide modifiers sit left of the ANSI spacebar, which is 6.25 wide.
_SPACE_SPAN = (3.75, 10.0)

_LP, _LR, _LM, _LI = "left_pinky", "left_ring", "left_middle", "left_index"
_RI, _RM, _RR, _RP = "right_index", "right_middle", "right_ring", "right_pinky"
# Finger per key index within a row (touch-typing chart; 6 goes to the right index like y/h/n below it).
_NUMBER_ROW_FINGERS = (_LP, _LP, _LR, _LM, _LI, _LI, _RI, _RI, _RM, _RR, _RP, _RP, _RP)
_LETTER_ROW_FINGERS = (_LP, _LR, _LM, _LI, _LI, _RI, _RI, _RM, _RR, _RP, _RP, _RP, _RP)

# Each row is a list of key legends: "unshifted" or "unshifted+shifted" (two characters); a lone letter's
# shifted legend is its capital. QWERTZ and AZERTY keep their national legends on ANSI positions (the
# ISO key left of the bottom row does not exist on ANSI, and '#'/'*' take the backslash position).
_QWERTY_NUMBERS = "`~ 1! 2@ 3# 4$ 5% 6^ 7& 8* 9( 0) -_ =+"
_ROWS: dict[str, tuple[str, str, str, str]] = {
    "qwerty": (
        _QWERTY_NUMBERS,
        "q w e r t y u i o p [{ ]} \\|",
        "a s d f g h j k l ;: '\"",
        "z x c v b n m ,< .> /?",
    ),
    "qwertz": (
        '^° 1! 2" 3§ 4$ 5% 6& 7/ 8( 9) 0= ß? ´`',
        "q w e r t z u i o p ü +* #'",
        "a s d f g h j k l ö ä",
        "y x c v b n m ,; .: -_",
    ),
    "azerty": (
        "² &1 é2 \"3 '4 (5 -6 è7 _8 ç9 à0 )° =+",
        "a z e r t y u i o p ^¨ $£ *µ",
        "q s d f g h j k l m ù%",
        "w x c v b n ,? ;. :/ !§",
    ),
    "dvorak": (
        "`~ 1! 2@ 3# 4$ 5% 6^ 7& 8* 9( 0) [{ ]}",
        "'\" ,< .> p y f g c r l /? =+ \\|",
        "a o e u i d h t n s -_",
        ";: q j k x b m w v z",
    ),
    "colemak": (
        _QWERTY_NUMBERS,
        "q w f p g j l u y ;: [{ ]} \\|",
        "a r s t d h n e i o '\"",
        "z x c v b k m ,< .> /?",
    ),
}


@dataclass(frozen=True)
class KeyInfo:
    """One physical key: its legends, position, and the hand and finger that type it."""

    char: str  # the unshifted legend
    shifted: str | None  # the legend typed with Shift held (None where the key has none)
    row: int  # 0 number row, 1 top, 2 home, 3 bottom, 4 space
    column: int  # index of the key within its row, counting character keys from the left
    x: float  # centre of the key in key widths from the board's left edge
    hand: Hand | None  # None for the spacebar, which either thumb presses
    finger: str  # one of FINGERS


@dataclass(frozen=True, eq=False)
class KeyboardLayout:
    """A keyboard layout: the keys of one board and lookups from characters to them."""

    name: str
    keys: tuple[KeyInfo, ...]
    _by_char: dict[str, tuple[int, bool]] = field(init=False, repr=False)  # char → (key index, shifted)
    _neighbour_keys: tuple[tuple[int, ...], ...] = field(init=False, repr=False)
    _hand_table: np.ndarray = field(init=False, repr=False)
    _finger_table: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_char: dict[str, tuple[int, bool]] = {}
        for index, key in enumerate(self.keys):
            by_char.setdefault(key.char, (index, False))
            if key.shifted is not None:
                by_char.setdefault(key.shifted, (index, True))
        neighbour_keys = tuple(
            tuple(j for j, other in enumerate(self.keys) if j != i and _adjacent(key, other))
            for i, key in enumerate(self.keys)
        )
        # Lookup tables indexed by code point, so per-keystroke arrays map without a Python loop.
        size = max(ord(char) for char in by_char) + 1
        hand_table = np.full(size, -1, dtype=np.int8)
        finger_table = np.full(size, -1, dtype=np.int8)
        for char, (index, _) in by_char.items():
            key = self.keys[index]
            hand_table[ord(char)] = -1 if key.hand is None else HAND_CODES[key.hand]
            finger_table[ord(char)] = FINGER_CODES[key.finger]
        object.__setattr__(self, "_by_char", by_char)
        object.__setattr__(self, "_neighbour_keys", neighbour_keys)
        object.__setattr__(self, "_hand_table", hand_table)
        object.__setattr__(self, "_finger_table", finger_table)

    @property
    def characters(self) -> str:
        """Return every character this layout can type (both legends of every key)."""
        return "".join(self._by_char)

    def key_info(self, char: str) -> KeyInfo | None:
        """Return the key that types `char` (capitals map to their letter's key), or None if none does."""
        found = self._by_char.get(char)
        return None if found is None else self.keys[found[0]]

    def needs_shift(self, char: str) -> bool:
        """Return True when `char` is its key's shifted legend (a capital letter, '?' on US boards...)."""
        found = self._by_char.get(char)
        return found is not None and found[1]

    def neighbours(self, char: str) -> str:
        """Return the characters of the keys physically adjacent to `char`'s key, in the same Shift state.

        A slip from a capital lands on a capital (Shift is still held); neighbours without a legend in
        that state are left out. Unknown characters have no neighbours.
        """
        found = self._by_char.get(char)
        if found is None:
            return ""
        index, shifted = found
        legends = (
            self.keys[j].shifted if shifted else self.keys[j].char for j in self._neighbour_keys[index]
        )
        return "".join(legend for legend in legends if legend is not None)

    def hand(self, char: str) -> Hand | None:
        """Return 'left' or 'right' for the hand that types `char`; None for space and unknown characters."""
        key = self.key_info(char)
        return None if key is None else key.hand

    def finger(self, char: str) -> str | None:
        """Return the finger that types `char` (one of FINGERS), or None for unknown characters."""
        key = self.key_info(char)
        return None if key is None else key.finger


def _adjacent(a: KeyInfo, b: KeyInfo) -> bool:
    """Return True when keys a and b touch: side by side in a row, or overlapping across adjacent rows."""
    if SPACE_ROW in (a.row, b.row):
        other = b if a.row == SPACE_ROW else a
        # The bar touches the bottom-row keys above it; the half-key margin drops those at its very ends.
        return other.row == BOTTOM_ROW and _SPACE_SPAN[0] + 0.5 < other.x < _SPACE_SPAN[1] - 0.5
    if a.row == b.row:
        return abs(a.column - b.column) == 1
    return abs(a.row - b.row) == 1 and abs(a.x - b.x) < 1.0


def _build_layout(name: str) -> KeyboardLayout:
    """Return the KeyboardLayout for one entry of _ROWS."""
    keys: list[KeyInfo] = []
    for row, legends in enumerate(_ROWS[name]):
        fingers = _NUMBER_ROW_FINGERS if row == NUMBER_ROW else _LETTER_ROW_FINGERS
        for column, legend in enumerate(legends.split()):
            char = legend[0]
            shifted = legend[1] if len(legend) > 1 else (char.upper() if char.isalpha() else None)
            finger = fingers[column]
            keys.append(
                KeyInfo(
                    char=char,
                    shifted=shifted,
                    row=row,
                    column=column,
                    x=_ROW_OFFSETS[row] + column + 0.5,
                    hand="left" if finger.startswith("left") else "right",
                    finger=finger,
                )
            )
    space_centre = (_SPACE_SPAN[0] + _SPACE_SPAN[1]) / 2
    keys.append(KeyInfo(" ", " ", SPACE_ROW, 0, space_centre, None, "thumb"))
    return KeyboardLayout(name, tuple(keys))


_LAYOUT_MODELS: dict[str, KeyboardLayout] = {name: _build_layout(name) for name in LAYOUTS}


def get_layout(name: str) -> KeyboardLayout:
    """Return the KeyboardLayout called `name` (case-insensitive); ValueError names the known ones."""
    layout = _LAYOUT_MODELS.get(name.strip().lower()) if isinstance(name, str) else None
    if layout is None:
        raise ValueError(f"unknown keyboard layout {name!r}; known layouts: {', '.join(LAYOUTS)}")
    return layout


def _lookup(table: np.ndarray, codepoints: np.ndarray) -> np.ndarray:
    """Return table[codepoints] as int8, with -1 wherever a code point falls outside the table."""
    codepoints = np.asarray(codepoints)
    codes = np.full(codepoints.shape, -1, dtype=np.int8)
    inside = (codepoints >= 0) & (codepoints < table.size)
    codes[inside] = table[codepoints[inside]]
    return codes


def text_codepoints(text: str) -> np.ndarray:
    """Return the Unicode code points of `text` as an int32 array."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int32)


def hand_codes(layout: KeyboardLayout | str, codepoints: np.ndarray) -> np.ndarray:
    """Return int8 hand codes for an array of code points: 0 left, 1 right, -1 space or unknown."""
    model = get_layout(layout) if isinstance(layout, str) else layout
    return _lookup(model._hand_table, codepoints)


def finger_codes(layout: KeyboardLayout | str, codepoints: np.ndarray) -> np.ndarray:
    """Return int8 finger codes (indices into FINGERS; 8 is the thumb) for code points, -1 if unknown."""
    model = get_layout(layout) if isinstance(layout, str) else layout
    return _lookup(model._finger_table, codepoints)
