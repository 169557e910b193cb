"""`keyscope bench ingest`'s CPU accounting from /proc samples (pure logic)."""

from __future__ import annotations

import pytest

from bench.ingest import cpu_by_group, worker_turnover

RAYLET, DRIVER, OLD_WORKER, NEW_WORKER = 1, 2, 10, 11


def test_a_worker_that_exits_during_the_run_counts_only_what_it_spent_during_it():
    before = {
        (RAYLET, False): ("Ray daemons", 2.0),
        (RAYLET, True): ("Ray workers", 0.0),
        (DRIVER, False): ("driver", 1.0),
        (DRIVER, True): ("driver", 0.0),
        (OLD_WORKER, False): ("Ray workers", 5.0),  # a warm-up worker: imports and the warm-up pass
        (OLD_WORKER, True): ("Ray workers", 0.0),
    }
    after = {
        (RAYLET, False): ("Ray daemons", 2.2),
        (RAYLET, True): ("Ray workers", 5.5),  # the exited worker's whole lifetime, reaped by the raylet
        (DRIVER, False): ("driver", 1.5),
        (DRIVER, True): ("driver", 0.0),
        (NEW_WORKER, False): ("Ray workers", 3.0),  # born during the run: all of it counts
        (NEW_WORKER, True): ("Ray workers", 0.0),
    }
    spent = cpu_by_group(before, after)
    assert spent["Ray workers"] == pytest.approx(0.5 + 3.0)
    assert spent["Ray daemons"] == pytest.approx(0.2)
    assert spent["driver"] == pytest.approx(0.5)
    assert worker_turnover(before, after) == (1, 1)


def test_processes_alive_throughout_count_their_difference():
    before = {(OLD_WORKER, False): ("Ray workers", 5.0), (DRIVER, False): ("driver", 1.0)}
    after = {(OLD_WORKER, False): ("Ray workers", 7.5), (DRIVER, False): ("driver", 1.25)}
    assert cpu_by_group(before, after) == {"Ray workers": 2.5, "driver": 0.25}
    assert worker_turnover(before, after) == (0, 0)


def test_the_raylet_is_a_daemon_though_its_arguments_name_the_worker_script():
    from bench.ingest import _is_task_worker

    raylet = "/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet --raylet_socket_name=/tmp/s "
    assert not _is_task_worker(raylet + "--python_worker_command=/venv/bin/python .../default_worker.py --x")
    assert _is_task_worker("/venv/bin/python -u /venv/lib/ray/_private/workers/default_worker.py --node-ip-address=x")
    assert _is_task_worker("ray::IDLE")
    assert _is_task_worker("ray::InsightsRefresher")
    assert not _is_task_worker("ray::DashboardAgent") and not _is_task_worker("ray::ServeReplica:insights")
