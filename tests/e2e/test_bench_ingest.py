"""`keyscope bench ingest` at a small scale on the test stack: it stores every test it produced, times exactly those
(not the warm-up's), and measures the seed's path on the same tests."""

from __future__ import annotations

import re

from app.clickhouse.client import clickhouse_client
from bench.ingest import print_table, run

BENCH_USERS = "SELECT count() FROM test_results FINAL WHERE user_id >= 1000000000000"  # the benchmark's user ids


def stored_bench_tests(settings) -> int:
    client = clickhouse_client(settings.clickhouse_url)
    try:
        return int(client.command(BENCH_USERS))
    finally:
        client.close()


def test_the_timed_pass_stores_exactly_the_produced_tests(stack, stack_settings, capsys):
    before = stored_bench_tests(stack_settings)
    result = run(stack_settings, keystrokes=20_000, seed_tests=20)
    # A worker was up for each read task the pass could run at once (no worker start inside the timing).
    up = re.search(r"Ray task workers up before the timed pass: (\d+) of the (\d+)", capsys.readouterr().out)
    assert up is not None and int(up[1]) == int(up[2]) >= 1

    timed = result.keyscope
    assert timed is not None and timed.keystrokes >= 20_000 and timed.tests > 0
    # Every produced test was stored: the timed pass's and the warm-up's 100 (2 typists' 50), which it does not count.
    assert stored_bench_tests(stack_settings) - before == timed.tests + 100
    assert timed.cpu_s["Ray workers"] > 0 and timed.cpu_s["ClickHouse endpoint"] > 0
    assert result.seed is not None and result.seed.tests == 20 and result.seed.keystrokes > 0

    print_table(result)
    out = capsys.readouterr().out
    assert "keystrokes/s" in out and "keyscope / seed:" in out
    assert "Ray worker processes during the keyscope run:" in out
