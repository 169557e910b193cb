"""Fault injection: the named points where the crash tests stop a job, and the one way to switch a fault on.

A job calls `failpoint(settings, point)` (or `failpoint(None, point)` where no settings reach) at each point where a
crash must lose and duplicate nothing. Nothing happens unless a fault is on there: a test in this process arms the
point (`with armed(point): ...`, by default raising `SimulatedCrash`; any action, e.g. a deletion landing mid-run),
or the job was started with `KEYSCOPE_FAULT_INJECTION=<point>` and is SIGKILLed there, as a real crash would end it
(the ingest job, whose crash tests run it as a separate process). Product code carries no hooks: which faults are
on is this module's business alone.

Points: the ingest job's `after_read` (a batch read and analysed, nothing written), `mid_write` (a batch's raw
keystrokes in, its result rows not; also `write_tables`, so the MySQL migration stops there), `after_features`
(a batch's tests folded into the online features, its result rows not stored), `after_write` (everything written,
the offsets not stored); the migration's `migrate_after_batch`; the archive job's points
(pipelines/archive.py: `archive_after_move`, … `anonymize_after_delete`) and the cold store's `cold_after_stage`
(a file staged and verified, not yet renamed); the warehouse erasure sweep's `erasure_after_parts` (a day's parts
rewritten, its manifest not yet); the insights job's `insights_after_chunk` (a chunk of typists refreshed and its
progress recorded, the rest not).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from app.config import Settings

log = logging.getLogger("keyscope.faults")

Action = Callable[[], None]

# The points armed in this process and what each does when reached (tests only; empty in a running job).
_armed: dict[str, Action] = {}


class SimulatedCrash(RuntimeError):
    """Raised at an armed point: the job stops there, as a crash would stop it."""


def failpoint(settings: Settings | None, point: str) -> None:
    """The fault at `point`, if one is on: the action a test armed in this process, else SIGKILL of this process
    when `settings.fault_injection` names the point (without settings, only an armed action)."""
    action = _armed.get(point)
    if action is not None:
        action()
    elif settings is not None and settings.fault_injection == point:
        log.warning("fault injection: SIGKILL at %s", point)
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def armed(point: str, action: Action | None = None) -> Iterator[None]:
    """Within the block, every `failpoint` at `point` in this process (any thread) runs `action`; by default it
    raises `SimulatedCrash(point)`. The point is disarmed (or its earlier action restored) on leaving."""

    def crash() -> None:
        raise SimulatedCrash(point)

    before = _armed.get(point)
    _armed[point] = action or crash
    try:
        yield
    finally:
        if before is None:
            del _armed[point]
        else:
            _armed[point] = before
