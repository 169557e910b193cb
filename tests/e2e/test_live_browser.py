"""keyscope-live.js's recorder in headless Chromium (no stack): key names as the submission names them, times from
the first press, auto-repeat, IME composition, shortcuts and paste, and the submission body."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LIVE_JS = Path(__file__).parents[2] / "serve" / "static" / "keyscope-live.js"

EVENTS = """
async () => {
  const field = document.getElementById("field");
  const recorder = new window.KL.KeystrokeRecorder(field);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const key = (type, key, extra = {}) => {
    const event = new KeyboardEvent(type, { key, code: extra.code || "", bubbles: true, cancelable: true, ...extra });
    field.dispatchEvent(event);
    return event.defaultPrevented;
  };
  key("keydown", "h", { code: "KeyH" }); await sleep(30); key("keyup", "h", { code: "KeyH" });
  key("keydown", "i", { code: "KeyI" }); await sleep(30);
  key("keydown", "i", { code: "KeyI", repeat: true }); await sleep(30);  // auto-repeat types another 'i'
  key("keyup", "i", { code: "KeyI" });
  key("keydown", "Process", { code: "KeyN", isComposing: true });       // IME: not a key of its own
  field.dispatchEvent(new CompositionEvent("compositionend", { data: "日本", bubbles: true }));
  const shortcut = key("keydown", "r", { code: "KeyR", ctrlKey: true }); // Ctrl+R: the browser's, unrecorded
  key("keydown", "Spacebar", { code: "Space" });                        // an old spelling of " "
  key("keydown", "Backspace", { code: "Backspace" });
  key("keydown", "F13", { code: "F13" });                                // no name in the API
  const paste = new ClipboardEvent("paste", { bubbles: true, cancelable: true });
  field.dispatchEvent(paste);
  return {
    strokes: recorder.strokes, typed: recorder.typed.join(""), value: field.value, shortcut,
    pastePrevented: paste.defaultPrevented,
    submission: recorder.submission({ userId: "9223372036854775807", text: "hii日本", testId: "t-1" }),
  };
}
"""


@pytest.fixture
def page(browser):
    page = browser.new_page()
    page.set_content('<textarea id="field"></textarea>')
    source = LIVE_JS.read_text(encoding="utf-8")
    page.add_script_tag(content=source + "\nwindow.KL = { KeystrokeRecorder, LiveFeedback, keyName };",
                        type="module")  # fmt: skip
    page.wait_for_function("window.KL !== undefined")
    return page


def test_the_recorder_names_times_and_transcribes_keys_as_a_submission_does(page):
    result = page.evaluate(EVENTS)
    keys = [s["key"] for s in result["strokes"]]
    assert keys == ["h", "i", "i", "日", "本", " ", "Backspace", "Unidentified"]
    assert result["typed"] == result["value"] == "hii日本"
    strokes = result["strokes"]
    assert strokes[0]["down"] == 0 and strokes[0]["up"] >= 25  # from the first press, released ~30 ms later
    downs = [s["down"] for s in strokes]
    assert downs == sorted(downs)
    assert strokes[1]["up"] is not None and strokes[2]["up"] is None  # the release belongs to the first press
    assert strokes[3]["down"] == strokes[3]["up"] == strokes[4]["down"]  # composed text: presses at compositionend
    assert result["shortcut"] is False and result["pastePrevented"] is True
    body = result["submission"]
    assert body.startswith('{"user_id":9223372036854775807,')  # every digit of a 64-bit id
    parsed = json.loads(body)
    assert parsed["test_id"] == "t-1" and [k["key"] for k in parsed["keystrokes"]] == keys

