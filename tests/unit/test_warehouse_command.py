"""The warehouse command, defined once in pipelines/warehouse/command.py: the flags `python -m pipelines.warehouse`
and `keyscope warehouse` share, the RayCronJob's entrypoint parsed by them, and each action handed to its step (the
steps stubbed: the exports themselves are tested in tests/integration/test_warehouse*.py)."""

from __future__ import annotations

import argparse
import fnmatch
import shlex
import tomllib
from datetime import date
from pathlib import Path

import pytest
import yaml

import pipelines.warehouse.command as command
from app.config import Settings
from pipelines.warehouse import add_arguments, run
from pipelines.warehouse.__main__ import build_parser, main
from pipelines.warehouse.cohorts import COHORT_SQL_PATH

REPO = Path(__file__).resolve().parents[2]


def test_the_raycronjob_entrypoint_parses_as_an_export_of_yesterday_to_the_default_root():
    doc = yaml.safe_load((REPO / "cluster" / "prod" / "app" / "raycronjob-warehouse.yaml").read_text())
    argv = shlex.split(doc["spec"]["jobTemplate"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "pipelines.warehouse"]
    args = build_parser().parse_args(argv[3:])
    assert (args.action, args.day, args.days, args.out) == ("export", None, 1, None)


def test_the_flags_of_each_action():
    parser = build_parser()
    args = parser.parse_args(["export", "--day", "2026-11-02", "--days", "3", "--out", "s3://bucket/wh"])
    assert (args.action, args.day, args.days, args.out) == ("export", date(2026, 11, 2), 3, "s3://bucket/wh")
    assert vars(parser.parse_args(["erase", "--out", "/tmp/wh"])) == {"action": "erase", "out": "/tmp/wh"}
    assert vars(parser.parse_args(["cohorts", "--from", "/tmp/wh"])) == {"action": "cohorts", "source": "/tmp/wh"}
    assert vars(parser.parse_args(["cohorts"])) == {"action": "cohorts", "source": None}


@pytest.mark.parametrize(
    "argv",
    [[], ["export", "--day", "2026-13-01"], ["export", "--days", "0"], ["export", "--days", "two"], ["import"]],
    ids=["no action", "bad day", "no days", "days not a number", "unknown action"],
)
def test_bad_arguments_are_refused_while_parsing(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert "usage: python -m pipelines.warehouse" in capsys.readouterr().err


def test_the_same_flags_under_another_command():
    """`keyscope warehouse` adds the same actions under its own subcommand."""
    parser = argparse.ArgumentParser(prog="keyscope")
    add_arguments(parser.add_subparsers(dest="command").add_parser("warehouse"))
    args = parser.parse_args(["warehouse", "export", "--day", "2026-11-02"])
    assert (args.command, args.action, args.day, args.days) == ("warehouse", "export", date(2026, 11, 2), 1)


def test_each_action_runs_its_step(monkeypatch, capsys):
    calls = []

    class Report:
        def __init__(self, text: str) -> None:
            self.text = text

        def line(self) -> str:
            return self.text

    def run_export(settings, day, out, days):
        calls.append(("export", day, out, days))
        return [Report("exported")]

    def run_erasure(settings, out):
        calls.append(("erase", out))
        return Report("swept")

    monkeypatch.setattr(command, "run_export", run_export)
    monkeypatch.setattr(command, "run_erasure", run_erasure)
    assert main(["export", "--day", "2026-11-02", "--days", "2", "--out", "/tmp/wh"]) == 0
    assert run(Settings(), build_parser().parse_args(["erase"])) == 0
    assert calls == [("export", date(2026, 11, 2), "/tmp/wh", 2), ("erase", None)]
    assert capsys.readouterr().out.splitlines() == ["exported", "swept"]


def test_the_cohort_query_ships_with_the_package():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = "pipelines.warehouse"
    assert COHORT_SQL_PATH.is_file() and COHORT_SQL_PATH.parent == REPO / package.replace(".", "/")
    assert any(fnmatch.fnmatch(COHORT_SQL_PATH.name, pattern) for pattern in data.get(package, []))
