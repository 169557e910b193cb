"""Fault injection (app/faults.py): a point does nothing unless armed in this process or named by the settings."""

from __future__ import annotations

import threading

import pytest

from app import faults
from app.config import Settings


def test_an_unarmed_point_does_nothing():
    faults.failpoint(None, "after_write")
    faults.failpoint(Settings(), "after_write")  # no KEYSCOPE_FAULT_INJECTION: no SIGKILL either


def test_an_armed_point_raises_a_simulated_crash_until_the_block_ends():
    with faults.armed("after_write"):
        with pytest.raises(faults.SimulatedCrash, match="after_write"):
            faults.failpoint(None, "after_write")
        faults.failpoint(None, "mid_write")  # another point: nothing
    faults.failpoint(None, "after_write")


def test_an_armed_action_runs_in_any_thread_and_an_outer_arming_is_restored():
    hits: list[str] = []
    with faults.armed("mid_write", lambda: hits.append("outer")):
        with faults.armed("mid_write", lambda: hits.append("inner")):
            worker = threading.Thread(target=faults.failpoint, args=(None, "mid_write"))
            worker.start()
            worker.join()
        faults.failpoint(None, "mid_write")
    assert hits == ["inner", "outer"]


def test_an_armed_action_takes_the_place_of_the_settings_sigkill():
    settings = Settings().with_overrides(fault_injection="after_read")
    with faults.armed("after_read", lambda: None):
        faults.failpoint(settings, "after_read")  # the armed action runs; this process lives on
