"""The model registry on the local stack's ClickHouse: versions registered with their artifact folders copied,
promoted by the rule, rolled back to the version before; bad names and bad records refused with nothing written;
and `keyscope models …` run as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app.clickhouse.client import clickhouse_client
from app.models.registry import ModelRegistry, ModelRegistryError, models_root

pytestmark = pytest.mark.stack
REPO = Path(__file__).resolve().parents[2]
WINDOW = {"since": "2026-11-01T00:00:00+00:00", "until": "2026-12-01T00:00:00+00:00", "users": 120, "tests": 4800}


@pytest.fixture
def clickhouse(stack, stack_settings):
    client = clickhouse_client(stack_settings.clickhouse_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def registry(stack_settings, clickhouse):
    """A registry on the stack, empty: this file's tests are the only writers of its tables and folders."""
    with ModelRegistry(stack_settings) as opened:
        for table in ("model_versions", "model_promotions"):
            clickhouse.command(f"TRUNCATE TABLE {table}")
        shutil.rmtree(models_root(stack_settings), ignore_errors=True)
        yield opened


def artifact(folder: Path, scale: float) -> Path:
    """A training run's output: a state dict in model.pt, its description in meta.json, and a nested file."""
    folder.mkdir(parents=True)
    torch.save({"weight": torch.full((2, 3), scale)}, folder / "model.pt")
    (folder / "meta.json").write_text(json.dumps({"inputs": ["iki_ms"], "scale": scale}))
    (folder / "vocab").mkdir()
    (folder / "vocab" / "keys.txt").write_text("a\nb\n")
    return folder


def counts(client) -> tuple[int, int]:
    return tuple(  # type: ignore[return-value]
        int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])
        for table in ("model_versions", "model_promotions")
    )


def test_register_promote_by_the_rule_then_roll_back(registry, stack_settings, tmp_path):
    first_metrics = {"candidate": {"mae_ms": 41.5, "p90_ms": 90.0}, "baseline": {"mae_ms": 55.0}, "promoted": None}
    first = registry.register(
        "pattern", artifact(tmp_path / "run1", 1.0), first_metrics, WINDOW, "c17232f", {"epochs": 3, "lr": 0.001}
    )
    assert first.artifact == f"pattern/{first.version}" and not first.promoted

    # The folder is copied whole, under the root, with nothing left over from the copy.
    copied = registry.artifact_path(first)
    assert copied == models_root(stack_settings) / "pattern" / first.version
    assert sorted(p.relative_to(copied).as_posix() for p in copied.rglob("*")) == [
        "meta.json",
        "model.pt",
        "vocab",
        "vocab/keys.txt",
    ]
    assert torch.load(copied / "model.pt")["weight"].sum().item() == 6.0
    assert [p.name for p in copied.parent.iterdir()] == [first.version]

    # It reads back as registered.
    assert registry.versions("pattern") == [first]
    assert registry.get("pattern", first.version) == first
    assert registry.versions("error") == [] and registry.promoted("pattern") is None

    promote, reason = registry.decide("pattern", first_metrics)
    assert promote and "mae_ms 41.5 vs baseline 55" in reason
    assert registry.promote("pattern", first.version, reason).promoted
    assert registry.promoted("pattern") == registry.get("pattern", first.version)
    assert registry.promoted("pattern").promoted

    # A second run must now also beat the promoted version, on the same held-out set.
    better = {"candidate": {"mae_ms": 38.0}, "baseline": {"mae_ms": 55.0}}
    with pytest.raises(ModelRegistryError, match=f"version {first.version} is promoted: the metrics need its"):
        registry.decide("pattern", better)
    better["promoted"] = {"mae_ms": 41.5}
    second = registry.register("pattern", artifact(tmp_path / "run2", 2.0), better, WINDOW, "d00d00d", {})
    promote, reason = registry.decide("pattern", better)
    assert promote and "mae_ms 38 vs promoted 41.5 (-3.5, -8.4%" in reason
    registry.promote("pattern", second.version, reason)
    assert registry.promoted("pattern").version == second.version
    assert [(v.version, v.promoted) for v in registry.versions("pattern")] == [
        (second.version, True),
        (first.version, False),
    ]
    assert torch.load(registry.artifact_path(registry.promoted("pattern")) / "model.pt")["weight"][0, 0] == 2.0

    # A worse third run is registered (it is a record of the run) but the rule keeps it out.
    worse = {"candidate": {"mae_ms": 39.0}, "baseline": {"mae_ms": 55.0}, "promoted": {"mae_ms": 38.0}}
    third = registry.register("pattern", artifact(tmp_path / "run3", 3.0), worse, WINDOW, "e00e00e", {})
    promote, reason = registry.decide("pattern", worse)
    assert not promote and reason == "not promoted: does not beat mae_ms 39 vs promoted 38 (+1, +2.6%; lower is better)"
    assert [v.version for v in registry.versions("pattern")] == [third.version, second.version, first.version]

    with pytest.raises(ModelRegistryError, match="is already the promoted version"):
        registry.promote("pattern", second.version, "again")

    # Roll back: the first is served again, and there is nothing before it.
    rolled = registry.rollback("pattern", "p99 latency regression in serving")
    assert rolled.version == first.version and rolled.promoted
    assert registry.promoted("pattern").version == first.version
    assert [v.promoted for v in registry.versions("pattern")] == [False, False, True]
    with pytest.raises(ModelRegistryError, match=f"no version of 'pattern' was promoted before {first.version}"):
        registry.rollback("pattern", "again")
    log = registry.promotions("pattern")
    assert [(row.version, row.action) for row in log] == [
        (first.version, "promote"),
        (second.version, "promote"),
        (first.version, "rollback"),
    ]
    assert log[-1].reason == "p99 latency regression in serving"
    assert log[0].promoted_at < log[1].promoted_at < log[2].promoted_at

    # Promoting the second again by hand, then rolling back, returns to the first.
    registry.promote("pattern", second.version, "by hand")
    assert registry.rollback("pattern", "undo").version == first.version

    # The records are per model.
    assert registry.promoted("error") is None and registry.versions("trajectory") == []


def test_bad_names_and_records_are_refused_with_nothing_written(registry, stack_settings, clickhouse, tmp_path):
    good = artifact(tmp_path / "run", 1.0)
    metrics = {"candidate": {"mae_wpm": 3.1}, "baseline": {"mae_wpm": 4.0}, "promoted": None}
    bad_calls = [
        (lambda: registry.register("speed", good, metrics, WINDOW, "c", {}), "unknown model 'speed'"),
        (lambda: registry.register("trajectory", tmp_path / "nope", metrics, WINDOW, "c", {}), "does not exist"),
        (lambda: registry.register("trajectory", tmp_path, metrics, WINDOW, "c", {}), "lacks model.pt, meta.json"),
        (
            lambda: registry.register("trajectory", good, {"candidate": {"mae": 1}, "baseline": {}}, WINDOW, "c", {}),
            "'candidate' lacks mae_wpm",
        ),
        (lambda: registry.register("trajectory", good, metrics, {"since": "x"}, "c", {}), "lacks until, users, tests"),
        (lambda: registry.register("trajectory", good, metrics, WINDOW, "c", {"f": object()}), "cannot be stored"),
        (lambda: registry.versions("Trajectory"), "unknown model 'Trajectory'"),
        (lambda: registry.get("trajectory", "../pattern"), "'../pattern' is not a model version id"),
        (
            lambda: registry.get("trajectory", "20261206T101500Z-3f2a"),
            "no version 20261206T101500Z-3f2a of model 'trajectory' in the registry",
        ),
        (lambda: registry.promote("trajectory", "20261206T101500Z-3f2a", "x"), "no version 20261206T101500Z-3f2a"),
        (lambda: registry.rollback("trajectory", "x"), "no version of 'trajectory' was ever promoted"),
    ]
    for call, message in bad_calls:
        with pytest.raises(ValueError, match=message):
            call()
    assert counts(clickhouse) == (0, 0)
    assert not models_root(stack_settings).exists() or not any(models_root(stack_settings).rglob("*.pt"))

    # A registered version of one model is no version of another.
    entry = registry.register("trajectory", good, metrics, WINDOW, "c", {})
    with pytest.raises(ModelRegistryError, match=f"no version {entry.version} of model 'error'"):
        registry.promote("error", entry.version, "x")
    assert counts(clickhouse) == (1, 0)


def test_a_failed_insert_leaves_no_artifact_folder(registry, stack_settings, clickhouse, tmp_path):
    # A database without the registry's tables (migrations not applied): the insert fails after the copy.
    clickhouse.command("CREATE DATABASE IF NOT EXISTS registry_unmigrated")
    try:
        url = stack_settings.clickhouse_url.rsplit("/", 1)[0] + "/registry_unmigrated"
        unmigrated = stack_settings.with_overrides(clickhouse_url=url)
        with ModelRegistry(unmigrated, migrate=False) as broken:
            metrics = {"candidate": {"mae_ms": 1.0}, "baseline": {"mae_ms": 2.0}}
            with pytest.raises(Exception, match="model_versions"):
                broken.register("pattern", artifact(tmp_path / "run", 1.0), metrics, WINDOW, "c", {})
        assert list((models_root(stack_settings) / "pattern").iterdir()) == []
    finally:
        clickhouse.command("DROP DATABASE IF EXISTS registry_unmigrated")


def keyscope(stack_settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack_settings.as_env(), "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "models", *args], env=env, cwd=REPO, capture_output=True, text=True
    )


def test_the_models_commands(registry, tmp_path, stack_settings):
    assert keyscope(stack_settings, "list").stdout == "no model versions registered\n"
    metrics = {
        "candidate": {"log_loss": 0.41, "roc_auc": 0.83, "brier": 0.12},
        "baseline": {"log_loss": 0.5, "roc_auc": 0.7},
        "promoted": None,
    }
    first = registry.register("error", artifact(tmp_path / "a", 1.0), metrics, WINDOW, "abc1234", {"hidden": 64})
    second = registry.register("error", artifact(tmp_path / "b", 1.0), metrics, WINDOW, "def5678", {"hidden": 128})
    trajectory = {"candidate": {"mae_wpm": 2.5}, "baseline": {"mae_wpm": 3.0}}
    registry.register("trajectory", artifact(tmp_path / "c", 1.0), trajectory, WINDOW, "abc1234", {})

    promoted = keyscope(stack_settings, "promote", "error", first.version, "--reason", "first model")
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout == f"promoted error {first.version}: first model\n"
    assert keyscope(stack_settings, "promote", "error", second.version).returncode == 0
    assert registry.promoted("error").version == second.version
    assert registry.promotions("error")[-1].reason == "promoted by hand (keyscope models promote)"

    listed = keyscope(stack_settings, "list", "--model", "error")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "2 model versions, newest first per model (* = promoted, the one serving):"
    assert lines[1].split() == ["model", "version", "created", "serving", "held-out", "metrics", "code"]
    assert lines[2].split()[:2] == ["error", second.version] and lines[2].split()[5] == "*"
    assert lines[3].split()[:2] == ["error", first.version] and "*" not in lines[3].split()
    assert "log_loss 0.41  roc_auc 0.83" in lines[2] and lines[2].endswith("def5678")
    # Aligned: every column starts where its header does.
    assert lines[1].index("version") == lines[2].index(second.version) == lines[3].index(first.version)
    assert lines[1].index("code") == lines[2].index("def5678") == lines[3].index("abc1234")
    everything = keyscope(stack_settings, "list").stdout
    assert everything.startswith("3 model versions") and "mae_wpm 2.5" in everything

    shown = keyscope(stack_settings, "show", "error")  # the promoted one
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert out.startswith(f"error {second.version} (promoted, serving)\n")
    assert f"artifact    {registry.artifact_path(second)}" in out and "code        def5678" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert rows["log_loss*"].split() == ["log_loss*", "lower", "0.41", "0.5", "-"]
    assert rows["roc_auc*"].split() == ["roc_auc*", "higher", "0.83", "0.7", "-"]
    assert rows["brier"].split() == ["brier", "0.12", "-", "-"]  # extra metrics are shown, not starred
    # Numbers right-aligned under their headers.
    assert rows["metric"].index("baseline") + len("baseline") == rows["log_loss*"].index("0.5") + len("0.5")
    assert "  users  120" in out and "  hidden  128" in out
    assert "promote  promoted by hand (keyscope models promote)" in out

    older = keyscope(stack_settings, "show", "error", first.version).stdout
    assert older.startswith(f"error {first.version}\n") and "promote  first model" in older

    rolled = keyscope(stack_settings, "rollback", "error", "--reason", "bad calibration")
    assert rolled.stdout == f"rolled error back to {first.version}: bad calibration\n"
    assert registry.promoted("error").version == first.version

    refused = keyscope(stack_settings, "rollback", "error")
    assert refused.returncode == 1
    assert f"keyscope models: error: no version of 'error' was promoted before {first.version}" in refused.stderr
    missing = keyscope(stack_settings, "show", "pattern")
    assert missing.returncode == 1 and "no version of pattern is promoted" in missing.stderr
    unknown = keyscope(stack_settings, "show", "error", "20200101T000000Z-0000")
    assert unknown.returncode == 1 and "no version 20200101T000000Z-0000 of model 'error'" in unknown.stderr
    bad_model = keyscope(stack_settings, "list", "--model", "speed")
    assert bad_model.returncode == 2 and "invalid choice: 'speed'" in bad_model.stderr
