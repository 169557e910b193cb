"""Experiments on the real ClickHouse engine: chDB in process, and the stack's HTTP endpoint (the report's query
path as clickhouse-connect meets a server).

Simulated typists (devstack/simulate_experiment.py) practise before and after exposure: in the A/B experiment the
variant `rules` is built to help more (its typists' intervals shrink up to 10 % more and their weak letters lose up
to 70 % of their extra time as they practise), and the report finds both effects with the right sign and a 95 %
interval that excludes 0; in the A/A experiment both variants are the same and the intervals include 0 (the error
rate itself is measured on the statistics alone, tests/unit/test_experiments.py). Then: exposures written twice
keep the first time, a deleted user's late exposure is dropped, definitions refuse duplicates and overlaps, the
serving layer reads experiments and writes exposures in the background and survives ClickHouse going away, and
`keyscope experiment` works end to end."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from app.clickhouse.client import clickhouse_client
from app.clickhouse.migrate import apply_migrations
from app.clickhouse.store import write_tables
from app.config import Settings
from app.experiments.definition import Experiment, ExperimentError, Variant
from app.experiments.report import experiment_report, format_report
from app.experiments.runtime import ExperimentRuntime
from app.experiments.store import (
    Exposure,
    create_experiment,
    exposure_counts,
    load_experiment,
    load_experiments,
    stop_experiment,
    write_exposures,
)
from app.schemas import parse_submission
from app.tables import build_tables
from app.user_data import ClickHouseStore, ExposureStore, record_tombstone
from cli.main import main as keyscope
from devstack.simulate_experiment import VariantEffect, simulate_experiment

USERS, BEFORE, AFTER = 160, 5, 8
AB_FIRST, AA_FIRST, OTHER_FIRST = 7_900_001, 7_901_001, 7_902_001
HELPS = VariantEffect(speedup=0.10, weak_key_relief=0.7)
T0 = datetime(2026, 9, 1, tzinfo=UTC)


def define(
    name: str, a: str, b: str, starts: datetime, ends: datetime | None = None, values: tuple[str, str] = ("lm", "rules")
) -> Experiment:
    variants = (Variant(a, 1, values[0]), Variant(b, 1, values[1]))
    return Experiment(name, "practice_generator", variants, starts, ends)


def store_simulated(client, experiment: Experiment, first_user_id: int, effects) -> None:
    create_experiment(client, experiment)
    submissions, exposures = simulate_experiment(
        experiment, USERS, BEFORE, AFTER, effects, seed=0, first_user_id=first_user_id
    )
    tests = [parse_submission(s) for s in submissions]
    write_tables(client, build_tables(tests, np.zeros(len(tests), np.int64), np.arange(len(tests), dtype=np.int64)))
    assert write_exposures(client, exposures) == USERS


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """The module's chDB engine (a process opens one engine path at a time), migrated in its default database."""
    url = f"chdb://{tmp_path_factory.mktemp('experiments') / 'ch'}"
    client = clickhouse_client(url)
    apply_migrations(client)
    try:
        yield url, client
    finally:
        client.close()


@pytest.fixture
def chdb(engine, request):
    """A fresh, migrated database of the module's engine: (engine url, client, database)."""
    url, admin = engine
    name = "t_" + re.sub(r"\W", "_", request.node.name)[:60]
    admin.command(f"CREATE DATABASE {name}")
    client = clickhouse_client(url, database=name)
    apply_migrations(client)
    try:
        yield url, client, name
    finally:
        client.close()


@pytest.fixture(scope="module", params=["chdb", "http"])
def simulated(request):
    """A database holding the A/B and the A/A experiment's typists: chDB in process, or on the stack's endpoint."""
    database = None
    if request.param == "chdb":
        url, admin = request.getfixturevalue("engine")
        database = "simulated"
        admin.command(f"CREATE DATABASE {database}")
    else:
        request.applymarker(pytest.mark.stack)
        settings = request.getfixturevalue("stack_settings")
        request.getfixturevalue("stack")
        base = settings.clickhouse_url.rsplit("/", 1)[0]
        admin = clickhouse_client(f"{base}/default")
        admin.command("DROP DATABASE IF EXISTS experiments_test SYNC")
        admin.command("CREATE DATABASE experiments_test")
        admin.close()
        url = f"{base}/experiments_test"
    client = clickhouse_client(url, database=database) if database else clickhouse_client(url)
    apply_migrations(client)
    store_simulated(client, define("ab", "lm", "rules", T0, T0 + timedelta(days=1)), AB_FIRST, {"rules": HELPS})
    aa = define("aa", "a", "b", T0 + timedelta(days=1), T0 + timedelta(days=2), values=("lm", "lm"))
    store_simulated(client, aa, AA_FIRST, {})
    try:
        yield url, client
    finally:
        client.close()


def test_the_report_finds_the_variant_built_to_help_with_the_right_sign(simulated):
    _, client = simulated
    report = experiment_report(client, "ab", after_tests=AFTER)
    assert [row.exposed for row in report.variants] == [row.measured for row in report.variants]
    assert sum(row.exposed for row in report.variants) == USERS and not report.sample_ratio.flagged
    wpm = report.differences["rules"]["wpm_change"]
    weak = report.differences["rules"]["weak_key_change_ms"]
    assert wpm.estimate > 0 and wpm.low > 0, wpm  # faster
    assert weak.estimate < 0 and weak.high < 0, weak  # weak keys take less time
    table = format_report(report)
    assert "rules − lm: WPM change +" in table and "better" in table and "worse" not in table
    print(table)


def test_an_aa_experiment_finds_no_effect(simulated):
    _, client = simulated
    report = experiment_report(client, "aa", after_tests=AFTER)
    assert sum(row.measured for row in report.variants) == USERS and not report.sample_ratio.flagged
    for difference in report.differences["b"].values():
        assert difference.low < 0 < difference.high, difference
    table = format_report(report)
    assert "better" not in table and "worse" not in table
    print(table)


def test_users_without_enough_later_tests_are_pending_and_still_count_in_the_sample_ratio(simulated):
    _, client = simulated
    report = experiment_report(client, "ab", after_tests=AFTER + 1)
    assert sum(row.exposed for row in report.variants) == USERS
    assert sum(row.measured for row in report.variants) == 0
    assert f"{USERS} exposed users are not measured yet" in format_report(report)


# --- exposures, definitions, the serving layer, the CLI: chDB in process --------------------------------------


def exposures_of(client, user_id: int) -> list[tuple]:
    return client.query(
        "SELECT experiment, variant, exposed_at FROM experiment_exposures FINAL WHERE user_id = {u:UInt64} "
        "ORDER BY experiment",
        parameters={"u": user_id},
    ).result_rows


def test_an_exposure_written_again_keeps_the_first_time(chdb):
    _, client, _ = chdb
    first = datetime(2026, 12, 1, 10, tzinfo=UTC)
    for moment in (first + timedelta(hours=1), first, first + timedelta(days=3)):
        write_exposures(client, [Exposure(OTHER_FIRST, "exp", "lm", moment)])
    client.command("OPTIMIZE TABLE experiment_exposures FINAL")
    rows = client.query("SELECT exposed_at FROM experiment_exposures WHERE user_id = {u:UInt64}",
                        parameters={"u": OTHER_FIRST}).result_rows
    assert [r[0].replace(tzinfo=UTC) for r in rows] == [first]
    assert exposure_counts(client, "exp") == {"lm": 1}


def test_an_exposure_buffered_before_a_deletion_is_not_written_after_it(chdb):
    _, client, _ = chdb
    exposed = datetime.now(UTC) - timedelta(seconds=5)
    record_tombstone(client, OTHER_FIRST, datetime.now(UTC))
    later = datetime.now(UTC) + timedelta(seconds=1)
    written = write_exposures(client, [
        Exposure(OTHER_FIRST, "exp", "lm", exposed),  # recorded before the deletion: dropped
        Exposure(OTHER_FIRST + 1, "exp", "lm", exposed),  # someone else: kept
        Exposure(OTHER_FIRST, "exp-2", "lm", later),  # the user came back after it: kept
    ])
    assert written == 2
    assert [r[0] for r in exposures_of(client, OTHER_FIRST)] == ["exp-2"]


def test_definitions_refuse_a_taken_name_and_an_overlap_on_the_same_factor_and_stop_once(chdb):
    _, client, _ = chdb
    now = datetime.now(UTC)
    running = create_experiment(client, define("gen-1", "lm", "rules", now - timedelta(hours=1)))
    assert running.created_at is not None and load_experiment(client, "gen-1") == running
    with pytest.raises(ExperimentError, match="exists"):
        create_experiment(client, define("gen-1", "lm", "rules", now + timedelta(days=9)))
    with pytest.raises(ExperimentError, match="already varies practice_generator"):
        create_experiment(client, define("gen-2", "lm", "rules", now + timedelta(days=9)))
    hints = Experiment("hints-1", "hint_style", (Variant("a", 1, "all"), Variant("b", 1, "slow_spots")), now)
    create_experiment(client, hints)  # another factor: fine
    stopped = stop_experiment(client, "gen-1", now)
    assert stopped.ends_at == now.replace(microsecond=now.microsecond // 1000 * 1000) and not stopped.running()
    with pytest.raises(ExperimentError, match="already ended"):
        stop_experiment(client, "gen-1")
    create_experiment(client, define("gen-2", "lm", "rules", now + timedelta(days=1)))  # after the stop: fine
    assert [e.name for e in load_experiments(client)] == ["gen-1", "hints-1", "gen-2"]
    with pytest.raises(ExperimentError, match="no experiment named 'nope'"):
        load_experiment(client, "nope")


def test_the_serving_layer_assigns_from_memory_and_writes_exposures_in_the_background(chdb):
    url, client, database = chdb
    create_experiment(client, define("gen-1", "lm", "rules", datetime.now(UTC) - timedelta(minutes=1)))
    runtime = ExperimentRuntime(lambda: clickhouse_client(url, database=database), flush_s=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while not runtime.experiments() and time.monotonic() < deadline:
            time.sleep(0.02)
        users = range(OTHER_FIRST, OTHER_FIRST + 50)
        chosen = {u: runtime.choose(u, "practice_generator") for u in users for _ in range(3)}
        assert runtime.choose(OTHER_FIRST, "hint_style") is None  # nothing runs on that factor
        assert {a.value for a in chosen.values()} == {"lm", "rules"}
        while runtime.recorder.written < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        runtime.close()
    assert sum(exposure_counts(client, "gen-1").values()) == 50
    stored = dict(client.query("SELECT user_id, variant FROM experiment_exposures FINAL").result_rows)
    assert stored == {u: a.variant for u, a in chosen.items()}


def test_a_clickhouse_outage_delays_exposures_and_never_fails_a_choice(chdb):
    url, client, database = chdb
    create_experiment(client, define("gen-1", "lm", "rules", datetime.now(UTC) - timedelta(minutes=1)))
    down = {"yes": False}

    def connect():
        if down["yes"]:
            return clickhouse_client("http://127.0.0.1:9/default")  # nothing listens there
        return clickhouse_client(url, database=database)

    runtime = ExperimentRuntime(connect, flush_s=3600)  # flushed by hand below
    runtime.refresh()
    runtime._drop_client()  # the next write connects again, to the dead address
    down["yes"] = True
    started = time.perf_counter()
    answers = [runtime.choose(u, "practice_generator") for u in range(OTHER_FIRST, OTHER_FIRST + 20)]
    assert time.perf_counter() - started < 0.5 and all(answers)
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises for a refused connection
        runtime.flush()
    assert runtime.recorder.pending() == 20
    thread = threading.Thread(target=runtime._run, daemon=True)  # the background loop logs and carries on
    runtime._stop.set()
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive() and runtime.recorder.pending() == 20
    down["yes"] = False
    assert runtime.flush() == 20
    runtime.close()
    assert sum(exposure_counts(client, "gen-1").values()) == 20


def test_the_exposure_store_exports_and_deletes_one_users_exposures(engine):
    url, client = engine  # the default database: the store reads the one the settings name
    hints = Experiment("hints-1", "hint_style", (Variant("short", 1, "all"), Variant("long", 1, "slow_spots")), T0)
    create_experiment(client, hints)
    moment = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    write_exposures(client, [Exposure(u, "hints-1", "long", moment) for u in (OTHER_FIRST, OTHER_FIRST + 1)])
    write_exposures(client, [Exposure(OTHER_FIRST, "hints-1", "long", moment + timedelta(days=1))])
    settings = Settings(clickhouse_url=url)
    store = ExposureStore(settings)
    generic = ClickHouseStore(settings)
    try:
        assert "experiment_exposures" not in {t.name for t in generic.tables()}  # exported once, by its own store
        files = dict(store.export(OTHER_FIRST))
        assert list(files) == ["exposures.jsonl"]
        lines = [json.loads(line) for line in files["exposures.jsonl"].splitlines()]
        assert lines == [{"experiment": "hints-1", "factor": "hint_style", "variant": "long", "value": "slow_spots",
                          "first_exposed_at": "2026-12-01T09:30:00.000Z"}]
        assert store.count(OTHER_FIRST) == 1 and store.delete(OTHER_FIRST) == 1
        assert store.count(OTHER_FIRST) == 0 and dict(store.export(OTHER_FIRST))["exposures.jsonl"] == b""
        assert client.query("SELECT count() FROM experiment_exposures WHERE user_id = {u:UInt64}",
                            parameters={"u": OTHER_FIRST}).result_rows[0][0] == 0
        assert store.count(OTHER_FIRST + 1) == 1  # someone else's stays
    finally:
        store.close()
        generic.close()


def test_the_cli_creates_lists_reports_and_stops_with_clear_errors(engine, monkeypatch, capsys):
    url, client = engine
    monkeypatch.setenv("CLICKHOUSE_URL", url)
    assert keyscope(["experiment", "create", "gen-1", "--factor", "practice_generator",
                     "--variant", "lm=1", "--variant", "rules=0"]) == 1
    assert "the weight must be a positive number" in capsys.readouterr().err
    assert keyscope(["experiment", "create", "gen-1", "--factor", "practice_generator",
                     "--variant", "lm=3", "--variant", "rules=1", "--description", "drills vs written"]) == 0
    assert "lm (lm) 75.0%, rules (rules) 25.0%" in capsys.readouterr().out
    write_exposures(client, [Exposure(OTHER_FIRST, "gen-1", "lm", datetime.now(UTC))])
    assert keyscope(["experiment", "list"]) == 0
    listed = capsys.readouterr().out
    assert "gen-1" in listed and "running" in listed and "lm:lm=3 rules:rules=1" in listed
    assert keyscope(["experiment", "report", "gen-1", "--after-tests", "3"]) == 0
    out = capsys.readouterr().out
    assert "experiment gen-1" in out and "sample ratio: lm 1 (expected 0.8), rules 0 (expected 0.2)" in out
    assert keyscope(["experiment", "report", "nope"]) == 1
    assert "no experiment named 'nope' (experiments: " in capsys.readouterr().err
    assert keyscope(["experiment", "stop", "gen-1"]) == 0 and "ends at" in capsys.readouterr().out
    assert keyscope(["experiment", "list", "--json"]) == 0 and '"running": false' in capsys.readouterr().out
