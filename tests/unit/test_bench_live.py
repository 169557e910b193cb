"""`keyscope bench live`'s typists (bench/live.py): each batch carries the keys pressed in its interval, every key
once, and the table reads its numbers from the run."""

from __future__ import annotations

import io

from bench.live import FIRST_USER, WPM_RANGE, SessionResult, answer_cpu_us, print_table, typists


def test_typists_are_distinct_users_in_the_benchmarks_range_at_typing_speeds():
    sessions = typists(50)
    assert [t.user_id for t in sessions] == list(range(FIRST_USER, FIRST_USER + 50))
    assert all(60_000 / (WPM_RANGE[1] * 5) <= t.interval_ms <= 60_000 / (WPM_RANGE[0] * 5) for t in sessions)
    assert len({t.text for t in sessions}) == 50


def test_batches_carry_every_key_once_in_order_with_down_times_inside_their_interval():
    typist = typists(1)[0]
    sent, next_key = [], 0
    for batch in range(100):
        keys, next_key = typist.keys_until(next_key, (batch + 1) * 200)
        assert all(k["down"] < (batch + 1) * 200 for k in keys)
        sent += keys
    assert "".join(k["key"] for k in sent) == typist.text[:next_key]
    assert [k["down"] for k in sent] == sorted(k["down"] for k in sent)


def test_the_table_reports_the_runs_numbers():
    # p95 of 1, 2, 3, 100 interpolates 85 % of the way from 3 to 100: 85.45; p99: 97.09.
    result = SessionResult(latencies_ms=[1.0, 2.0, 3.0, 100.0], lags_ms=[0.5] * 4, answers=4, wrong=0)
    out = io.StringIO()
    print_table(10, 200.0, 2.0, result, out)
    header, row = out.getvalue().splitlines()
    assert header.split()[:5] == ["sessions", "batches/s", "answers", "p50", "ms"]
    assert row.split() == ["10", "2", "4", "2.5", "85.5", "97.1", "100.0", "0.5", "0", "0"]


def test_the_in_process_timing_runs_a_whole_session():
    typist = typists(1)[0]
    batches, cpu_us = answer_cpu_us(typist, 200.0, repeats=1)
    assert batches == len({int(i * typist.interval_ms) // 200 for i in range(len(typist.text))})
    assert 0 < cpu_us < 100_000
