"""The key vocabulary of the wire format: supported layouts, named keys and their codes.

A key is one character (its code point) or a named key (a negative code); every stage shares this.
"""

from __future__ import annotations

LAYOUTS: tuple[str, ...] = ("qwerty", "qwertz", "azerty", "dvorak", "colemak")

# Named keys as browsers report them (KeyboardEvent.key). On the wire a named key is -(index + 1),
# so this order is part of the wire format: append, never reorder.
NAMED_KEYS: tuple[str, ...] = (
    "Backspace",
    "Shift",
    "Enter",
    "Tab",
    "CapsLock",
    "Control",
    "Alt",
    "Meta",
    "Escape",
    "Delete",
    "ArrowLeft",
    "ArrowRight",
    "ArrowUp",
    "ArrowDown",
    "Home",
    "End",
    "PageUp",
    "PageDown",
    "Insert",
    "AltGraph",
    "Dead",
    "Compose",
    "Unidentified",
    "NumLock",
    "ScrollLock",
    "ContextMenu",
)
NAMED_KEY_CODES: dict[str, int] = {name: -(i + 1) for i, name in enumerate(NAMED_KEYS)}
BACKSPACE_CODE = NAMED_KEY_CODES["Backspace"]


def key_name(code: int) -> str:
    """The submitted name of a key code: the character, or the named key."""
    return chr(code) if code >= 0 else NAMED_KEYS[-code - 1]


def key_code(name: str) -> int:
    """The key code of a submitted name (`key_name`'s inverse): the code point, or the named key's code."""
    return ord(name) if len(name) == 1 else NAMED_KEY_CODES[name]
