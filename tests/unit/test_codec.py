import struct
import zlib

import numpy as np
import pytest

from app.codec import HEADER_BYTES, DecodeError, decode_test, encode_test, keystroke_errors
from app.schemas import parse_submission

SUBMISSION = {
    "user_id": 42,
    "test_id": "abc-1",
    "started_at": "2026-11-27T10:00:00Z",
    "text": "Grüße, dear 😀",
    "layout": "qwertz",
    "language": "de",
    "keystrokes": [
        {"key": "Shift", "down": 0, "up": 180},
        {"key": "G", "down": 90, "up": 150},
        {"key": "r", "down": 250, "up": None},
        {"key": "Backspace", "down": 400, "up": 460},
        {"key": "😀", "down": 500, "up": 560},
    ],
}


def test_round_trip_keeps_every_field():
    test = parse_submission(SUBMISSION)
    decoded = decode_test(encode_test(test))
    assert (decoded.user_id, decoded.test_id, decoded.started_at_ms) == (42, "abc-1", test.started_at_ms)
    assert (decoded.text, decoded.layout, decoded.language) == ("Grüße, dear 😀", "qwertz", "de")
    assert decoded.keys() == ["Shift", "G", "r", "Backspace", "😀"]
    assert decoded.down_ms.tolist() == [0, 90, 250, 400, 500]
    assert decoded.up_ms.tolist() == [180, 150, -1, 460, 560]


def test_wire_size_is_header_plus_twelve_bytes_a_keystroke():
    test = parse_submission(SUBMISSION)
    payload = encode_test(test)
    strings = len(b"abc-1") + len(b"de") + len("Grüße, dear 😀".encode())
    assert len(payload) == HEADER_BYTES + strings + 12 * 5


@pytest.mark.parametrize("cut", [0, 5, HEADER_BYTES - 1, HEADER_BYTES + 3, -1])
def test_truncated_bytes_are_rejected(cut):
    payload = encode_test(parse_submission(SUBMISSION))
    with pytest.raises(DecodeError, match="truncated|length"):
        decode_test(payload[:cut])


def test_a_flipped_byte_fails_the_checksum():
    payload = bytearray(encode_test(parse_submission(SUBMISSION)))
    payload[HEADER_BYTES + 10] ^= 0x01
    with pytest.raises(DecodeError, match="checksum"):
        decode_test(bytes(payload))


def test_garbage_is_rejected():
    with pytest.raises(DecodeError, match="magic"):
        decode_test(b"\x00garbage that is long enough to hold a header.....")


def _reencode(payload: bytes, codes=None, downs=None, ups=None, version=None) -> bytes:
    """Rebuild a payload with replaced arrays and a valid checksum (impossible values, valid encoding)."""
    header = list(struct.unpack_from("<2sBBIQqIIBB", payload))
    n = header[6]
    strings = HEADER_BYTES + header[7] + header[8] + header[9]
    arrays = np.frombuffer(payload, "<i4", 3 * n, strings).reshape(3, n).copy()
    for i, replacement in enumerate((codes, downs, ups)):
        if replacement is not None:
            arrays[i] = replacement
    body = payload[HEADER_BYTES:strings] + arrays.tobytes()
    header[3] = zlib.crc32(body)
    if version is not None:
        header[1] = version
    return struct.pack("<2sBBIQqIIBB", *header) + body


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"downs": [0, 90, 80, 400, 500]}, "decrease"),
        ({"downs": [-5, 90, 250, 400, 500]}, "negative"),
        ({"ups": [180, 10, -1, 460, 560]}, "released before"),
        ({"codes": [-1, 71, -999, -1, 65]}, "invalid key code"),
        ({"codes": [-1, 71, 0xD800, -1, 65]}, "invalid key code"),
        ({"version": 9}, "version"),
    ],
)
def test_valid_encoding_with_impossible_values_is_rejected(change, reason):
    payload = _reencode(encode_test(parse_submission(SUBMISSION)), **change)
    with pytest.raises(DecodeError, match=reason):
        decode_test(payload)


def test_too_many_keystrokes_is_rejected():
    payload = encode_test(parse_submission(SUBMISSION))
    with pytest.raises(DecodeError, match="exceeds"):
        decode_test(payload, max_keystrokes=4)


def test_bulk_keystroke_check_finds_exactly_the_impossible_tests_with_decode_tests_reasons():
    good = encode_test(parse_submission(SUBMISSION))
    changes = [
        {},
        {"downs": [0, 90, 80, 400, 500]},
        {},
        {"ups": [180, 10, -1, 460, 560]},
        {"codes": [-1, 71, 0xD800, -1, 65]},
        {"downs": [-5, 90, 250, 400, 500]},
        {},  # starts before the previous test's last press: that is no decrease
    ]
    payloads = [_reencode(good, **change) if change else good for change in changes]
    tests = [decode_test(p, check_keystrokes=False) for p in payloads]
    expected = {}
    for i, payload in enumerate(payloads):
        try:
            decode_test(payload)
        except DecodeError as exc:
            expected[i] = str(exc)
    assert keystroke_errors(tests) == expected
    assert set(expected) == {1, 3, 4, 5}
    assert keystroke_errors([]) == {}
