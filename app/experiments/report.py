"""`keyscope experiment report NAME`: per variant, the exposed users and their later outcomes; each variant against
the first (the control) with a 95 % interval; the sample-ratio check. Computed by `build_report` from the outcomes
(app/experiments/outcomes.py) and the statistics (app/experiments/stats.py); `format_report` prints it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from app.experiments.definition import Experiment
from app.experiments.outcomes import AFTER_TESTS, UserOutcome, load_outcomes
from app.experiments.stats import (
    CONFIDENCE,
    Difference,
    SampleRatio,
    Summary,
    sample_ratio_check,
    summarize,
    welch_difference,
)
from app.experiments.store import exposure_counts, load_experiment

# (attribute of UserOutcome, label, unit, which direction is better, the experiment's `metric` naming it)
OUTCOMES = (
    ("wpm_change", "WPM change", "WPM", +1, "wpm"),
    ("weak_key_change_ms", "weak-key time change", "ms", -1, "weak_key_ms"),
)


@dataclass(frozen=True)
class VariantRow:
    name: str
    value: str
    share: float  # configured
    exposed: int
    measured: int
    outcomes: dict[str, Summary]  # by UserOutcome attribute


@dataclass(frozen=True)
class Report:
    experiment: Experiment
    after_tests: int
    variants: tuple[VariantRow, ...]
    differences: dict[str, dict[str, Difference]]  # variant (not the control) -> outcome -> vs the control
    sample_ratio: SampleRatio

    def as_dict(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 4)

        return {
            "experiment": self.experiment.name,
            "factor": self.experiment.factor,
            "after_tests": self.after_tests,
            "variants": [
                {
                    "name": row.name, "value": row.value, "share": row.share, "exposed": row.exposed,
                    "measured": row.measured,
                    "outcomes": {
                        k: {"n": s.n, "mean": clean(s.mean), "sd": clean(s.sd)} for k, s in row.outcomes.items()
                    },
                }
                for row in self.variants
            ],
            "differences": {
                variant: {
                    k: {"estimate": clean(d.estimate), "low": clean(d.low), "high": clean(d.high),
                        "p_value": clean(d.p_value), "confidence": d.confidence}
                    for k, d in by_outcome.items()
                }
                for variant, by_outcome in self.differences.items()
            },
            "sample_ratio": {
                "observed": list(self.sample_ratio.observed),
                "expected": [round(e, 2) for e in self.sample_ratio.expected],
                "chi2": round(self.sample_ratio.chi2, 4), "p_value": self.sample_ratio.p_value,
                "flagged": self.sample_ratio.flagged,
            },
        }


def build_report(
    experiment: Experiment, exposed: Mapping[str, int], outcomes: Sequence[UserOutcome], after_tests: int = AFTER_TESTS
) -> Report:
    """The report from the exposure counts per variant and every exposed user's outcomes."""
    measured = [o for o in outcomes if o.measured(after_tests)]
    rows = []
    for variant, share in zip(experiment.variants, experiment.shares, strict=True):
        mine = [o for o in measured if o.variant == variant.name]
        rows.append(
            VariantRow(
                name=variant.name,
                value=variant.value,
                share=share,
                exposed=int(exposed.get(variant.name, 0)),
                measured=len(mine),
                outcomes={attr: summarize([getattr(o, attr) for o in mine]) for attr, *_ in OUTCOMES},
            )
        )
    control = rows[0]
    differences = {
        row.name: {attr: welch_difference(control.outcomes[attr], row.outcomes[attr]) for attr, *_ in OUTCOMES}
        for row in rows[1:]
    }
    ratio = sample_ratio_check([row.exposed for row in rows], experiment.shares)
    return Report(experiment, after_tests, tuple(rows), differences, ratio)


def experiment_report(client: Client, name: str, after_tests: int = AFTER_TESTS) -> Report:
    """The report of the experiment called `name` from ClickHouse (ExperimentError if there is none)."""
    experiment = load_experiment(client, name)
    outcomes = load_outcomes(client, name, after_tests)
    return build_report(experiment, exposure_counts(client, name), outcomes, after_tests)


def _num(x: float, digits: int = 1, sign: bool = True) -> str:
    if math.isnan(x):
        return "–"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _p(p_value: float) -> str:
    if math.isnan(p_value):
        return "= –"
    return "< 0.001" if p_value < 0.001 else f"= {p_value:.3f}"


def format_report(report: Report) -> str:
    """The report as the table `keyscope experiment report` prints."""
    e = report.experiment
    lines = [
        f"experiment {e.name}: {e.factor} = " + " | ".join(f"{v.name}:{v.value}" for v in e.variants)
        + f"; outcomes after {report.after_tests} tests, relative to each user's tests before exposure",
        "",
        f"{'variant':<14} {'value':<8} {'weight':>7} {'exposed':>8} {'measured':>9} "
        f"{'WPM change (sd)':>17} {'weak-key ms (sd)':>18}",
    ]
    for row in report.variants:
        wpm, weak = row.outcomes["wpm_change"], row.outcomes["weak_key_change_ms"]
        lines.append(
            f"{row.name:<14} {row.value:<8} {row.share:>7.1%} {row.exposed:>8} {row.measured:>9} "
            f"{_num(wpm.mean, 2) + ' (' + _num(wpm.sd, 2, False) + ')':>17} "
            f"{_num(weak.mean, 1) + ' (' + _num(weak.sd, 1, False) + ')':>18}"
        )
    control = report.variants[0].name
    lines += ["", f"difference from {control} (Welch's t, {CONFIDENCE:.0%} interval):"]
    for variant, by_outcome in report.differences.items():
        for attr, label, unit, better, metric in OUTCOMES:
            d = by_outcome[attr]
            if math.isnan(d.low):
                verdict = "too few measured users"
            elif not d.excludes_zero:
                verdict = "no difference shown"
            else:
                verdict = "better" if d.estimate * better > 0 else "worse"
            primary = "  ← the experiment's metric" if metric == report.experiment.metric else ""
            lines.append(
                f"  {variant} − {control}: {label} {_num(d.estimate, 2)} {unit} "
                f"[{_num(d.low, 2)}, {_num(d.high, 2)}], p {_p(d.p_value)}: {verdict}{primary}"
            )
    ratio = report.sample_ratio
    observed = ", ".join(
        f"{row.name} {n} (expected {x:.1f})" for row, n, x in zip(report.variants, ratio.observed, ratio.expected)
    )
    lines += [
        "",
        f"sample ratio: {observed}; chi² = {ratio.chi2:.2f}, p = {ratio.p_value:.3g}: "
        + ("MISMATCH (p < 0.001): assignment or exposure recording is broken; do not trust the differences"
           if ratio.flagged else "ok"),
    ]
    pending = sum(row.exposed for row in report.variants) - sum(row.measured for row in report.variants)
    if pending > 0:
        lines.append(
            f"{pending} exposed users are not measured yet (fewer than {report.after_tests} tests since exposure, "
            "or none before)"
        )
    return "\n".join(lines)
