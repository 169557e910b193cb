"""Model benchmarks.

`keyscope bench pattern-bound`: how far below its baselines any pattern model *could* get on the simulator's
typists. The same typists type the same tests twice — once as usual, once `noiseless` (every interval at its
median: same presses, same slips, same practice curve, fatigue and day's form, no log-normal spread and no pauses).
The noiseless times are an oracle that knows everything a model could learn and more (the day's form); its MAE
against the real times is a floor for every predictor. Printed beside the three baselines on the same held-out
characters (training/evaluate.py), in process, no stack needed.

`keyscope bench train`: samples per second per Ray Train worker for each model on this machine (the stack's
stored tests; each model trained for `--epochs` with `--no-promote`).
"""

from __future__ import annotations

import argparse
import types

import numpy as np

from app.config import Settings
from app.schemas import TypingTest
from app.schemas.submission import parse_submission
from devstack.simulate import simulate_tests
from training.evaluate import pair_medians
from training.samples import char_outcomes, char_samples, stored_from_submissions
from training.splits import HISTORY, LATER, TRAIN, UNSEEN, split_of


def _in_sample_order(tests: list[TypingTest], outcomes: list) -> np.ndarray:
    """The per-character times of `outcomes` in char_samples' order (typist by typist, tests in time order, history
    tests of unseen typists left out)."""
    by_user: dict[int, list[tuple[int, str, int]]] = {}
    for i, test in enumerate(tests):
        by_user.setdefault(test.user_id, []).append((test.started_at_ms, test.test_id, i))
    parts = []
    for user_id, rows in by_user.items():
        ordered = [i for *_, i in sorted(rows)]
        for index, row in enumerate(ordered):
            if split_of(user_id, index, len(ordered)) != HISTORY and len(tests[row].text):
                parts.append(outcomes[row][0])
    return np.concatenate(parts)


def add_bound_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=80, help="simulated typists (default 80)")
    parser.add_argument("--tests", type=int, default=40, help="tests per typist (default 40)")
    parser.add_argument("--seed", type=int, default=3, help="simulator seed (default 3)")


def pattern_bound(users: int, tests: int, seed: int) -> list[tuple[str, float]]:
    """(predictor, held-out MAE in ms) for the oracle and the three baselines."""
    real = simulate_tests(users, tests, seed=seed, traits=True)
    median = simulate_tests(users, tests, seed=seed, traits=True, noiseless=True)
    stored, parsed = stored_from_submissions(real)
    samples = char_samples(stored)
    truth = _in_sample_order(parsed, char_outcomes(parsed))
    oracle = _in_sample_order(*(lambda p: (p, char_outcomes(p)))([parse_submission(s) for s in median]))
    t = samples["time_ms"]
    assert np.array_equal(np.isfinite(truth), np.isfinite(t))  # the same characters, in the same order
    train = (samples["split"] == TRAIN) & np.isfinite(t)
    pops, pop_all = pair_medians(samples["cats"][train, 3].astype(np.int64), t[train])
    held = np.isin(samples["split"], (LATER, UNSEEN)) & np.isfinite(t) & np.isfinite(oracle)
    pair = samples["b_pair_ms"].astype(np.float64)
    missing = ~np.isfinite(pair)
    pair[missing] = [pops.get(int(p), pop_all) for p in samples["cats"][missing, 3]]
    overall = np.where(np.isfinite(samples["b_overall_ms"]), samples["b_overall_ms"], pop_all)
    blend = np.where(np.isfinite(samples["b_blend_ms"]), samples["b_blend_ms"], pair)
    rows = [
        ("baseline: pair → key → population pair median", pair),
        ("baseline: the typist's overall median", overall),
        ("baseline: shrunk blend of the two", blend),
        ("oracle: each interval's noiseless time", oracle),
    ]
    return [(name, float(np.abs(values[held] - t[held]).mean())) for name, values in rows] + [
        ("held-out characters", float(held.sum()))
    ]


def run_bound_command(settings: Settings, args: argparse.Namespace) -> int:
    rows = pattern_bound(args.users, args.tests, args.seed)
    figures = dict(rows)
    best = min(v for k, v in rows if k.startswith("baseline"))
    print(f"pattern model bound: {args.users} typists × {args.tests} tests (seed {args.seed}), held-out characters "
          f"{int(figures['held-out characters']):,}")  # fmt: skip
    print(f"{'predictor':<50}{'MAE ms':>10}{'vs best baseline':>18}")
    for name, value in rows[:-1]:
        print(f"{name:<50}{value:>10.2f}{(value - best) / best:>+18.1%}")
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=2, help="epochs per model (default 2)")
    parser.add_argument("--num-workers", type=int, default=1, help="Ray Train workers (default 1)")
    parser.add_argument("--use-gpu", action="store_true", help="train on the cluster's GPUs")
    parser.add_argument("--models", nargs="+", default=["pattern", "error", "trajectory"], help="which models")


def run_train_command(settings: Settings, args: argparse.Namespace) -> int:
    from training.train import train_model

    print(f"{'model':<12}{'workers':>8}{'device':>8}{'rows/epoch':>12}{'samples/s per worker':>22}")
    for model in args.models:
        run_args = types.SimpleNamespace(
            model=model, num_workers=args.num_workers, use_gpu=args.use_gpu, since=None, storage=None,
            epochs=args.epochs, batch_size=None, lr=2e-3, run_name=f"bench-{model}-{np.random.randint(1 << 30)}",
            no_promote=True,
        )  # fmt: skip
        summary = train_model(settings, run_args)
        params = summary["params"]
        device = "cuda" if params["use_gpu"] else "cpu"
        print(f"{model:<12}{args.num_workers:>8}{device:>8}{summary['training_rows']:>12,}"
              f"{params['samples_per_s']:>22,.0f}", flush=True)  # fmt: skip
    return 0
