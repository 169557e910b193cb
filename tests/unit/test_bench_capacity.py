"""The capacity benchmark's own logic: returning typists, CPU shares, the knee."""

from __future__ import annotations

from datetime import UTC, datetime

from bench.capacity import CapacityResult, busy_cores, cpu_shares, group_of, knee, returning_typists, settle, stamp


def test_returning_typists_cycle_through_the_pool_each_in_their_own_order():
    tests = returning_typists(7, 3, first_user_id=500, seed=1)
    assert [t["user_id"] for t in tests] == [500, 501, 502, 500, 501, 502, 500]
    assert [t["test_id"] for t in tests if t["user_id"] == 500] == ["sim-1-500-0", "sim-1-500-1", "sim-1-500-2"]
    assert len({t["test_id"] for t in tests}) == 7


def test_a_pool_larger_than_the_tests_gives_one_test_per_typist():
    tests = returning_typists(3, 100, first_user_id=10, seed=2)
    assert [t["user_id"] for t in tests] == [10, 11, 12]


def test_stamp_is_the_submission_time_format():
    assert stamp(datetime(2026, 12, 6, 9, 30, 1, 234_567, tzinfo=UTC)) == "2026-12-06T09:30:01.234Z"


def test_cpu_shares_group_processes_and_count_new_ones_from_zero():
    pids = {1: "clickhouse: devstack.clickhouse_http", 2: "ray: ray::ServeReplica:keyscope:ingress",
            3: "ray: ray::ServeReplica:keyscope:ingress", 4: "ray: ray::IDLE", 5: "load generator (this process)"}
    before = {1: 10.0, 2: 5.0, 3: 1.0, 5: 0.0}
    after = {1: 15.0, 2: 6.0, 3: 2.0, 4: 0.5, 5: 3.0}  # 4 started during the window
    shares = cpu_shares(pids, before, after, wall_s=10.0)
    assert shares == {"clickhouse": 0.5, "ray::ServeReplica:keyscope:ingress": 0.2, "ray::IDLE": 0.05,
                      "load generator (this process)": 0.3}
    assert group_of("kafka: noida-db") == "kafka"


def _result(rate: float, visible_p95_s: float, lost: int = 0) -> CapacityResult:
    result = CapacityResult(offered=rate, accepted=100, stored=100 - lost)
    result.visible_s = [visible_p95_s] * 20
    return result


def test_the_knee_is_the_last_rate_that_held_before_the_first_that_did_not():
    runs = [_result(100, 0.8), _result(150, 1.9), _result(225, 2.5), _result(337, 1.0)]
    assert knee(runs).offered == 150
    assert knee([_result(100, 3.0)]) is None
    assert knee([_result(100, 0.5), _result(150, 0.5, lost=1)]).offered == 100  # a lost test does not hold


def test_memory_is_sampled_for_every_stack_process_until_the_load_ends(monkeypatch):
    import asyncio
    import os

    import bench.capacity as capacity
    import bench.load as load  # where the sampler (shared with `bench soak`) lives

    monkeypatch.setattr(load, "stack_processes", lambda settings, extra: {os.getpid(): "this test", **extra})
    monkeypatch.setattr(load, "SAMPLE_EVERY_S", 0.01)
    series: dict = {}

    async def load_then_stop() -> None:
        done = asyncio.Event()
        sampler = asyncio.create_task(capacity.sample_memory(None, {"gone": 2**22 + 1}, series, done))
        await asyncio.sleep(0.1)
        done.set()
        await sampler

    asyncio.run(load_then_stop())
    assert list(series) == [os.getpid()]  # a pid that is not running is left out
    mine = series[os.getpid()]
    assert mine.name == "this test" and len(mine.samples) >= 3
    assert all(rss >= private > 0 for rss, private in zip(mine.samples, mine.private))


def test_settle_waits_for_a_quiet_machine_and_gives_up_after_its_timeout():
    said: list[str] = []
    readings = iter([1.8, 1.1, 0.4])
    assert settle(60, said.append, measure=lambda window_s: next(readings))
    assert said[-1].startswith("settled: 0.40 cores busy")
    assert not settle(0, said.append, measure=lambda window_s: 1.5)
    assert said[-1].startswith("not settled: 1.50 cores still busy")


def test_busy_cores_reads_the_machine():
    assert 0.0 <= busy_cores(0.2) <= 64
