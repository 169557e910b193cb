"""The ingest command's flags (pipelines/ingest/command.py), as `python -m pipelines.ingest` and `keyscope ingest`
parse them."""

from __future__ import annotations

import argparse

import pytest

from pipelines.ingest import add_arguments


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ingest")
    add_arguments(parser)
    return parser.parse_args(argv)


def test_the_defaults_drain_once_with_the_settings_cap():
    args = parse()
    assert (args.follow, args.max_messages) == (False, None)
    assert (parse("--follow", "--max-messages", "0").follow, parse("--max-messages", "500").max_messages) == (True, 500)


@pytest.mark.parametrize("value", ["-1", "x", "1.5"])
def test_a_bad_max_messages_is_an_error_that_names_the_flag(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse("--max-messages", value)
    assert exit_.value.code == 2
    assert "argument --max-messages: must be" in capsys.readouterr().err
