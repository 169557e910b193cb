"""The pure pieces of the MySQL migration: DSN parsing and one source row → the seed's message → a TypingTest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from app.schemas import parse_submission
from pipelines.migrate_mysql import (
    DSNError,
    MigrationReport,
    Rejection,
    RowRejected,
    check_table_name,
    parse_dsn,
    row_to_submission,
    row_to_test,
)

TIMINGS = [{"key": "h", "time": 0, "duration": 90}, {"key": "i", "time": 140, "duration": None}]
ROW = {
    "_pk": 7,
    "user_id": 42,
    "test_result_id": 67890,
    "key_timings": json.dumps(TIMINGS),
    "key_errors": '{"i": 1}',
    "created_at": datetime(2024, 1, 1, 12, 0, 0, 250_000),
}


def row(**changes):
    return {**ROW, **changes}


# --- DSN ------------------------------------------------------------------------------------------------------


def test_a_full_dsn_parses_and_decodes_user_and_password():
    source = parse_dsn("mysql://app%40x:s%2Fecr%3Ft@db.example:3307/typing")
    assert (source.user, source.password, source.host, source.port, source.database) == (
        "app@x",
        "s/ecr?t",
        "db.example",
        3307,
        "typing",
    )
    assert source.key == "db.example:3307/typing"


def test_port_defaults_to_3306_and_mariadb_scheme_is_accepted():
    source = parse_dsn("mariadb://root@127.0.0.1/test")
    assert (source.port, source.password) == (3306, "")


def test_a_password_left_out_comes_from_mysql_pwd():
    assert parse_dsn("mysql://root@h/db", "pw").password == "pw"
    assert parse_dsn("mysql://root:given@h/db", "pw").password == "given"


def test_the_password_never_shows():
    source = parse_dsn("mysql://root:hunter2@h:3306/db")
    for text in (str(source), repr(source), source.redacted(), source.key):
        assert "hunter2" not in text
    assert source.redacted() == "mysql://root:***@h:3306/db"


@pytest.mark.parametrize(
    "dsn, message",
    [
        ("", "no DSN"),
        ("root@h/db", "no '://'"),
        ("postgres://root:hunter2@h/db", "scheme must be mysql"),
        ("mysql://h:3306/db", "names no user"),
        ("mysql://:hunter2@h/db", "names no user"),
        ("mysql://root:hunter2@/db", "names no host"),
        ("mysql://root:hunter2@h:abc/db", "port must be a number"),
        ("mysql://root:hunter2@h:70000/db", "port must be a number"),
        ("mysql://root:hunter2@h:3306", "names no database"),
        ("mysql://root:hunter2@h:3306/", "names no database"),
        ("mysql://root:hunter2@h/db/extra", "one name"),
        ("mysql://root:hunter2@h/db?ssl=1", "'?' or '#'"),
        ("mysql://root:hun#ter2@h/db", "percent-encode"),
        ("mysql://root:a/b@h/db", "percent-encode"),
    ],
)
def test_bad_dsns_say_what_is_wrong_without_the_password(dsn, message):
    with pytest.raises(DSNError, match=message) as info:
        parse_dsn(dsn)
    assert "hunter2" not in str(info.value) and "hun#ter2" not in str(info.value)


def test_table_names_are_plain_identifiers():
    assert check_table_name("keystroke_analytics") == "keystroke_analytics"
    for bad in ("", "a b", "t`; DROP TABLE x", "db.table", "x" * 65):
        with pytest.raises(ValueError, match="--table"):
            check_table_name(bad)


# --- row → submission -----------------------------------------------------------------------------------------


def test_a_row_becomes_the_seeds_message():
    assert row_to_submission(ROW) == {
        "userId": 42,
        "testResultId": 67890,
        "timestamp": "2024-01-01T12:00:00.250000+00:00",
        "keyTimings": TIMINGS,
        "keyErrors": {"i": 1},
    }


def test_the_test_is_the_one_parse_submission_makes_of_the_same_message():
    message = {
        "userId": 42,
        "testResultId": 67890,
        "timestamp": "2024-01-01T12:00:00.250Z",
        "keyTimings": TIMINGS,
        "keyErrors": {"i": 1},
    }
    expected = parse_submission(message)
    test = row_to_test(ROW)
    assert (test.user_id, test.test_id, test.started_at_ms, test.text) == (
        expected.user_id,
        "67890",
        expected.started_at_ms,
        expected.text,
    )
    assert test.down_ms.tolist() == [0, 140] and test.up_ms.tolist() == [90, -1]


def test_the_down_up_variant_and_double_encoded_json_give_the_same_test():
    down_up = json.dumps([{"key": "h", "down": 0, "up": 90}, {"key": "i", "down": 140, "up": None}])
    a = row_to_test(ROW)
    for variant in (row(key_timings=down_up), row(key_timings=json.dumps(json.dumps(TIMINGS)))):
        b = row_to_test(variant)
        assert (b.key_codes.tolist(), b.down_ms.tolist(), b.up_ms.tolist()) == (
            a.key_codes.tolist(),
            a.down_ms.tolist(),
            a.up_ms.tolist(),
        )


def test_created_at_is_utc_whether_naive_aware_or_text():
    naive = row_to_test(row(created_at=datetime(2024, 1, 1, 12)))
    aware = row_to_test(row(created_at=datetime(2024, 1, 1, 14, tzinfo=timezone(timedelta(hours=2)))))
    text = row_to_test(row(created_at="2024-01-01 12:00:00"))
    expected = int(datetime(2024, 1, 1, 12, tzinfo=UTC).timestamp() * 1000)
    assert naive.started_at_ms == aware.started_at_ms == text.started_at_ms == expected


def test_optional_columns_text_layout_language_and_missing_ids():
    test = row_to_test(row(text="hi there", layout="dvorak", language="de-CH"))
    assert (test.text, test.layout, test.language) == ("hi there", "dvorak", "de-CH")
    fallback = row_to_test(row(text="", layout=None))
    assert (fallback.text, fallback.layout) == ("hi", "qwerty")  # the final field content stands in
    no_id = row_to_test(row(test_result_id=None))
    assert no_id.test_id.startswith("t-") and no_id.test_id == row_to_test(row(test_result_id=None)).test_id
    assert row_to_test(row(user_id=Decimal(42), test_result_id="r-1")).test_id == "r-1"


@pytest.mark.parametrize("empty", [None, "null", "{}", "[]", b"{}"])
def test_empty_key_errors_are_accepted(empty):
    assert row_to_test(row(key_errors=empty)).user_id == 42


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"key_timings": "[{"}, "key_timings: invalid JSON"),
        ({"key_timings": None}, "key_timings: is NULL"),
        ({"key_timings": b"\xff\xfe"}, "key_timings: not UTF-8"),
        ({"key_timings": '{"key": "a"}'}, "key_timings: must be a JSON array"),
        ({"key_timings": "[]"}, "key_timings: must hold at least one keystroke"),
        ({"key_timings": '[{"key": "a", "time": 50}, {"key": "b", "time": 10}]'}, r"key_timings\[1\].time: times"),
        ({"key_timings": '[{"key": "a", "time": -5}]'}, r"key_timings\[0\].time: must be ≥ 0"),
        ({"key_timings": '[{"key": "a", "time": 0, "duration": -3}]'}, r"key_timings\[0\].duration"),
        ({"key_timings": '[{"key": "a", "down": 50, "up": 20}]'}, r"key_timings\[0\].up: release \(20\) is before"),
        ({"key_timings": '[{"key": "Space", "time": 0}]'}, r"key_timings\[0\].key: must be one character"),
        ({"key_timings": '[{"time": 0}]'}, r"key_timings\[0\].key: is required"),
        ({"key_errors": "{oops"}, "key_errors: invalid JSON"),
        ({"key_errors": '["a"]'}, "key_errors: must be an object"),
        ({"key_errors": '{"a": -1}'}, r"key_errors.a: must be between 0"),
        ({"user_id": None}, "user_id: is NULL"),
        ({"user_id": 0}, "user_id: must be between 1"),
        ({"test_result_id": "has space"}, "test_result_id: must be 1–64"),
        ({"created_at": None}, "created_at: is NULL"),
        ({"created_at": "0000-00-00 00:00:00"}, "created_at: must be an ISO-8601"),
        ({"created_at": datetime(1960, 1, 1)}, "created_at: is out of range"),
        ({"layout": "klingon"}, "layout: unknown layout"),
    ],
)
def test_bad_rows_are_rejected_naming_the_column(changes, reason):
    with pytest.raises(RowRejected, match=reason):
        row_to_test(row(**changes))


def test_too_many_keystrokes_are_rejected():
    many = json.dumps([{"key": "a", "time": i} for i in range(11)])
    with pytest.raises(RowRejected, match="key_timings: holds 11 keystrokes"):
        row_to_test(row(key_timings=many), max_keystrokes=10)


def test_the_reconciliation_balances_and_lists_rejections():
    report = MigrationReport("mysql://root@h:3306/db", "keystroke_analytics", rows_read=5, tests_written=2)
    report.already_present = 1
    report.rejected = [Rejection(3, "key_timings: invalid JSON"), Rejection(4, "user_id: is NULL")]
    assert report.balanced
    text = "\n".join(report.lines())
    assert "5 = 2 + 1 + 2 ✓" in text and "id 3: key_timings: invalid JSON" in text
    report.rows_read = 6
    assert not report.balanced and "MISMATCH" in "\n".join(report.lines())
