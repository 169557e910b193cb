"""`keyscope models list | show | promote | rollback`: the model registry (app/models/registry.py) — trained
versions, their held-out metrics, and which version serves."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from app.config import Settings
from app.models.registry import MODELS, PROMOTION_METRICS, ModelRegistry, ModelVersion
from app.text_table import print_table

MODEL_HELP = f"the model: {', '.join(MODELS)}"


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _headline(entry: ModelVersion) -> str:
    """The candidate's promotion metrics on its held-out set, e.g. "log_loss 0.41 roc_auc 0.83"."""
    candidate = entry.metrics.get("candidate") or {}
    return "  ".join(f"{name} {_number(candidate.get(name))}" for name, _ in PROMOTION_METRICS[entry.model])


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODELS, help="only this model's versions (default: every model's)")


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    with ModelRegistry(settings) as registry:
        entries = [entry for model in ([args.model] if args.model else MODELS) for entry in registry.versions(model)]
    if not entries:
        print("no model versions registered" + (f" for {args.model}" if args.model else ""))
        return 0
    rows = [("model", "version", "created", "serving", "held-out metrics", "code")]
    rows += [
        (e.model, e.version, _time(e.created_at), "*" if e.promoted else "", _headline(e), e.code_version)
        for e in entries
    ]
    print(f"{len(entries)} model versions, newest first per model (* = promoted, the one serving):")
    print_table(rows, numeric_from=len(rows[0]))
    return 0


def add_show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=MODELS, metavar="MODEL", help=MODEL_HELP)
    parser.add_argument("version", nargs="?", metavar="VERSION", help="the version id (default: the promoted one)")


def _print_metrics(entry: ModelVersion) -> None:
    deciding = {name: direction for name, direction in PROMOTION_METRICS[entry.model]}
    sets = {which: entry.metrics.get(which) or {} for which in ("candidate", "baseline", "promoted")}
    names = list(deciding) + sorted({n for values in sets.values() for n in values} - set(deciding))
    print("held-out metrics (promoted = the version serving when this one was trained; * decides promotion):")
    rows = [("metric", "better", "candidate", "baseline", "promoted")]
    for name in names:
        better = {"min": "lower", "max": "higher"}.get(deciding.get(name, ""), "")
        label = name + ("*" if name in deciding else "")
        rows.append((label, better, *(_number(sets[which].get(name)) for which in sets)))
    print_table(rows, numeric_from=2)


def run_show(settings: Settings, args: argparse.Namespace) -> int:
    with ModelRegistry(settings) as registry:
        if args.version:
            entry = registry.get(args.model, args.version)
        elif (serving := registry.promoted(args.model)) is not None:
            entry = serving
        else:
            raise ValueError(f"no version of {args.model} is promoted: name one (`keyscope models list`)")
        path = registry.artifact_path(entry)
        log = [row for row in registry.promotions(args.model) if row.version == entry.version]
    print(f"{entry.model} {entry.version}" + (" (promoted, serving)" if entry.promoted else ""))
    print_table(
        [
            ("created", _time(entry.created_at)),
            ("trained by", entry.trained_by),
            ("code", entry.code_version),
            ("artifact", str(path)),
        ],
        numeric_from=2,
    )
    print()
    _print_metrics(entry)
    print("\ndata window:")
    print_table([(key, str(value)) for key, value in entry.data_window.items()] or [("(none)", "")], numeric_from=2)
    print("\nparams:")
    print_table([(key, str(value)) for key, value in entry.params.items()] or [("(none)", "")], numeric_from=2)
    print("\npromotions of this version:")
    if log:
        print_table([(_time(row.promoted_at), row.action, row.reason) for row in log], numeric_from=3)
    else:
        print("  (never promoted)")
    return 0


def add_promote_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=MODELS, metavar="MODEL", help=MODEL_HELP)
    parser.add_argument("version", metavar="VERSION", help="the version id to serve (see `keyscope models list`)")
    parser.add_argument(
        "--reason",
        default="promoted by hand (keyscope models promote)",
        help="why, for the promotion log (default: promoted by hand)",
    )


def run_promote(settings: Settings, args: argparse.Namespace) -> int:
    with ModelRegistry(settings) as registry:
        entry = registry.promote(args.model, args.version, args.reason)
    print(f"promoted {entry.model} {entry.version}: {args.reason}")
    return 0


def add_rollback_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=MODELS, metavar="MODEL", help=MODEL_HELP)
    parser.add_argument(
        "--reason",
        default="rolled back by hand (keyscope models rollback)",
        help="why, for the promotion log (default: rolled back by hand)",
    )


def run_rollback(settings: Settings, args: argparse.Namespace) -> int:
    with ModelRegistry(settings) as registry:
        entry = registry.rollback(args.model, args.reason)
    print(f"rolled {entry.model} back to {entry.version}: {args.reason}")
    return 0
