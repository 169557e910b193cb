"""An experiment's definition: what it varies, its variants and their weights, when it runs, what it measures.

A definition is fixed once created (app/experiments/store.py): changing the weights half-way would mix two
populations and break the sample-ratio check. One experiment per factor runs at a time, so a serving point asks
"which value of this factor does this user get" and gets one answer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

# What an experiment can vary, and the values each factor takes. `practice_generator` is read by
# app/practice/serving.py, `hint_style` by the live sessions (serve/live.py; its values: app/live/hints.py).
FACTORS: dict[str, tuple[str, ...]] = {
    "practice_generator": ("lm", "rules"),
    "hint_style": ("all", "slow_spots", "none"),
}
# The outcome an experiment is about (the report marks it); both are always computed (app/experiments/outcomes.py).
METRICS = ("wpm", "weak_key_ms")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VARIANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


class ExperimentError(ValueError):
    """A definition that cannot run (bad name, weights, factor, values or times), or an unknown experiment."""


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float
    value: str


def parse_variant(spec: str) -> Variant:
    """A variant from `NAME[:VALUE]=WEIGHT` (the value defaults to the name): `lm=50`, `control:lm=1`."""
    head, sep, weight_text = spec.rpartition("=")
    if not sep or not head:
        raise ExperimentError(f"a variant is NAME[:VALUE]=WEIGHT, e.g. lm=50 or control:lm=1; got {spec!r}")
    name, _, value = head.partition(":")
    try:
        weight = float(weight_text)
    except ValueError:
        raise ExperimentError(f"variant {name!r}: the weight must be a number, got {weight_text!r}") from None
    return Variant(name=name, weight=weight, value=value or name)


@dataclass(frozen=True)
class Experiment:
    """One experiment (see the module docstring). `starts_at` / `ends_at` are UTC; no end: runs until stopped."""

    name: str
    factor: str
    variants: tuple[Variant, ...]
    starts_at: datetime
    ends_at: datetime | None = None
    metric: str = "wpm"
    description: str = ""
    created_at: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ExperimentError(
                f"experiment name {self.name!r}: lower-case letters, digits, '-' and '_', at most 64, "
                "starting with a letter or digit"
            )
        if self.factor not in FACTORS:
            raise ExperimentError(f"unknown factor {self.factor!r}; one of {', '.join(sorted(FACTORS))}")
        if self.metric not in METRICS:
            raise ExperimentError(f"unknown metric {self.metric!r}; one of {', '.join(METRICS)}")
        check_variants(self.factor, self.variants)
        for moment in (self.starts_at, self.ends_at):
            if moment is not None and moment.tzinfo is None:
                raise ExperimentError("experiment times must carry a time zone")
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ExperimentError("the end must come after the start")

    @property
    def shares(self) -> tuple[float, ...]:
        """Each variant's expected share of the exposed users (weights normalized)."""
        total = sum(v.weight for v in self.variants)
        return tuple(v.weight / total for v in self.variants)

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise ExperimentError(f"experiment {self.name} has no variant {name!r}")

    def running(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return self.starts_at <= now and (self.ends_at is None or now < self.ends_at)

    def overlaps(self, other: Experiment) -> bool:
        """Both run at some moment (open ends run forever)."""
        ends_first = self.ends_at is not None and self.ends_at <= other.starts_at
        starts_after = other.ends_at is not None and other.ends_at <= self.starts_at
        return not (ends_first or starts_after)


def check_variants(factor: str, variants: tuple[Variant, ...]) -> None:
    """ExperimentError unless there are at least two variants with distinct names, finite positive weights and
    values the factor takes."""
    if len(variants) < 2:
        raise ExperimentError("an experiment needs at least two variants (an A/A test names the same value twice)")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ExperimentError(f"variant names must differ: {names}")
    allowed = FACTORS[factor]
    for variant in variants:
        if not VARIANT_PATTERN.match(variant.name):
            raise ExperimentError(f"variant name {variant.name!r}: letters, digits, '.', '-', '_', at most 32")
        if not math.isfinite(variant.weight) or variant.weight <= 0:
            raise ExperimentError(
                f"variant {variant.name!r}: the weight must be a positive number, got {variant.weight}"
            )
        if variant.value not in allowed:
            raise ExperimentError(
                f"variant {variant.name!r}: {factor} takes {', '.join(allowed)}, got {variant.value!r}"
            )
