"""The practice pre-generation job without a stack: its flags, how it picks and orders signatures, what --dry-run
prints, and its help being the one `keyscope practice generate` shows."""

from __future__ import annotations

import argparse

import pytest

import pipelines.practice as practice_job
from cli.main import main as keyscope_main
from pipelines.entry import job_parser
from pipelines.practice import WantedSignature, choose_signatures, plan_lines

GENERAL = "qwerty-en-s1-any"


def parse(*argv: str) -> argparse.Namespace:
    return job_parser("python -m pipelines.practice", practice_job.DESCRIPTION, practice_job.add_arguments).parse_args(
        list(argv)
    )


def test_the_defaults_are_the_documented_ones():
    args = parse()
    assert (args.days, args.texts_per_signature, args.max_signatures) == (7, 8, 200)
    assert (args.batch_size, args.writers, args.seed, args.dry_run, args.signature) == (8, 1, 0, False, None)
    assert (args.candidates, args.prompts, args.max_new_tokens) == (4, 2, 64)


def test_signatures_repeat_and_are_normalised_by_the_parser():
    args = parse("--signature", "qwerty-en-s2-ed.q.th", "--signature", GENERAL, "--dry-run")
    assert args.signature == ["qwerty-en-s2-ed.q.th", GENERAL] and args.dry_run


@pytest.mark.parametrize(
    ("argv", "flag", "reason"),
    [
        (["--signature", "qwerty-en-s2-th.ed"], "--signature", "distinct and sorted"),
        (["--signature", "dvorak2-en-s2-th"], "--signature", "not a practice signature"),
        (["--signature", "klingon-en-s2-th"], "--signature", "unknown layout"),
        (["--days", "0"], "--days", "must be ≥ 1"),
        (["--texts-per-signature", "many"], "--texts-per-signature", "whole number"),
        (["--writers", "0"], "--writers", "must be ≥ 1"),
        (["--max-new-tokens", "4"], "--max-new-tokens", "must be ≥ 8"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(argv, flag, reason, capsys):
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and reason in err


def test_a_bad_signature_stops_the_command_before_it_touches_a_store(capsys, monkeypatch):
    def must_not_run(*_args, **_kwargs):
        raise AssertionError("the job ran")

    monkeypatch.setattr(practice_job, "run_generation", must_not_run)
    with pytest.raises(SystemExit) as exited:
        practice_job.main(["--signature", "qwerty-en-s9-th"])
    assert exited.value.code == 2 and "argument --signature" in capsys.readouterr().err


def test_only_signatures_short_of_texts_are_chosen_most_typists_first():
    candidates = ["qwerty-en-s1-q", "qwerty-en-s2-th", "qwerty-en-s1-q", "qwerty-en-s0-z", "qwerty-en-s3-ed", GENERAL]
    typists = {"qwerty-en-s2-th": 5, "qwerty-en-s3-ed": 9, GENERAL: 5, "qwerty-en-s0-z": 1}
    stored = {"qwerty-en-s3-ed": 8, GENERAL: 3, "qwerty-en-s2-th": 0}
    chosen = choose_signatures(candidates, typists, stored, per_signature=8, limit=10)
    assert chosen == [
        WantedSignature("qwerty-en-s2-th", stored=0, missing=8, typists=5),  # ties keep the candidates' order
        WantedSignature(GENERAL, stored=3, missing=5, typists=5),
        WantedSignature("qwerty-en-s0-z", stored=0, missing=8, typists=1),
        WantedSignature("qwerty-en-s1-q", stored=0, missing=8, typists=0),  # queued, no active typist; once
    ]  # qwerty-en-s3-ed has its 8 texts


def test_the_limit_keeps_the_most_demanded():
    candidates = [f"qwerty-en-s1-{letter}" for letter in "abcdef"]
    typists = {signature: n for n, signature in enumerate(candidates)}
    chosen = choose_signatures(candidates, typists, {}, per_signature=2, limit=2)
    assert [w.signature for w in chosen] == ["qwerty-en-s1-f", "qwerty-en-s1-e"]
    assert choose_signatures(candidates, typists, {}, per_signature=2, limit=0) == []


def test_the_dry_run_lists_each_signature_with_what_it_would_write():
    lines = plan_lines([WantedSignature("qwerty-en-s2-th", 3, 5, 12), WantedSignature(GENERAL, 0, 8, 0)])
    assert lines == [
        "qwerty-en-s2-th  stored 3, writes up to 5, active typists 12",
        f"{GENERAL}  stored 0, writes up to 8, active typists 0",
    ]


def test_the_report_line_names_every_figure():
    report = practice_job.GenerationReport(
        considered=5, wanted=3, written=2, failed=1, texts=7, candidates=24, new_tokens=900, generate_s=3.0, seconds=9.5
    )
    assert report.tokens_per_s == 300.0
    assert report.line() == (
        "5 signatures considered, 3 short of texts: 2 written, 1 failed (no passing candidate); 7 texts from 24 "
        "candidates, 900 tokens generated (300 tokens/s while generating) in 9.5 s"
    )


def _help(entry, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        entry(argv)
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_python_m_and_keyscope_show_one_definition_of_the_flags(capsys):
    theirs = _help(practice_job.main, ["--help"], capsys)
    ours = _help(keyscope_main, ["practice", "generate", "--help"], capsys)
    assert theirs.startswith("usage: python -m pipelines.practice")
    assert ours.startswith("usage: keyscope practice generate")
    assert theirs[theirs.index("\noptions:") :] == ours[ours.index("\noptions:") :]


def test_a_redis_outage_in_the_ingest_hook_is_logged_not_raised(caplog):
    """An insights refresh must not fail because the practice signatures could not be recorded."""
    import redis

    from app.config import Settings
    from pipelines.insights import queue_moved_signatures

    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, socket_timeout=0.5)
    queue_moved_signatures(Settings(), unreachable, {7_700_002: GENERAL})
    assert "could not record the practice signatures of 1 users" in caplog.text
