"""The binary wire format of a typing test on Kafka.

Layout (little-endian), version 1:

    header  magic "KS" | version u8 | layout u8 | crc32 u32 (of everything after the header)
            | user_id u64 | started_at_ms i64 | keystrokes u32 | text_bytes u32 | test_id_bytes u8
            | language_bytes u8
    body    test_id utf-8 | language utf-8 | text utf-8 | key codes i32[n] | down_ms i32[n] | up_ms i32[n]

Key codes are Unicode code points, or -(i + 1) for NAMED_KEYS[i]; up_ms is -1 when unknown. Arrays
are decoded with `np.frombuffer` (no per-keystroke Python), and the CRC makes garbled bytes an error
instead of a wrong test. 12 bytes a keystroke, against ~40 for the same keystroke as JSON.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np

from app.schemas import LAYOUTS, MAX_USER_ID, NAMED_KEYS, TEST_ID_PATTERN, TypingTest

MAGIC = b"KS"
VERSION = 1
_HEADER = struct.Struct("<2sBBIQqIIBB")
HEADER_BYTES = _HEADER.size


class DecodeError(ValueError):
    """Bytes that are not a valid encoded typing test; the message says why (it goes to the DLQ)."""


def encode_test(test: TypingTest) -> bytes:
    """The wire bytes of a validated typing test."""
    test_id = test.test_id.encode()
    language = test.language.encode()
    text = test.text.encode()
    body = b"".join(
        (
            test_id,
            language,
            text,
            np.ascontiguousarray(test.key_codes, dtype="<i4").tobytes(),
            np.ascontiguousarray(test.down_ms, dtype="<i4").tobytes(),
            np.ascontiguousarray(test.up_ms, dtype="<i4").tobytes(),
        )
    )
    header = _HEADER.pack(
        MAGIC,
        VERSION,
        LAYOUTS.index(test.layout),
        zlib.crc32(body),
        test.user_id,
        test.started_at_ms,
        test.keystroke_count,
        len(text),
        len(test_id),
        len(language),
    )
    return header + body


def decode_test(payload: bytes, max_keystrokes: int = 20_000, *, check_keystrokes: bool = True) -> TypingTest:
    """The typing test in `payload`; raises DecodeError naming the first thing wrong with it. With
    `check_keystrokes` False the keystroke values are left for `keystroke_errors` to check in bulk."""
    if len(payload) < HEADER_BYTES:
        raise DecodeError(f"truncated: {len(payload)} bytes is shorter than the {HEADER_BYTES}-byte header")
    magic, version, layout_index, crc, user_id, started_at_ms, n, text_len, id_len, lang_len = _HEADER.unpack_from(
        payload
    )
    if magic != MAGIC:
        raise DecodeError(f"bad magic {magic!r}: not a keyscope typing test")
    if version != VERSION:
        raise DecodeError(f"unsupported wire version {version}")
    if n > max_keystrokes:
        raise DecodeError(f"{n} keystrokes exceeds the limit of {max_keystrokes}")
    expected = HEADER_BYTES + id_len + lang_len + text_len + 12 * n
    if len(payload) != expected:
        raise DecodeError(f"length {len(payload)} does not match the header's {expected}")
    body = memoryview(payload)[HEADER_BYTES:]
    if zlib.crc32(body) != crc:
        raise DecodeError("checksum mismatch: the message is garbled")
    if layout_index >= len(LAYOUTS):
        raise DecodeError(f"unknown layout index {layout_index}")
    if not 1 <= user_id <= MAX_USER_ID:
        raise DecodeError(f"user_id {user_id} out of range")
    if n == 0:
        raise DecodeError("a test needs at least one keystroke")
    try:
        test_id = bytes(body[:id_len]).decode()
        language = bytes(body[id_len : id_len + lang_len]).decode()
        offset = id_len + lang_len
        text = bytes(body[offset : offset + text_len]).decode()
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8 in a text field: {exc}") from exc
    if not TEST_ID_PATTERN.fullmatch(test_id):
        raise DecodeError(f"invalid test_id {test_id!r}")
    if not text:
        raise DecodeError("empty presented text")
    offset += text_len
    codes, downs, ups = np.frombuffer(body, dtype="<i4", count=3 * n, offset=offset).reshape(3, n).astype(np.int32)
    if check_keystrokes:
        _check_keystrokes(codes, downs, ups)
    return TypingTest(user_id, test_id, started_at_ms, text, LAYOUTS[layout_index], language, codes, downs, ups)


def keystroke_errors(tests: Sequence[TypingTest]) -> dict[int, str]:
    """Index → DecodeError message of each test (decoded without `check_keystrokes`) whose keystroke values are
    impossible. One pass over all the tests' keystrokes finds them; only those are checked one by one, for the
    message (a dozen numpy calls per test would cost more than decoding it)."""
    if not tests:
        return {}
    counts = np.array([t.keystroke_count for t in tests])
    codes = np.concatenate([t.key_codes for t in tests])
    downs = np.concatenate([t.down_ms for t in tests])
    ups = np.concatenate([t.up_ms for t in tests])
    bad = _bad_codes(codes) | (downs < 0) | ((ups != -1) & (ups < downs))
    decreasing = np.diff(downs) < 0
    decreasing[np.cumsum(counts)[:-1] - 1] = False  # from one test's last press to the next test's first
    bad[1:] |= decreasing
    errors: dict[int, str] = {}
    for i in np.unique(np.repeat(np.arange(len(tests)), counts)[bad]).tolist():
        try:
            _check_keystrokes(tests[i].key_codes, tests[i].down_ms, tests[i].up_ms)
        except DecodeError as exc:
            errors[i] = str(exc)
    return errors


def _bad_codes(codes: np.ndarray) -> np.ndarray:
    return (codes < -len(NAMED_KEYS)) | (codes > 0x10FFFF) | ((codes >= 0xD800) & (codes <= 0xDFFF))


def _check_keystrokes(codes: np.ndarray, downs: np.ndarray, ups: np.ndarray) -> None:
    """Raise DecodeError on impossible keystroke values (vectorized)."""
    bad_code = _bad_codes(codes)
    if bad_code.any():
        raise DecodeError(f"invalid key code {int(codes[bad_code.argmax()])}")
    if (downs < 0).any():
        raise DecodeError("negative key-down time")
    if (np.diff(downs) < 0).any():
        raise DecodeError("key-down times decrease")
    if ((ups != -1) & (ups < downs)).any():
        raise DecodeError("a key is released before it is pressed")
