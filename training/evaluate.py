"""Held-out metrics of a model and of its baselines, on the same samples.

pattern     MAE (ms) of the predicted time to type; baselines: the typist's median for the letter pair (backing off
            to their key median, then the population's pair median), their overall median, and a shrunk blend
error       log-loss and ROC-AUC of the error probability; baselines: the typist's per-key rate shrunk toward
            their overall rate (the analytics' Beta prior), and one population rate for everyone
trajectory  MAE (WPM) at each horizon and overall, and the 80 % interval's coverage; baseline: keybr's polynomial
            extrapolation of the smoothed speed
The baseline a model must beat is, metric by metric, the best of its baselines.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from app.models.history import HORIZONS, QUANTILES
from training.splits import LATER, SPLIT_NAMES, UNSEEN

HELD_OUT = (LATER, UNSEEN)
_EPS = 1e-6


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def roc_auc(p: np.ndarray, y: np.ndarray) -> float:
    """The probability that a random positive scores above a random negative (ties count half)."""
    positives, negatives = int(y.sum()), int((1 - y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(p.shape[0], dtype=np.float64)
    sorted_p = p[order]
    # Average ranks over ties.
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    ends = np.r_[starts[1:], sorted_p.shape[0]]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def pair_medians(pairs: np.ndarray, times: np.ndarray) -> tuple[dict[int, float], float]:
    """The population's median time per letter pair, and overall, from training samples."""
    grouped: dict[int, list[float]] = defaultdict(list)
    for p, t in zip(pairs.tolist(), times.tolist(), strict=True):
        grouped[p].append(t)
    return {p: float(np.median(v)) for p, v in grouped.items()}, float(np.median(times)) if times.size else 190.0


def predict_chars(net: torch.nn.Module, cats: np.ndarray, numeric: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = []
    net.eval()
    with torch.inference_mode():
        for i in range(0, cats.shape[0], chunk):
            out.append(net(torch.from_numpy(cats[i : i + chunk]), torch.from_numpy(numeric[i : i + chunk])).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def pattern_metrics(
    net: torch.nn.Module | None, held: dict[str, np.ndarray], population: tuple[dict[int, float], float]
) -> dict[str, dict[str, float]]:
    """{split name: metrics} for the held-out splits and both together ("held_out")."""
    pop_pairs, pop_all = population
    timed = np.isfinite(held["time_ms"])
    rows = {name: timed & (held["split"] == s) for s, name in SPLIT_NAMES.items() if s in HELD_OUT}
    rows["held_out"] = timed & np.isin(held["split"], HELD_OUT)
    pair = held["b_pair_ms"].astype(np.float64)
    missing = ~np.isfinite(pair)
    pair[missing] = [pop_pairs.get(int(p), pop_all) for p in held["cats"][missing, 3]]
    overall = np.where(np.isfinite(held["b_overall_ms"]), held["b_overall_ms"], pop_all)
    blend = np.where(np.isfinite(held["b_blend_ms"]), held["b_blend_ms"], pair)
    model = np.exp(predict_chars(net, held["cats"], held["numeric"]) + held["base"]) if net is not None else None
    out = {}
    for name, m in rows.items():
        t = held["time_ms"][m]
        metrics = {
            "samples": int(m.sum()),
            "baseline_pair_mae_ms": float(np.abs(pair[m] - t).mean()),
            "baseline_overall_mae_ms": float(np.abs(overall[m] - t).mean()),
            "baseline_blend_mae_ms": float(np.abs(blend[m] - t).mean()),
        }
        metrics["baseline_mae_ms"] = min(
            metrics["baseline_pair_mae_ms"], metrics["baseline_overall_mae_ms"], metrics["baseline_blend_mae_ms"]
        )
        if model is not None:
            metrics["mae_ms"] = float(np.abs(model[m] - t).mean())
        out[name] = metrics
    return out


def error_metrics(
    net: torch.nn.Module | None, held: dict[str, np.ndarray], population_rate: float
) -> dict[str, dict[str, float]]:
    reached = np.isfinite(held["error"])
    rows = {name: reached & (held["split"] == s) for s, name in SPLIT_NAMES.items() if s in HELD_OUT}
    rows["held_out"] = reached & np.isin(held["split"], HELD_OUT)
    model = None
    if net is not None:
        model = 1.0 / (1.0 + np.exp(-predict_chars(net, held["cats"], held["numeric"]).astype(np.float64)))
    out = {}
    for name, m in rows.items():
        y = held["error"][m].astype(np.float64)
        per_key = held["b_key_error"][m].astype(np.float64)
        single = np.full(y.shape, population_rate)
        metrics = {
            "samples": int(m.sum()),
            "error_rate": float(y.mean()) if y.size else float("nan"),
            "baseline_key_log_loss": log_loss(per_key, y),
            "baseline_key_roc_auc": roc_auc(per_key, y),
            "baseline_population_log_loss": log_loss(single, y),
            "baseline_population_roc_auc": roc_auc(single, y),
        }
        metrics["baseline_log_loss"] = min(metrics["baseline_key_log_loss"], metrics["baseline_population_log_loss"])
        metrics["baseline_roc_auc"] = max(metrics["baseline_key_roc_auc"], metrics["baseline_population_roc_auc"])
        if model is not None:
            metrics["log_loss"] = log_loss(model[m], y)
            metrics["roc_auc"] = roc_auc(model[m], y)
        out[name] = metrics
    return out


def trajectory_metrics(net: torch.nn.Module | None, held: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    rows = {name: held["split"] == s for s, name in SPLIT_NAMES.items() if s in HELD_OUT}
    rows["held_out"] = np.isin(held["split"], HELD_OUT)
    quantiles = None
    if net is not None:
        net.eval()
        with torch.inference_mode():
            quantiles = net(torch.from_numpy(held["x"])).numpy().astype(np.float64)
    median, low, high = QUANTILES.index(0.5), 0, len(QUANTILES) - 1
    out = {}
    for name, m in rows.items():
        t = held["target"].astype(np.float64)
        metrics: dict[str, float] = {"samples": int(m.sum())}
        keybr = held["b_keybr"].astype(np.float64)
        metrics["baseline_mae_wpm"] = float(np.abs(keybr[m] - t[m]).mean()) if m.any() else float("nan")
        if quantiles is not None:
            ref = held["ref"].astype(np.float64)
            pred = ref * np.exp(quantiles[:, median])
            lo, hi = ref * np.exp(quantiles[:, low]), ref * np.exp(quantiles[:, high])
            metrics["mae_wpm"] = float(np.abs(pred[m] - t[m]).mean()) if m.any() else float("nan")
            metrics["coverage_80"] = float(((t[m] >= lo[m]) & (t[m] <= hi[m])).mean()) if m.any() else float("nan")
        for k in HORIZONS:
            mk = m & (held["horizon"] == k)
            if not mk.any():
                continue
            metrics[f"baseline_mae_wpm_k{k}"] = float(np.abs(keybr[mk] - t[mk]).mean())
            if quantiles is not None:
                metrics[f"mae_wpm_k{k}"] = float(np.abs(pred[mk] - t[mk]).mean())
                metrics[f"coverage_80_k{k}"] = float(((t[mk] >= lo[mk]) & (t[mk] <= hi[mk])).mean())
        out[name] = metrics
    return out


def registry_metrics(kind: str, candidate: dict[str, Any], promoted: dict[str, Any] | None) -> dict[str, Any]:
    """The registry's record: candidate, baseline and promoted metrics on the held-out set (both held-out splits
    together) under the promotion metrics' names, and every split's figures as `<split>.<metric>`."""
    names = {"pattern": ["mae_ms"], "error": ["log_loss", "roc_auc"], "trajectory": ["mae_wpm"]}[kind]

    def finite(values: dict[str, float]) -> dict[str, float]:
        return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and np.isfinite(v)}

    held = candidate["held_out"]
    model_figures = {n: held[n] for n in names}
    baseline_figures = {n: held[f"baseline_{n}"] for n in names}
    for split, figures in candidate.items():
        for name, value in figures.items():
            target = baseline_figures if name.startswith("baseline_") else model_figures
            target[f"{split}.{name}"] = value
    return {
        "candidate": finite(model_figures),
        "baseline": finite(baseline_figures),
        "promoted": finite({n: promoted["held_out"][n] for n in names}) if promoted is not None else None,
    }
