"""Argument types shared by the jobs' and benchmarks' command lines: a bad value fails while the arguments are
parsed, so the error names the flag (`argument --days: must be ≥ 1, got 0`) and the same check holds for
`python -m pipelines.X` and `keyscope X`."""

from __future__ import annotations

import argparse


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc


def positive_int(text: str) -> int:
    """An integer ≥ 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer ≥ 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value
