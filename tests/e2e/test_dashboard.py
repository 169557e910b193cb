"""The dashboard (serve/static/) in a real browser against the real stack: a typist slow on 'q' signs in with a
user token in the URL fragment, sees 'q' marked weak on the keyboard heatmap, types the practice text (from
`/practice-text`) with the keyboard, and the test it submits shows up in the page's insights after the ingest job runs.

Runs Debian's chromium (`make system-packages`) through playwright's Python package; playwright's own browser
download is never used. The screenshot lands in $KEYSCOPE_TEST_ARTIFACTS (default: pytest's tmp path).
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.analytics import layouts
from app.config import Settings
from app.schemas import NAMED_KEYS
from pipelines.ingest import run_ingest
from tests.api import api_client, api_get
from tests.typists import slow_q_history

DASHBOARD_JS = Path(__file__).parents[2] / "serve" / "static" / "dashboard.js"
LIVE_JS = DASHBOARD_JS.with_name("keyscope-live.js")
USER_ID = 60_001
HISTORY_TESTS = 15
TYPING_DELAY_MS = 40  # between key presses of the drill (≈ 250 WPM): quick, yet real intervals to time
PAGE_TIMEOUT_MS = 30_000
INSIGHTS_UPDATE_TIMEOUT_MS = 60_000  # the page polls /insights every 2 s once the ingest job has run


def history() -> list[dict]:
    return slow_q_history(USER_ID, HISTORY_TESTS, seed=11, start=datetime(2026, 11, 1, 9, tzinfo=UTC))


def user_token(settings: Settings, user_id: int) -> str:
    """A signed user token for `user_id` (the credential the dashboard takes from `#token=`), signed with the
    stack's first token secret."""
    from app.auth import issue_token, settings_with_local_secrets

    secret = settings_with_local_secrets(settings).token_secrets[0]
    return issue_token(secret, "user", user_id=user_id, ttl_s=3600)


def ingest(settings: Settings) -> None:
    """Run the ingest job in-process, on a thread of its own: playwright's sync API keeps an asyncio loop
    running on this one, and the job starts loops of its own with asyncio.run."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(run_ingest, settings).result()


@pytest.fixture(scope="module")
def slow_q_typist(stack, ray_driver, api_url, stack_settings) -> int:
    with api_client(api_url, timeout=30) as client:
        statuses = [client.post("/v1/tests", json=t).status_code for t in history()]
    assert statuses == [202] * HISTORY_TESTS
    ingest(stack_settings)
    return USER_ID


@pytest.fixture
def artifacts(tmp_path) -> Path:
    folder = Path(os.environ.get("KEYSCOPE_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def script_constant(name: str, script: Path = DASHBOARD_JS):
    """The value of `const NAME = <JSON>;` in a page script (the constants the page shares with Python)."""
    source = script.read_text(encoding="utf-8")
    match = re.search(rf"const {name} = (?:new Set\()?(.*?)\)?;[ \t]*(?://[^\n]*)?\n", source, re.S)
    assert match, f"{name} not found in {script}"
    return json.loads(match.group(1))


def test_the_page_knows_the_apis_key_names_and_draws_the_analytics_layouts():
    assert script_constant("NAMED_KEYS", LIVE_JS) == list(NAMED_KEYS)
    assert script_constant("LAYOUT_ROWS") == {name: list(rows) for name, rows in layouts._ROWS.items()}
    assert script_constant("ROW_OFFSETS") == list(layouts._ROW_OFFSETS)
    assert script_constant("SPACE_SPAN") == list(layouts._SPACE_SPAN)


@pytest.mark.stack
def test_typing_the_drill_in_the_dashboard_adds_a_test_to_the_insights(
    slow_q_typist, stack, browser, api_url, stack_settings, artifacts, record_property
):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    sockets: list[str] = []
    frames: dict[str, list[dict]] = {"sent": [], "received": []}

    def watch(ws) -> None:  # noqa: ANN001 - playwright's WebSocket
        sockets.append(ws.url)
        ws.on("framesent", lambda payload: frames["sent"].append(json.loads(payload)))
        ws.on("framereceived", lambda payload: frames["received"].append(json.loads(payload)))

    page.on("websocket", watch)

    page.goto(f"{api_url}/dashboard#token={user_token(stack.settings, slow_q_typist)}")

    # Signed in from the fragment, which is gone from the address bar.
    page.wait_for_selector("#dashboard:not([hidden])")
    assert "token=" not in page.url
    assert page.inner_text("#user-label") == f"User {slow_q_typist}"

    # The heatmap marks the slow key weak, and only keys the insights call weak are marked.
    page.wait_for_selector('#heatmap [data-key="q"][data-weak="true"]')
    assert page.get_attribute('#heatmap [data-key="a"]', "data-weak") == "false"
    page.wait_for_function(f"document.querySelector('#test-count').textContent === '{HISTORY_TESTS}'")
    assert page.locator("#weak-keys li").first.get_attribute("data-unit") == "q"
    assert page.locator("#recommendations li").count() >= 1
    page.hover('#heatmap [data-key="q"]')
    assert "Presses" in page.inner_text("#key-tooltip")

    # The passage comes from the practice-text route and aims at 'q': a word drill while no text is written for
    # this kind of typist (the first request queues one), and the page says which it is. Type it all.
    page.wait_for_function("document.querySelector('#practice-text').textContent.length > 0")
    drill = page.inner_text("#practice-text")
    assert any(f"/v1/users/{slow_q_typist}/practice-text?words=" in url for url in requested), requested
    assert not any(re.search(r"/practice\?", url) for url in requested), "the old drill route is still used"
    assert "q" in page.inner_text("#practice-targets")
    generator = page.get_attribute("#practice-generator", "data-generator")
    assert page.inner_text("#practice-generator") == {"rules": "Word drill", "lm": "Written for you"}[generator]
    if generator == "rules":
        assert drill.count("q") >= 3, drill
    page.click("#practice-input")
    page.keyboard.type(drill, delay=TYPING_DELAY_MS)
    assert page.input_value("#practice-input") == drill
    page.wait_for_function(
        "!document.querySelector('#practice-status').textContent.startsWith('Sending')"
        " && document.querySelector('#practice-status').textContent.length > 0"
    )
    status = page.inner_text("#practice-status")
    assert status.startswith("Submitted"), status

    # Typed with live feedback (serve/static/keyscope-live.js over /v1/live): the credential went in the first
    # message, not the URL; keyscope's numbers replaced the page's own, the slow spots it expected are underlined,
    # its hints named the typist's slow 'q', and the test was submitted by `end`.
    assert sockets and all("token" not in url for url in sockets), sockets
    assert frames["sent"][0]["type"] == "auth" and frames["sent"][1]["type"] == "start"
    received = {message["type"] for message in frames["received"]}
    assert {"ready", "live", "done"} <= received, received
    assert page.get_attribute("#practice-live", "data-source") == "live"
    assert "health" in page.inner_text("#practice-live")
    assert page.locator("#practice-text span[data-slow]").count() >= 1
    hints = [h for m in frames["received"] if m["type"] == "live" for h in m["hints"]]
    # Each slow-spot hint is one of the spots `ready` expected from the typist's stored insights (which of their weak
    # units comes up first in the passage varies with the simulated history: 'q', a pair such as 'qu' or 't␣').
    [ready] = [m for m in frames["received"] if m["type"] == "ready"]
    expected = {(spot["position"], spot["chars"]) for spot in ready["expect"]}
    assert any(spot["evidence"].get("source") == "insights" for spot in ready["expect"]), ready["expect"]
    slow_hints = [h for h in hints if h["kind"] == "slow_spot_ahead"]
    assert slow_hints, hints
    assert all((h["evidence"]["position"], h["evidence"]["chars"]) in expected for h in slow_hints), (hints, expected)
    assert page.locator("#practice-hints li").count() >= 1
    [done] = [m for m in frames["received"] if m["type"] == "done"]
    assert page.get_attribute("#practice-status", "data-test-id") == done["test_id"]

    # The ingest job stores it; the page's polling sees the count go up and refreshes its panels.
    ingest(stack_settings)
    page.wait_for_function(
        f"document.querySelector('#test-count').textContent === '{HISTORY_TESTS + 1}'",
        timeout=INSIGHTS_UPDATE_TIMEOUT_MS,
    )
    screenshot = artifacts / "dashboard.png"
    page.screenshot(path=str(screenshot), full_page=True)
    record_property("screenshot", str(screenshot))
    print(f"dashboard screenshot: {screenshot}")

    # The stored test is the drill, typed as the page recorded it.
    newest = api_get(f"{api_url}/v1/users/{slow_q_typist}/tests", params={"limit": 1}).json()["tests"][0]
    assert newest["keystroke_count"] >= len(drill)
    assert newest["accuracy"] == 1.0 and newest["wpm"] > 0
    assert page_errors == []
