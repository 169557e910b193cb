// keyscope-live.js: record a typing test in a text field and get live feedback from keyscope while it is typed.
// A plain ES module, no build step, no dependencies; served by keyscope at /static/keyscope-live.js.
//
//   import { KeystrokeRecorder, LiveFeedback } from "https://keyscope.example/static/keyscope-live.js";
//   const recorder = new KeystrokeRecorder(textarea);
//   const live = new LiveFeedback(recorder, { url: "wss://keyscope.example/v1/live", token, userId: "42", text });
//   live.onLive = (answer) => show(answer.wpm, answer.accuracy, answer.hints);
//   await live.open();                       // → {"type": "ready", "session_id", "test_id", "expect": […]}
//   …the typist types…
//   const testId = await live.end();         // the whole test submitted through keyscope's normal path
//
// Times are whole milliseconds from the test's first key press (as a submission's `down` and `up` are). Keys are
// named as the submission format names them (docs/api.md): one character, or one of NAMED_KEYS. The field shows
// what keyscope will transcribe (a character appends, Backspace removes the last one); pasting and dropping text
// are refused. IME: keydowns inside a composition are not keys of their own; the composed text is recorded at
// compositionend, one press per character. Auto-repeat: each repeated keydown types a character and is recorded
// as a press; the key's one release belongs to its first press. The protocol: docs/live.md.

// The API's named keys (app/keys.py NAMED_KEYS; tests/e2e/test_dashboard.py checks they agree), and the older
// KeyboardEvent.key spellings some browsers still report.
export const NAMED_KEYS = [
  "Backspace", "Shift", "Enter", "Tab", "CapsLock", "Control", "Alt", "Meta", "Escape", "Delete",
  "ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown", "Insert",
  "AltGraph", "Dead", "Compose", "Unidentified", "NumLock", "ScrollLock", "ContextMenu"
];
const NAMED = new Set(NAMED_KEYS);
const OLD_KEY_NAMES = {
  Spacebar: " ", Esc: "Escape", Left: "ArrowLeft", Right: "ArrowRight", Up: "ArrowUp", Down: "ArrowDown",
  Del: "Delete", Apps: "ContextMenu", OS: "Meta", Win: "Meta", Scroll: "ScrollLock",
};

/** The submission's name of a keyboard event's key. */
export function keyName(event) {
  const key = OLD_KEY_NAMES[event.key] || event.key;
  if ([...key].length === 1 || NAMED.has(key)) return key;
  return "Unidentified"; // keys the API has no name for
}

/** Records {key, down, up} from a text field; `strokes` and `typed` (the transcription) grow as the typist types. */
export class KeystrokeRecorder {
  constructor(field, { onChange = () => {} } = {}) {
    this.field = field;
    this.onChange = onChange; // after every press and release
    this.strokes = [];
    this.typed = [];
    this.t0 = null; // performance.now() of the first press
    this.startedAt = null; // its wall-clock time (the submission's started_at)
    this.enabled = true;
    this.open = new Map(); // physical key (event.code) → its press still down
    this.handlers = {
      keydown: (event) => this.keydown(event),
      keyup: (event) => this.keyup(event),
      compositionend: (event) => this.composed(event),
      // Composition input cannot be cancelled (and is recorded at compositionend); everything else is the keys'.
      beforeinput: (event) => { if (!event.isComposing && !/Composition/.test(event.inputType)) event.preventDefault(); },
      paste: (event) => event.preventDefault(),
      drop: (event) => event.preventDefault(),
    };
    for (const [name, handler] of Object.entries(this.handlers)) field.addEventListener(name, handler);
  }

  detach() {
    for (const [name, handler] of Object.entries(this.handlers)) this.field.removeEventListener(name, handler);
  }

  /** Milliseconds since the first press (which this call starts the clock for). */
  elapsed(now = performance.now()) {
    if (this.t0 === null) {
      this.t0 = now;
      this.startedAt = new Date();
    }
    return Math.max(0, Math.round(now - this.t0));
  }

  record(key, down, up) {
    const stroke = { key, down, up };
    this.strokes.push(stroke);
    if ([...key].length === 1) this.typed.push(key);
    else if (key === "Backspace") this.typed.pop();
    return stroke;
  }

  show() {
    this.field.value = this.typed.join("");
    this.onChange();
  }

  keydown(event) {
    if (!this.enabled || event.key === "Tab") return; // Tab moves focus: keep the page usable
    if (event.isComposing || event.key === "Process" || event.keyCode === 229) return; // IME: see compositionend
    const key = keyName(event);
    // Shortcuts (Ctrl+R, Cmd+W) are not typing; AltGr, which some systems report as Ctrl+Alt, types characters.
    if ([...key].length === 1 && (event.ctrlKey || event.metaKey) && !event.getModifierState("AltGraph")) return;
    event.preventDefault();
    const stroke = this.record(key, this.elapsed(), null);
    if (!event.repeat) this.open.set(event.code || key, stroke);
    this.show();
  }

  keyup(event) {
    const id = event.code || keyName(event);
    const stroke = this.open.get(id);
    if (!stroke) return;
    stroke.up = Math.max(this.elapsed(), stroke.down);
    this.open.delete(id);
    this.onChange();
  }

  composed(event) {
    if (!this.enabled) return;
    const at = this.elapsed();
    for (const character of event.data || "") this.record(character, at, at);
    this.show();
  }

  /** Resolves once every key still down is released, or after `ms`. */
  async released(ms = 400) {
    const until = performance.now() + ms;
    while (this.open.size && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
  }

  /** The POST /v1/tests body; `userId` is the id's digits, so ids beyond JavaScript's exact integers survive. */
  submission({ userId, text, layout = "qwerty", language = "en", testId = null }) {
    const rest = {
      ...(testId ? { test_id: testId } : {}),
      started_at: (this.startedAt || new Date()).toISOString(),
      text, layout, language,
      keystrokes: this.strokes.map((s) => ({ key: s.key, down: s.down, up: s.up })),
    };
    return `{"user_id":${userId},${JSON.stringify(rest).slice(1)}`;
  }
}

/** Streams a recorder's keystrokes to /v1/live (a batch every `batchMs`) and hands each answer to `onLive`. */
export class LiveFeedback {
  constructor(recorder, { url, token, userId, text, layout = "qwerty", language = "en", testId = null,
                          batchMs = 200, holdMs = 500, resumeMs = 50000 }) {
    Object.assign(this, { recorder, url, token, userId: String(userId), text, layout, language, testId, batchMs,
                          holdMs, resumeMs });
    this.onReady = () => {};
    this.onLive = () => {};
    this.onError = () => {};
    this.onClose = () => {}; // the connection is gone for good (the resume window passed, or it was refused)
    this.ready = null; // the server's `ready`
    this.sent = 0; // strokes the server holds
    this.seq = 0;
    this.ws = null;
    this.ended = false;
    this.done = null;
    this.timer = null;
  }

  /** Connects and starts the test; resolves with `ready`. */
  open() {
    return new Promise((resolve, reject) => {
      this.connect(resolve, reject);
      this.timer = setInterval(() => this.flush(false), this.batchMs);
    });
  }

  connect(resolve, reject, since = performance.now()) {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      // The credential in the first message: a browser cannot set WebSocket headers, and a URL ends up in logs.
      ws.send(JSON.stringify({ type: "auth", token: this.token }));
      if (this.ready) {
        ws.send(`{"type":"resume","session_id":${JSON.stringify(this.ready.session_id)},"user_id":${this.userId}}`);
      } else {
        const rest = { text: this.text, layout: this.layout, language: this.language,
                       ...(this.testId ? { test_id: this.testId } : {}) };
        ws.send(`{"type":"start","user_id":${this.userId},${JSON.stringify(rest).slice(1)}`);
      }
    };
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "ready") {
        this.sent = message.resumed ? message.keystrokes : 0;
        if (!this.ready) {
          this.ready = message;
          this.testId = message.test_id;
          this.onReady(message);
        }
        resolve && resolve(message);
        resolve = null;
      } else if (message.type === "live") {
        this.onLive(message);
      } else if (message.type === "done") {
        this.done && this.done.resolve(message.test_id);
      } else if (message.type === "error") {
        this.onError(message);
        if (message.field === "token" || message.field === "session_id") this.giveUp(message.message, reject);
        else if (this.done) this.done.reject(new Error(message.message));
      }
    };
    ws.onclose = (event) => {
      if (this.ws !== ws || this.ended || event.code === 4401 || event.code === 4429) {
        if (!this.ended) this.giveUp(`closed (${event.code})`, reject);
        return;
      }
      // Dropped: the server keeps the session for a minute; come back with its session_id.
      if (performance.now() - since > this.resumeMs || !this.ready) return this.giveUp("connection lost", reject);
      setTimeout(() => this.connect(resolve, reject, since), 500);
    };
  }

  giveUp(why, reject) {
    this.ended = true;
    clearInterval(this.timer);
    reject && reject(new Error(why));
    this.done && this.done.reject(new Error(why));
    this.onClose(why);
  }

  /** Sends the strokes not yet sent, up to the first one still held down (for `holdMs` at most, unless `all`). */
  flush(all) {
    const ws = this.ws;
    if (!this.ready || !ws || ws.readyState !== WebSocket.OPEN) return;
    const strokes = this.recorder.strokes;
    const now = this.recorder.t0 === null ? 0 : performance.now() - this.recorder.t0;
    let end = this.sent;
    while (end < strokes.length && (all || strokes[end].up !== null || now - strokes[end].down > this.holdMs)) end++;
    if (end === this.sent) return;
    const batch = strokes.slice(this.sent, end).map((s) => (s.up === null ? { key: s.key, down: s.down }
                                                                         : { key: s.key, down: s.down, up: s.up }));
    ws.send(JSON.stringify({ type: "keys", keystrokes: batch, seq: this.seq++ }));
    this.sent = end;
  }

  /** Sends every stroke and `end`; resolves with the stored test's id once keyscope has queued it. */
  end(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no answer to `end`")), timeoutMs);
      this.done = {
        resolve: (testId) => { clearTimeout(timer); this.close(); resolve(testId); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      };
      this.flush(true);
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return this.done.reject(new Error("not connected"));
      this.ws.send(JSON.stringify({ type: "end" }));
    });
  }

  close() {
    this.ended = true;
    clearInterval(this.timer);
    if (this.ws) this.ws.close();
  }
}
