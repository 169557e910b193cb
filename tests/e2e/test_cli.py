"""The `keyscope` commands, run as a user would, against the session's stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_PORTS

pytestmark = pytest.mark.stack
KEYSCOPE = str(Path(sys.executable).with_name("keyscope"))


def run(stack_settings, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, **TEST_PORTS, "KEYSCOPE_DATA_DIR": str(stack_settings.data_dir)}
    return subprocess.run([KEYSCOPE, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_help_explains_every_command(stack_settings):
    result = run(stack_settings, "--help")
    assert result.returncode == 0
    for command in ("up", "down", "status", "ingest", "simulate", "demo"):
        assert command in result.stdout


def test_status_lists_every_service_as_up(stack, stack_settings):
    result = run(stack_settings, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("kafka", "clickhouse", "redis", "ray", "serve", "serve/live"):
        assert any(line.split()[:2] == [name, "up"] for line in result.stdout.splitlines()), result.stdout


def test_simulate_to_stdout_is_reproducible_json(stack_settings):
    first = run(stack_settings, "simulate", "--users", "2", "--tests", "2", "--to", "stdout", "--seed", "5")
    second = run(stack_settings, "simulate", "--users", "2", "--tests", "2", "--to", "stdout", "--seed", "5")
    lines = first.stdout.splitlines()
    assert first.returncode == 0 and len(lines) == 4 and first.stdout == second.stdout
    assert {json.loads(line)["user_id"] for line in lines} == {1, 2}


def test_demo_runs_the_whole_loop(stack, stack_settings):
    result = run(stack_settings, "demo", "--users", "6", "--tests", "2", "--seed", "77")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted 12 simulated tests" in result.stdout
    assert "12 accepted" in result.stdout
    assert "insights of user 1:" in result.stdout and "weak keys:" in result.stdout
    assert "recommendations:" in result.stdout


def test_simulate_to_kafka_then_ingest(stack, stack_settings):
    produced = run(stack_settings, "simulate", "--users", "2", "--tests", "1", "--to", "kafka", "--first-user", "31000")
    assert produced.returncode == 0 and "produced 2 tests" in produced.stdout
    ingested = run(stack_settings, "ingest")
    assert ingested.returncode == 0, ingested.stderr
    assert "stored" in ingested.stdout


def test_errors_are_one_line_without_a_traceback(stack_settings):
    env_bad = {
        **os.environ,
        **TEST_PORTS,
        "KEYSCOPE_DATA_DIR": str(stack_settings.data_dir),
        "KEYSCOPE_TOPIC_PARTITIONS": "eight",
    }
    result = subprocess.run([KEYSCOPE, "status"], env=env_bad, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "KEYSCOPE_TOPIC_PARTITIONS must be an integer" in result.stderr
    assert "Traceback" not in result.stderr
