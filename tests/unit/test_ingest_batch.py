"""The ingest job's per-batch step (decode, de-duplicate, analyse, dead-letter) without any service."""

from __future__ import annotations

import pyarrow as pa

import pipelines.ingest.analyse as analyse
from app.codec import encode_test
from app.kafka import user_key
from app.schemas import parse_submission
from devstack.simulate import simulate_tests
from pipelines.ingest.plan import past_low_watermarks
from pipelines.ingest.recover import partial_write_possible


def messages(values: list[bytes], stamps: list[int] | None = None) -> pa.Table:
    return pa.table(
        {
            "offset": pa.array(range(len(values)), pa.int64()),
            "key": pa.array([user_key(1)] * len(values), pa.binary()),
            "value": pa.array(values, pa.binary()),
            "partition": pa.array([0] * len(values), pa.int32()),
            "timestamp": pa.array(stamps or [1_700_000_000_000 + i for i in range(len(values))], pa.int64()),
        }
    )


def run(values: list[bytes], **options) -> tuple[list, list, int]:
    return analyse.unpack(analyse.analyse_messages(messages(values), **options))[:3]


def test_a_batch_reports_its_oldest_kafka_timestamp_for_the_latency_metric():
    values = [encode_test(parse_submission(s)) for s in simulate_tests(1, 3, seed=4)]
    stamps = [1_700_000_000_500, 1_700_000_000_100, 1_700_000_000_900]
    *_, oldest = analyse.unpack(analyse.analyse_messages(messages(values, stamps)))
    assert oldest == 1_700_000_000_100


def test_copies_of_a_test_in_one_batch_are_stored_once_and_counted_as_duplicates():
    tests = [parse_submission(s) for s in simulate_tests(1, 2, seed=9)]
    first, second = (encode_test(t) for t in tests)
    tables, dead, duplicates = run([first, first, second, first])
    assert duplicates == 2 and dead == []
    (batch,) = tables
    assert batch.results.column("test_id").to_pylist() == [tests[0].test_id, tests[1].test_id]
    assert batch.keystrokes.num_rows == tests[0].keystroke_count + tests[1].keystroke_count


def test_poison_messages_become_dead_letters_with_their_reasons():
    good = encode_test(parse_submission(simulate_tests(1, 1, seed=9)[0]))
    tables, dead, _ = run([b"", b"garbage" * 10, good, good[:-3]], max_message_bytes=len(good))
    assert tables[0].results.num_rows == 1
    reasons = {letter.offset: letter.reason for letter in dead}
    assert set(reasons) == {0, 1, 3}
    assert reasons[0] == "empty message" and "magic" in reasons[1] and "length" in reasons[3]
    _, dead, _ = run([good], max_message_bytes=len(good) - 1)
    assert "exceeds the limit" in dead[0].reason


def test_a_test_that_breaks_the_analytics_is_dead_lettered_alone(monkeypatch):
    tests = [parse_submission(s) for s in simulate_tests(1, 5, seed=11)]
    poison = tests[2].test_id
    real = analyse.build_tables

    def failing_on_poison(batch, partitions, offsets):
        if any(t.test_id == poison for t in batch):
            raise ValueError("boom")
        return real(batch, partitions, offsets)

    monkeypatch.setattr(analyse, "build_tables", failing_on_poison)
    tables, dead, _ = run([encode_test(t) for t in tests])
    assert sorted(tables[0].results.column("test_id").to_pylist()) == sorted(
        t.test_id for t in tests if t.test_id != poison
    )
    assert [(letter.offset, letter.reason) for letter in dead] == [(2, "analysis failed: ValueError: boom")]


def test_a_partial_write_is_possible_only_where_a_write_mark_passes_the_stored_offsets():
    assert not partial_write_possible({}, {})  # nothing ever written
    assert not partial_write_possible({0: 5, 1: 7}, {0: 5, 1: 7})  # every pass stored its offsets
    assert not partial_write_possible({0: 9, 1: 7}, {0: 5, 1: 7})  # offsets moved past the marks
    assert partial_write_possible({0: 5, 1: 3}, {0: 5, 1: 7})  # a pass wrote partition 1 and stopped
    assert partial_write_possible({}, {0: 5})  # the first pass stopped before storing offsets
    assert partial_write_possible({0: 5}, {})  # offsets from a version without marks: assume the worst
    assert partial_write_possible({0: 0}, {0: 5})  # offsets rewound to re-read stored tests


def test_tables_of_several_batches_concatenate_test_by_test():
    tests = [parse_submission(s) for s in simulate_tests(2, 2, seed=3)]
    first, second = (analyse.build_tables(part, [0] * len(part), [0] * len(part)) for part in (tests[:1], tests[1:]))
    both = analyse.TestTables.concat([first, second])
    assert both.results.column("test_id").to_pylist() == [t.test_id for t in tests]
    assert both.keystrokes.num_rows == sum(t.keystroke_count for t in tests)
    assert both.key_stats.num_rows == first.key_stats.num_rows + second.key_stats.num_rows


def test_stored_offsets_below_the_low_watermark_move_up_to_it_and_say_so(caplog):
    stored = {0: 10, 1: 50}
    lows = {0: 25, 1: 40, 2: 7}  # partition 1 is past its low watermark; partition 2 has nothing stored
    with caplog.at_level("WARNING", logger="keyscope.ingest"):
        assert past_low_watermarks(stored, lows, "t") == {0: 25, 1: 50, 2: 7}
    assert "t partition 0: the messages at offsets 10 to 24 are no longer on the broker; starting at 25" in caplog.text
    assert "partition 1" not in caplog.text and "offsets 0 to 6" in caplog.text
