"""The `keyscope` command line, without a stack: every subcommand's help, each benchmark with only its own flags,
each job's flags defined once (the same in `keyscope X` and `python -m pipelines.X`), and argument errors that
name the flag."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import cli.main
from cli.main import COMMANDS, main
from cli.registry import Command

# keyscope subcommand path → (what `python -m` runs, the module holding its `main`)
JOBS = {
    ("ingest",): ("pipelines.ingest", "pipelines.ingest.__main__"),
    ("insights",): ("pipelines.insights", "pipelines.insights"),
    ("archive", "run"): ("pipelines.archive", "pipelines.archive"),
    ("migrate", "mysql"): ("pipelines.migrate_mysql", "pipelines.migrate_mysql"),
    ("warehouse",): ("pipelines.warehouse", "pipelines.warehouse.__main__"),
    ("practice", "generate"): ("pipelines.practice", "pipelines.practice"),
}


def _paths(commands: tuple[Command, ...], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for command in commands:
        path = (*prefix, command.name)
        found.append(path)
        found.extend(_paths(command.children, path))
    return found


@pytest.fixture(autouse=True)
def _steady_help(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps help to the terminal: the same width for every parser
    monkeypatch.setattr(cli.main, "apply_local_ray_env", lambda: None)  # keep this process's environment as is


def _help(entry, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        entry(argv)
    assert exited.value.code == 0
    return capsys.readouterr().out


def _arguments(help_text: str) -> str:
    """The help's argument sections (positional arguments, options), without the usage and description, which
    name the program (`keyscope X` or `python -m pipelines.X`) in their own words."""
    start = min(i for i in (help_text.find("\npositional arguments:"), help_text.find("\noptions:")) if i >= 0)
    return help_text[start:]


def test_every_registered_subcommand_has_help(capsys):
    top = _help(main, ["--help"], capsys)
    for command in COMMANDS:
        assert f"    {command.name} " in top, f"`keyscope --help` does not list {command.name}"
    paths = _paths(COMMANDS)
    assert ("bench", "storage") in paths and ("user", "delete") in paths
    for path in paths:
        text = _help(main, [*path, "--help"], capsys)
        assert text.startswith(f"usage: keyscope {' '.join(path)}"), text


def test_a_benchmark_lists_only_its_own_flags(capsys):
    storage = _help(main, ["bench", "storage", "--help"], capsys)
    analytics = _help(main, ["bench", "analytics", "--help"], capsys)
    assert "--mariadb" in storage and "--keystrokes" in storage
    assert "--mariadb" not in analytics and "--uvicorn-workers" not in analytics
    assert "--users-stored" not in analytics and "--repeats" in analytics
    assert "--uvicorn-workers" in _help(main, ["bench", "serve", "--help"], capsys)
    assert "--warm-up" in _help(main, ["bench", "soak", "--help"], capsys)
    assert "--warm-up" not in _help(main, ["bench", "latency", "--help"], capsys)


@pytest.mark.parametrize("path", sorted(JOBS), ids=" ".join)
def test_a_job_has_one_definition_of_its_flags(path, capsys):
    module, entry = JOBS[path]
    ours = _help(main, [*path, "--help"], capsys)
    theirs = _help(importlib.import_module(entry).main, ["--help"], capsys)
    assert theirs.startswith(f"usage: python -m {module}")
    assert _arguments(ours) == _arguments(theirs)


@pytest.mark.parametrize("action", ["export", "erase", "cohorts"])
def test_the_warehouse_actions_have_one_definition(action, capsys):
    from pipelines.warehouse.__main__ import main as warehouse_main

    ours = _help(main, ["warehouse", action, "--help"], capsys)
    theirs = _help(warehouse_main, [action, "--help"], capsys)
    assert _arguments(ours) == _arguments(theirs)


@pytest.mark.parametrize(
    ("argv", "prog", "flag", "reason"),
    [
        (["ingest", "--max-messages", "-1"], "keyscope ingest", "--max-messages", "must be ≥ 0"),
        (["ingest", "--max-messages", "many"], "keyscope ingest", "--max-messages", "must be a whole number"),
        (["warehouse", "export", "--days", "0"], "keyscope warehouse export", "--days", "must be ≥ 1"),
        (["warehouse", "export", "--day", "2026-13-01"], "keyscope warehouse export", "--day", "not a day"),
        (["archive", "run", "--now", "yesterday"], "keyscope archive run", "--now", "not an ISO-8601 time"),
        (["bench", "storage", "--keystrokes", "lots"], "keyscope bench storage", "--keystrokes", "invalid int value"),
        (["bench", "analytics", "--mariadb", "mysql://x@h/db"], "keyscope", "--mariadb", "unrecognized arguments"),
        (["migrate", "mysql", "--batch-size"], "keyscope migrate mysql", "--batch-size", "expected one argument"),
    ],
)
def test_argument_errors_name_the_flag(argv, prog, flag, reason, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"{prog}: error: " in err and flag in err and reason in err, err


def test_python_m_jobs_check_their_flags_the_same_way(capsys):
    from pipelines.archive import main as archive_main
    from pipelines.ingest.__main__ import main as ingest_main

    with pytest.raises(SystemExit):
        ingest_main(["--max-messages", "-1"])
    assert "python -m pipelines.ingest: error: argument --max-messages: must be ≥ 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        archive_main(["--now", "yesterday"])
    assert "python -m pipelines.archive: error: argument --now: not an ISO-8601 time" in capsys.readouterr().err


def test_a_missing_dsn_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.delenv("KEYSCOPE_MYSQL_DSN", raising=False)
    assert main(["migrate", "mysql"]) == 1
    assert capsys.readouterr().err.strip() == (
        "keyscope migrate: error: --dsn is required (or set KEYSCOPE_MYSQL_DSN): mysql://USER[:PASS]@HOST[:PORT]/DB"
    )


def test_a_subcommand_imports_only_its_own_module():
    probe = (
        "import sys\n"
        "from cli.main import main\n"
        "try:\n"
        "    main(['token', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('ray', 'pyarrow', 'chdb', 'pipelines', 'bench') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("audience", ["", "typing-site"])
def test_token_prints_a_credential_the_api_accepts(monkeypatch, tmp_path, capsys, audience):
    """`keyscope token --user ID` prints a JWT that authenticates as that user under the same settings, audience
    included (a token without the configured audience would be refused)."""
    from app.auth import AuthConfig, authenticate
    from app.config import Settings

    monkeypatch.setenv("KEYSCOPE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KEYSCOPE_TOKEN_SECRETS", "s" * 43)
    monkeypatch.setenv("KEYSCOPE_SERVICE_KEYS", "platform:ksk_" + "k" * 40)
    monkeypatch.setenv("KEYSCOPE_JWT_AUDIENCE", audience)
    assert main(["token", "--user", "42"]) == 0
    token = capsys.readouterr().out.strip()
    principal = authenticate(f"Bearer {token}", AuthConfig.from_settings(Settings.from_env()))
    assert principal.user_id == 42
    assert main(["token", "--admin"]) == 0
    admin = authenticate(f"Bearer {capsys.readouterr().out.strip()}", AuthConfig.from_settings(Settings.from_env()))
    assert admin.user_id is None and admin != principal


def test_a_reader_that_stops_early_is_no_error():
    """`keyscope simulate --to stdout | head` ends quietly: no error line, exit 0."""
    reader = subprocess.run(
        f"{sys.executable} -m cli.main simulate --users 100 --tests 5 --to stdout | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        executable="/bin/bash",
    )
    assert reader.stdout == '{"user_id"'
    assert "error" not in reader.stderr and "Traceback" not in reader.stderr
