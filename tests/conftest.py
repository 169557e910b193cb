"""Shared fixtures: one local stack (real broker, ClickHouse endpoint, Redis, Ray head, Serve app) per
test session, on ports of its own so it never meets a developer's stack, stopped at the end."""

from __future__ import annotations

import os
from pathlib import Path

from app.config import Settings, apply_local_ray_env

apply_local_ray_env()  # before ray is imported anywhere in the test process

import pytest  # noqa: E402

TEST_PORTS = {
    "KAFKA_BOOTSTRAP": "127.0.0.1:29092",
    "CLICKHOUSE_URL": "http://127.0.0.1:28123/default",
    "RAY_ADDRESS": "127.0.0.1:26380",
    "KEYSCOPE_RAY_DASHBOARD_PORT": "28265",
    "KEYSCOPE_SERVE_PORT": "28000",
    # Redis: the machine's own server when one answers (else the stack starts one here); DB 13 is the tests'.
    "REDIS_URL": os.environ.get("KEYSCOPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13"),
    # The practice-text model `make install` converted (app/practice/model_files.py); converted here on first use
    # otherwise, once for every test session rather than once per session's data directory.
    "KEYSCOPE_LM_DIR": os.environ.get(
        "KEYSCOPE_TEST_LM_DIR", str(Path(__file__).resolve().parents[1] / ".keyscope" / "lm" / "smollm2-135m-instruct")
    ),
    # A /v1/live connection silent this long is closed (120 s by default): short, so tests/e2e/test_live.py sees it
    # happen in seconds; every other live session in the tests sends its next message well within it.
    "KEYSCOPE_LIVE_IDLE_S": "5",
}


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory) -> Settings:
    return Settings.from_env({**TEST_PORTS, "KEYSCOPE_DATA_DIR": str(tmp_path_factory.mktemp("keyscope-stack"))})


@pytest.fixture(scope="session")
def stack(stack_settings):
    """The running local stack (started once per session, stopped at its end)."""
    import redis

    from app.api_client import service_headers
    from devstack.stack import LocalStack
    from tests.api import SERVICE_HEADERS

    local = LocalStack(stack_settings)
    try:
        local.up(progress=lambda message: print(message, flush=True))
        redis.Redis.from_url(stack_settings.redis_url).flushdb()
        SERVICE_HEADERS.update(service_headers(local.settings))
        yield local
    finally:
        local.down()


@pytest.fixture(scope="session")
def ray_driver(stack, stack_settings):
    """This process connected to the stack's Ray cluster as a driver (for running the ingest job in-process)."""
    import ray

    ray.init(address=stack_settings.ray_address, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def api_url(stack) -> str:
    return stack.serve_url()


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def browser():
    """Debian's headless chromium through playwright (`make system-packages` installs it; playwright's own browser
    download is never used). Skipped, saying why, where either is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the `test` extra")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `make system-packages` installs Debian's chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()
