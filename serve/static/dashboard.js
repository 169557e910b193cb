// keyscope dashboard: a typist's heatmap, trends, weak spots and a practice box, from the keyscope API.
// Plain browser JavaScript, no build step and no third-party code. Reads:
//   GET  /v1/users/{id}/insights   summary, weak keys and pairs, recommendations, layout
//   GET  /v1/users/{id}/keys       per-key rows (row, column, x for placing keys) and per-pair rows
//   GET  /v1/users/{id}/progress   daily wpm / accuracy / health_score
//   GET  /v1/users/{id}/trajectory the trajectory model's WPM over the next 20 tests (503 until one is promoted)
//   GET  /v1/users/{id}/practice-text  a practice text: written for this kind of typist, or a word drill
//   WS   /v1/live                  live numbers and hints while the practice test is typed, and its submission
//   POST /v1/tests                 the practice test, when the live connection is not available
// Every call carries "Authorization: Bearer <token>"; the token is a user JWT whose subject (`sub`) names the user.
// The practice box records and streams its keystrokes with keyscope-live.js, the module typing sites use too.
import { KeystrokeRecorder, LiveFeedback } from "./keyscope-live.js";

(function () {
  const TOKEN_KEY = "keyscope.token";
  const PRACTICE_WORDS = 30;
  // What wrote the passage (the API's `generator`), as the practice box names it.
  const GENERATOR_LABELS = { lm: "Written for you", rules: "Word drill" };
  const POLL_INTERVAL_MS = 2000;
  const POLL_TIMEOUT_MS = 10 * 60 * 1000;
  const RELEASE_WAIT_MS = 400; // after the last character, how long to wait for keys still held to come up
  const MIN_PRESSES = 3; // fewer presses colour a key as "not enough data"
  const SVG_NS = "http://www.w3.org/2000/svg";

  // Key legends per layout, row by row ("unshifted" or "unshifted+shifted"), copied from _ROWS in
  // app/analytics/layouts.py (tests/e2e/test_dashboard.py checks they agree): they draw the keys the typist has
  // not pressed yet; keys with data are placed by the API's row / x. This object is JSON.
  const LAYOUT_ROWS = {
    "qwerty": [
      "`~ 1! 2@ 3# 4$ 5% 6^ 7& 8* 9( 0) -_ =+",
      "q w e r t y u i o p [{ ]} \\|",
      "a s d f g h j k l ;: '\"",
      "z x c v b n m ,< .> /?"
    ],
    "qwertz": [
      "^° 1! 2\" 3§ 4$ 5% 6& 7/ 8( 9) 0= ß? ´`",
      "q w e r t z u i o p ü +* #'",
      "a s d f g h j k l ö ä",
      "y x c v b n m ,; .: -_"
    ],
    "azerty": [
      "² &1 é2 \"3 '4 (5 -6 è7 _8 ç9 à0 )° =+",
      "a z e r t y u i o p ^¨ $£ *µ",
      "q s d f g h j k l m ù%",
      "w x c v b n ,? ;. :/ !§"
    ],
    "dvorak": [
      "`~ 1! 2@ 3# 4$ 5% 6^ 7& 8* 9( 0) [{ ]}",
      "'\" ,< .> p y f g c r l /? =+ \\|",
      "a o e u i d h t n s -_",
      ";: q j k x b m w v z"
    ],
    "colemak": [
      "`~ 1! 2@ 3# 4$ 5% 6^ 7& 8* 9( 0) -_ =+",
      "q w f p g j l u y ;: [{ ]} \\|",
      "a r s t d h n e i o '\"",
      "z x c v b k m ,< .> /?"
    ]
  };
  const ROW_OFFSETS = [0, 1.5, 1.75, 2.25]; // left edge of each row's first character key, in key widths
  const SPACE_SPAN = [3.75, 10]; // the spacebar, in key widths
  const BOARD_WIDTH = 15;
  const KEY = 40; // pixels per key width in the SVG's coordinates
  const GAP = 4;

  const $ = (id) => document.getElementById(id);

  const state = {
    token: null,
    userId: null, // digits as text: ids go up to 2^63 − 1, beyond JavaScript's exact integers
    insights: null,
    keyTable: null,
    progress: null,
    trajectory: null,
    metric: "time",
    practice: null,
    polling: null,
    session: 0, // bumped on every sign-in and sign-out: answers for an older session are dropped
  };

  // ---- formatting ---------------------------------------------------------------------------------------

  const fmt = {
    ms: (v) => (v == null ? "–" : `${Math.round(v)} ms`),
    pct: (v, digits = 1) => (v == null ? "–" : `${(100 * v).toFixed(digits)} %`),
    num: (v, digits = 0) => (v == null ? "–" : Number(v).toFixed(digits)),
    unit: (u) => (u === " " ? "space" : u.replace(/ /g, "␣")),
  };

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === "text") node.textContent = value;
      else if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value !== null && value !== undefined) node.setAttribute(name, value);
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setStatus(text) {
    $("status").textContent = text || "";
  }

  // ---- token and sign-in --------------------------------------------------------------------------------

  function base64UrlDecode(text) {
    const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    const binary = atob(padded);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return new TextDecoder().decode(bytes);
  }

  // The token's payload, read without verifying the signature (the API verifies it on every call).
  function readToken(token) {
    const parts = token.trim().split(".");
    if (parts.length !== 3) throw new Error("That does not look like an access token (eyJ….….…).");
    let json, payload;
    try {
      json = base64UrlDecode(parts[1]);
      payload = JSON.parse(json);
    } catch (e) {
      throw new Error("The token is damaged: its payload cannot be read.");
    }
    // A JWT: the user id is the subject, a string of digits (so large ids keep every digit).
    const uid = /^([1-9]\d*)$/.exec(typeof payload.sub === "string" ? payload.sub : "");
    if (payload.scope === "admin" || !uid) throw new Error("This is not a user token: it names no user.");
    if (typeof payload.exp === "number" && payload.exp * 1000 <= Date.now()) {
      throw new Error("This token has expired. Ask your typing platform for a new one.");
    }
    return { userId: uid[1], exp: payload.exp };
  }

  function takeTokenFromUrl() {
    const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
    if (!match) return false;
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    // The token must not stay in the address bar, the history or a bookmark.
    history.replaceState(null, "", window.location.pathname + window.location.search);
    return true;
  }

  function forgetUser() {
    stopPolling();
    state.session += 1;
    state.insights = state.keyTable = state.progress = state.trajectory = null;
    resetPractice(null);
  }

  function showSignIn(message) {
    forgetUser();
    state.token = state.userId = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("dashboard").hidden = true;
    $("session").hidden = true;
    $("signin").hidden = false;
    $("signin-message").textContent = message || "";
    $("token-input").focus();
  }

  function signIn(token) {
    let who;
    try {
      who = readToken(token);
    } catch (error) {
      showSignIn(error.message);
      return;
    }
    forgetUser();
    state.token = token.trim();
    state.userId = who.userId;
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $("signin").hidden = true;
    $("dashboard").hidden = false;
    $("session").hidden = false;
    $("user-label").textContent = `User ${who.userId}`;
    loadAll().then(() => loadPractice());
  }

  // ---- API ----------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message, retryAfter) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && typeof body.error === "object") return body.error.message || body.error.code;
      return body.detail || body.error || response.statusText;
    } catch (e) {
      return response.statusText || `HTTP ${response.status}`;
    }
  }

  // The parsed JSON of a call; null for 404 when `allow404`; an ApiError otherwise. 401 signs out.
  async function api(path, { method = "GET", body = null, allow404 = false } = {}) {
    const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
    if (body !== null) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body, cache: "no-cache" });
    if (response.ok) return response.json();
    if (response.status === 404 && allow404) return null;
    const message = await errorMessage(response);
    if (response.status === 401) {
      showSignIn(`Please sign in again: ${message}`);
    }
    throw new ApiError(response.status, message, Number(response.headers.get("Retry-After")) || null);
  }

  const userPath = (read) => `/v1/users/${state.userId}/${read}`;

  // ---- loading the panels -------------------------------------------------------------------------------

  async function loadAll() {
    const session = state.session;
    setStatus("Loading your analytics…");
    try {
      const [insights, keyTable, progress] = await Promise.all([
        api(userPath("insights"), { allow404: true }),
        api(userPath("keys"), { allow404: true }),
        api(userPath("progress"), { allow404: true }),
      ]);
      if (session !== state.session) return;
      state.insights = insights;
      state.keyTable = keyTable;
      state.progress = progress;
      // The trajectory model's forecast; none until a model is promoted (503), so it never holds the panels up.
      state.trajectory = await api(userPath("trajectory?tests=20"), { allow404: true }).catch(() => null);
      if (session !== state.session) return;
      setStatus(insights ? "" : "No tests yet: type one below.");
      renderSummary();
      renderHeatmap();
      renderCharts();
      renderWeakSpots();
      renderRecommendations();
    } catch (error) {
      if (error.status !== 401) setStatus(`Could not load your analytics: ${error.message}`);
    }
  }

  function layoutName() {
    return (state.insights && state.insights.layout) || (state.keyTable && state.keyTable.layout) || "qwerty";
  }

  function renderSummary() {
    const insights = state.insights;
    $("test-count").textContent = insights ? String(insights.test_count) : "0";
    $("mean-wpm").textContent = insights ? fmt.num(insights.mean_wpm, 1) : "–";
    $("mean-accuracy").textContent = insights ? fmt.pct(insights.mean_accuracy) : "–";
    const health = insights && insights.health;
    $("health-score").textContent = health && health.score != null ? `${Math.round(health.score)}/100` : "–";
    $("summary-note").textContent = health && health.score != null ? `Health score: ${health.note}.` : "";
  }

  // ---- heatmap ------------------------------------------------------------------------------------------

  // The physical keys of the layout: {id, label, chars, row, x, width}, from the legends and the API rows.
  function boardKeys(layout, rows) {
    const keys = new Map();
    const legends = LAYOUT_ROWS[layout] || LAYOUT_ROWS.qwerty;
    legends.forEach((line, row) => {
      line.split(" ").forEach((legend, column) => {
        const chars = [...legend];
        const shifted = chars.length > 1 ? chars[1] : chars[0].toUpperCase();
        keys.set(`${row}:${column}`, {
          id: chars[0], label: chars[0], chars: new Set([chars[0], shifted]), row, x: ROW_OFFSETS[row] + column + 0.5,
          width: 1, rows: [],
        });
      });
    });
    keys.set("4:0", { id: " ", label: "space", chars: new Set([" "]), row: 4, x: (SPACE_SPAN[0] + SPACE_SPAN[1]) / 2,
      width: SPACE_SPAN[1] - SPACE_SPAN[0], rows: [] });
    for (const entry of rows) {
      if (entry.row == null || entry.column == null) continue;
      const id = `${entry.row}:${entry.column}`;
      let key = keys.get(id);
      if (!key) {
        key = { id: entry.key.toLowerCase(), label: entry.key, chars: new Set(), row: entry.row, x: entry.x, width: 1, rows: [] };
        keys.set(id, key);
      }
      if (entry.x != null) key.x = entry.x;
      key.chars.add(entry.key);
      key.rows.push(entry);
    }
    return [...keys.values()];
  }

  // Presses, errors and times of one physical key, its characters ('t' and 'T') pooled.
  function pooled(rows) {
    const out = { presses: 0, errors: 0, timed: 0, timeSum: 0, holdSum: 0, holdN: 0 };
    for (const r of rows) {
      out.presses += r.presses;
      out.errors += r.errors;
      if (r.mean_time_to_type_ms != null) {
        out.timed += r.timed_presses;
        out.timeSum += r.mean_time_to_type_ms * r.timed_presses;
      }
      if (r.mean_hold_ms != null) {
        out.holdSum += r.mean_hold_ms * r.presses;
        out.holdN += r.presses;
      }
    }
    out.errorRate = out.presses ? out.errors / out.presses : null;
    out.meanTime = out.timed ? out.timeSum / out.timed : null;
    out.meanHold = out.holdN ? out.holdSum / out.holdN : null;
    return out;
  }

  function metricValue(stats) {
    if (stats.presses < MIN_PRESSES) return null;
    return state.metric === "time" ? stats.meanTime : stats.errorRate;
  }

  function median(values) {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }

  // Where a key's value sits on the colour ramp, 0 (green) to 1 (red), relative to the typist's own keys: a
  // time from 0.7× to 1.6× their median key's (log scale), an error rate from 0 to 2.5× their overall
  // rate (at least 5 %). One very slow key then stands out without washing every other key to green.
  function heatScale(allStats) {
    const enough = allStats.filter((s) => s.presses >= MIN_PRESSES);
    if (state.metric === "time") {
      const times = enough.map((s) => s.meanTime).filter((v) => v != null);
      if (!times.length) return null;
      const m = median(times);
      const [lo, hi] = [0.7 * m, 1.6 * m];
      return { lo, hi, at: (v) => Math.log(v / lo) / Math.log(hi / lo), format: fmt.ms };
    }
    const presses = allStats.reduce((n, s) => n + s.presses, 0);
    if (!enough.length || !presses) return null;
    const rate = allStats.reduce((n, s) => n + s.errors, 0) / presses;
    const hi = Math.max(2.5 * rate, 0.05);
    return { lo: 0, hi, at: (v) => v / hi, format: (v) => fmt.pct(v, 0) };
  }

  // Green (fast, accurate) through amber to red, for t in [0, 1].
  function heatColour(t) {
    const stops = [[46, 158, 91], [242, 201, 76], [214, 69, 69]];
    const scaled = Math.min(Math.max(t, 0), 1) * 2;
    const i = Math.min(Math.floor(scaled), 1);
    const f = scaled - i;
    const [a, b] = [stops[i], stops[i + 1]];
    return `rgb(${a.map((c, k) => Math.round(c + (b[k] - c) * f)).join(",")})`;
  }

  function slowestPairs(key) {
    const pairs = (state.keyTable && state.keyTable.pairs) || [];
    return pairs
      .filter((p) => p.timed_presses >= MIN_PRESSES && p.mean_time_to_type_ms != null && [...p.key].some((c) => key.chars.has(c)))
      .sort((a, b) => b.mean_time_to_type_ms - a.mean_time_to_type_ms)
      .slice(0, 3);
  }

  function weakKeySet() {
    return new Set(((state.insights && state.insights.weak_keys) || []).map((u) => u.key));
  }

  function renderHeatmap() {
    const board = $("heatmap");
    board.replaceChildren();
    const rows = (state.keyTable && state.keyTable.keys) || [];
    const keys = boardKeys(layoutName(), rows);
    const weak = weakKeySet();
    const stats = new Map(keys.map((k) => [k, pooled(k.rows)]));
    const scale = heatScale([...stats.values()]);

    board.setAttribute("viewBox", `0 0 ${BOARD_WIDTH * KEY} ${5 * KEY}`);
    drawModifiers(board, keys);
    for (const key of keys.sort((a, b) => a.row - b.row || a.x - b.x)) {
      const s = stats.get(key);
      const value = scale ? metricValue(s) : null;
      const isWeak = [...key.chars].some((c) => weak.has(c));
      const left = (key.x - key.width / 2) * KEY + GAP / 2;
      const top = key.row * KEY + GAP / 2;
      const described = value == null ? "not enough data" : state.metric === "time" ? fmt.ms(value) : `${fmt.pct(value)} errors`;
      const group = svg("g", {
        class: `key${isWeak ? " weak" : ""}${value == null ? " no-data" : ""}`,
        "data-key": key.id,
        "data-weak": isWeak ? "true" : "false",
        tabindex: "0",
        role: "button",
        "aria-label": `${fmt.unit(key.id)}: ${described}${isWeak ? ", weak key" : ""}`,
        "aria-describedby": "key-tooltip",
      });
      group.append(svg("rect", {
        x: left, y: top, width: key.width * KEY - GAP, height: KEY - GAP, rx: 6,
        fill: value == null ? "var(--no-data)" : heatColour(scale.at(value)),
      }));
      group.append(svg("text", { x: left + (key.width * KEY - GAP) / 2, y: top + (KEY - GAP) / 2 + 5, "text-anchor": "middle" },
        key.label));
      if (isWeak) group.append(svg("circle", { cx: left + key.width * KEY - GAP - 7, cy: top + 7, r: 3.5, class: "weak-dot" }));
      const show = () => showKeyTooltip(key, s, group);
      group.addEventListener("mouseenter", show);
      group.addEventListener("focus", show);
      group.addEventListener("mouseleave", hideKeyTooltip);
      group.addEventListener("blur", hideKeyTooltip);
      board.append(group);
    }
    renderLegend(scale);
  }

  // The modifier keys, for the keyboard's outline only (no data: the API times characters).
  function drawModifiers(board, keys) {
    const rowEnd = (row) => Math.max(...keys.filter((k) => k.row === row).map((k) => k.x + k.width / 2));
    const modifiers = [
      [0, rowEnd(0), BOARD_WIDTH, "⌫"], [1, 0, ROW_OFFSETS[1], "tab"], [2, 0, ROW_OFFSETS[2], "caps"],
      [2, rowEnd(2), BOARD_WIDTH, "enter"], [3, 0, ROW_OFFSETS[3], "shift"], [3, rowEnd(3), BOARD_WIDTH, "shift"],
    ];
    for (const [row, from, to, label] of modifiers) {
      if (to - from < 0.5) continue;
      const g = svg("g", { class: "modifier", "aria-hidden": "true" });
      g.append(svg("rect", { x: from * KEY + GAP / 2, y: row * KEY + GAP / 2, width: (to - from) * KEY - GAP, height: KEY - GAP, rx: 6 }));
      g.append(svg("text", { x: ((from + to) / 2) * KEY, y: row * KEY + KEY / 2 + 4, "text-anchor": "middle" }, label));
      board.append(g);
    }
  }

  function renderLegend(scale) {
    const legend = $("heatmap-legend");
    legend.replaceChildren();
    if (!scale) {
      legend.textContent = "No key data yet.";
      return;
    }
    legend.append(el("span", { text: `≤ ${scale.format(scale.lo)}` }), el("span", { class: "legend-bar" }),
      el("span", { text: `≥ ${scale.format(scale.hi)}` }), el("span", { class: "legend-none", text: "not enough data" }));
  }

  function showKeyTooltip(key, s, group) {
    const tip = $("key-tooltip");
    tip.replaceChildren();
    const weak = (state.insights && state.insights.weak_keys || []).find((u) => key.chars.has(u.key));
    tip.append(el("strong", { text: fmt.unit(key.id) }));
    if (!s.presses) {
      tip.append(el("p", { text: "Not typed yet." }));
    } else {
      const typed = key.rows.flatMap((r) => r.typed_instead || []).sort((a, b) => b.count - a.count).slice(0, 3);
      const medians = key.rows.filter((r) => r.median_time_to_type_ms != null);
      const lines = [
        ["Presses", String(s.presses)],
        ["Errors", `${s.errors} (${fmt.pct(s.errorRate)})`],
        ["Mean time to type", fmt.ms(s.meanTime)],
        ["Median / p95", medians.length === 1 ? `${fmt.ms(medians[0].median_time_to_type_ms)} / ${fmt.ms(medians[0].p95_time_to_type_ms)}` : null],
        ["Hold", fmt.ms(s.meanHold)],
        ["Typed instead", typed.length ? typed.map((t) => `${fmt.unit(t.typed)} ×${t.count}`).join(", ") : null],
      ];
      const dl = el("dl");
      for (const [name, value] of lines) {
        if (value != null) dl.append(el("dt", { text: name }), el("dd", { text: value }));
      }
      tip.append(dl);
      const pairs = slowestPairs(key);
      if (pairs.length) {
        tip.append(el("p", { class: "tip-sub", text: "Slowest pairs" }));
        const ul = el("ul");
        for (const p of pairs) ul.append(el("li", { text: `${fmt.unit(p.key)} ${fmt.ms(p.mean_time_to_type_ms)} · ${fmt.pct(p.error_rate, 0)} errors` }));
        tip.append(ul);
      }
    }
    if (weak) tip.append(el("p", { class: "tip-weak", text: weak.reason }));
    // Place it beside the key, inside the heatmap's box.
    const wrap = $("heatmap-wrap").getBoundingClientRect();
    const box = group.getBoundingClientRect();
    tip.hidden = false;
    const left = Math.min(box.left - wrap.left, wrap.width - tip.offsetWidth - 4);
    tip.style.left = `${Math.max(left, 4)}px`;
    tip.style.top = `${box.bottom - wrap.top + 6}px`;
  }

  function hideKeyTooltip() {
    $("key-tooltip").hidden = true;
  }

  // ---- trend charts -------------------------------------------------------------------------------------

  function lineChart(target, points, { format, min, max, label }) {
    const width = 320, height = 150, pad = { left: 44, right: 12, top: 12, bottom: 24 };
    target.replaceChildren();
    target.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const data = points.filter((p) => p.y != null);
    if (!data.length) {
      target.setAttribute("aria-label", `${label}: no data yet`);
      target.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, "No data yet"));
      return;
    }
    const ys = data.map((p) => p.y);
    let lo = min != null ? Math.min(min, ...ys) : Math.min(...ys);
    let hi = max != null ? Math.max(max, ...ys) : Math.max(...ys);
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const t0 = data[0].x.getTime(), t1 = data[data.length - 1].x.getTime();
    const sx = (t) => pad.left + (t1 === t0 ? 0.5 : (t - t0) / (t1 - t0)) * (width - pad.left - pad.right);
    const sy = (v) => pad.top + (1 - (v - lo) / (hi - lo)) * (height - pad.top - pad.bottom);
    for (const v of [lo, (lo + hi) / 2, hi]) {
      target.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: sy(v), y2: sy(v), class: "grid" }));
      target.append(svg("text", { x: pad.left - 6, y: sy(v) + 4, "text-anchor": "end", class: "axis" }, format(v)));
    }
    const day = (d) => d.toISOString().slice(5, 10);
    target.append(svg("text", { x: pad.left, y: height - 6, class: "axis" }, day(data[0].x)));
    if (data.length > 1) target.append(svg("text", { x: width - pad.right, y: height - 6, "text-anchor": "end", class: "axis" }, day(data[data.length - 1].x)));
    target.append(svg("polyline", { points: data.map((p) => `${sx(p.x.getTime())},${sy(p.y)}`).join(" "), class: "line" }));
    for (const p of data) {
      const dot = svg("circle", { cx: sx(p.x.getTime()), cy: sy(p.y), r: 3, class: "dot" });
      dot.append(svg("title", {}, `${p.x.toISOString().slice(0, 10)}: ${format(p.y)} (${p.tests} test${p.tests === 1 ? "" : "s"})`));
      target.append(dot);
    }
    const last = data[data.length - 1];
    target.setAttribute("aria-label",
      `${label} over ${data.length} day${data.length === 1 ? "" : "s"}: from ${format(data[0].y)} to ${format(last.y)}, range ${format(Math.min(...ys))} to ${format(Math.max(...ys))}`);
  }

  function renderCharts() {
    const daily = (state.progress && state.progress.daily) || [];
    const series = (field) => daily.map((d) => ({ x: new Date(`${d.day}T00:00:00Z`), y: d[field], tests: d.tests }));
    lineChart($("chart-wpm"), series("wpm"), { format: (v) => v.toFixed(0), min: 0, label: "Speed in WPM" });
    lineChart($("chart-accuracy"), series("accuracy"), { format: (v) => `${(100 * v).toFixed(0)}%`, max: 1, label: "Accuracy" });
    lineChart($("chart-health"), series("health_score"), { format: (v) => v.toFixed(0), min: 0, max: 100, label: "Health score" });
    const notes = [];
    const p = state.progress;
    if (p && p.trend && p.trend.wpm_per_test != null) notes.push(`Trend ${p.trend.wpm_per_test >= 0 ? "+" : ""}${p.trend.wpm_per_test.toFixed(2)} WPM per test.`);
    const forecast = p && p.forecast;
    if (forecast && forecast.sessions_to_target === 0) notes.push(`You are at your ${forecast.target_wpm} WPM target.`);
    else if (forecast && forecast.sessions_to_target != null) notes.push(`About ${forecast.sessions_to_target} more tests to ${forecast.target_wpm} WPM.`);
    const t = state.trajectory;
    const ahead = t && t.points && t.points[t.points.length - 1];
    if (ahead) notes.push(`Predicted after ${ahead.test} more tests: ${ahead.wpm.toFixed(0)} WPM (80 % likely ${ahead.low.toFixed(0)}–${ahead.high.toFixed(0)}; model ${t.model_version}).`);
    if (p && p.streaks && p.streaks.current_days) notes.push(`Streak: ${p.streaks.current_days} day${p.streaks.current_days === 1 ? "" : "s"}.`);
    $("progress-note").textContent = notes.join(" ");
  }

  // ---- weak spots and recommendations -------------------------------------------------------------------

  function renderUnits(list, units, empty) {
    list.replaceChildren();
    if (!units.length) {
      list.append(el("li", { class: "empty", text: empty }));
      return;
    }
    for (const unit of units) {
      list.append(el("li", { "data-unit": unit.key },
        el("span", { class: "unit-name", text: fmt.unit(unit.key) }),
        el("span", { class: "unit-reason", text: unit.reason || "" })));
    }
  }

  function renderWeakSpots() {
    const insights = state.insights;
    renderUnits($("weak-keys"), (insights && insights.weak_keys) || [], insights ? "No weak keys: nice." : "Type a test to find out.");
    renderUnits($("weak-pairs"), (insights && insights.weak_pairs) || [], insights ? "No weak letter pairs." : "Type a test to find out.");
  }

  function renderRecommendations() {
    const list = $("recommendations");
    list.replaceChildren();
    const items = (state.insights && state.insights.recommendations) || [];
    if (!items.length) {
      list.append(el("li", { class: "empty", text: state.insights ? "Nothing to add yet." : "Your advice appears after your first test." }));
      return;
    }
    for (const item of [...items].sort((a, b) => a.priority - b.priority)) {
      list.append(el("li", { "data-kind": item.kind }, el("strong", { text: item.title }), el("p", { text: item.detail })));
    }
  }

  // ---- practice -----------------------------------------------------------------------------------------

  const LIVE_HINTS_SHOWN = 3;

  async function loadPractice() {
    if (!state.token) return;
    const session = state.session;
    const input = $("practice-input");
    resetPractice(null);
    $("practice-status").textContent = "Fetching a passage…";
    try {
      const passage = await api(`${userPath("practice-text")}?words=${PRACTICE_WORDS}`);
      if (session !== state.session) return;
      resetPractice(passage);
      const targets = passage.targets.map(fmt.unit);
      const generator = $("practice-generator");
      generator.textContent = GENERATOR_LABELS[passage.generator] || passage.generator;
      generator.dataset.generator = passage.generator;
      generator.hidden = false;
      $("practice-targets").textContent = targets.length
        ? `This passage drills ${targets.join(", ")}.`
        : "A passage of common words.";
      $("practice-status").textContent = "";
      input.disabled = false;
    } catch (error) {
      if (error.status !== 401) $("practice-status").textContent = `Could not fetch a passage: ${error.message}`;
    }
  }

  function resetPractice(drill) {
    const old = state.practice;
    if (old) {
      old.recorder.detach();
      if (old.live) old.live.close();
    }
    const input = $("practice-input");
    state.practice = drill && {
      text: drill.text,
      chars: [...drill.text], // by code point, as the API counts characters
      recorder: new KeystrokeRecorder(input, { onChange: onPracticeChange }),
      live: null, // the /v1/live session; null when it could not be opened (the test is then POSTed)
      answer: null, // its latest live answer
      hints: [],
      done: false,
      submission: null,
    };
    if (!drill) $("practice-generator").hidden = true;
    input.value = "";
    input.readOnly = false;
    input.disabled = !drill;
    $("practice-retry").hidden = true;
    renderPassage();
    if (state.practice) startLive(state.practice);
  }

  function startLive(p) {
    const url = `${location.origin.replace(/^http/, "ws")}/v1/live`;
    const live = new LiveFeedback(p.recorder, {
      url, token: state.token, userId: state.userId, text: p.text, layout: layoutName(),
    });
    live.onReady = (ready) => {
      if (state.practice === p) markSlowSpots(p, ready.expect);
    };
    live.onLive = (answer) => {
      if (state.practice !== p) return;
      p.answer = answer;
      if (answer.hints.length) p.hints = [...answer.hints.slice().reverse(), ...p.hints].slice(0, LIVE_HINTS_SHOWN);
      renderLiveStats();
    };
    live.onClose = () => {
      if (state.practice === p && !p.done) p.live = null;
    };
    p.live = live;
    live.open().catch(() => {
      if (state.practice === p) p.live = null;
    });
  }

  // Underline where the typist is expected to slow down (the `expect` of the live session's `ready`).
  function markSlowSpots(p, spots) {
    if (!p.spans) return;
    for (const spot of spots) {
      for (let i = spot.position; i < spot.position + [...spot.chars].length && i < p.spans.length; i++) {
        p.spans[i].dataset.slow = spot.kind;
      }
    }
  }

  function onPracticeChange() {
    const p = state.practice;
    if (!p) return;
    renderPassage();
    if (!p.done && p.recorder.typed.length >= p.chars.length) finishPractice();
  }

  // The passage as one span per character, classed ok / wrong / current / todo; only the spans around the
  // typing position change on a key press.
  function renderPassage() {
    const p = state.practice;
    const box = $("practice-text");
    if (!p) {
      box.replaceChildren();
      $("practice-plain").textContent = "";
      renderLiveStats();
      return;
    }
    const { chars } = p;
    const typed = p.recorder.typed;
    if (!p.spans) {
      p.spans = chars.map((c) => el("span", { text: c }));
      box.replaceChildren(...p.spans);
      $("practice-plain").textContent = p.text;
      p.shown = chars.length;
    }
    const from = Math.max(0, Math.min(p.shown, typed.length) - 1);
    const to = Math.min(chars.length, Math.max(p.shown, typed.length) + 1);
    for (let i = from; i < to; i++) {
      let cls = "todo";
      if (i < typed.length) cls = typed[i] === chars[i] ? "ok" : "wrong";
      else if (i === typed.length) cls = "todo current";
      p.spans[i].className = cls;
    }
    p.shown = typed.length;
    const done = Math.min(typed.length, chars.length);
    const progress = $("practice-progress");
    progress.max = chars.length;
    progress.value = done;
    $("practice-progress-text").textContent = `${done} of ${chars.length} characters`;
    renderLiveStats();
  }

  // keyscope's live numbers and hints once an answer has come; until then (or without a live session), the
  // page's own count.
  function renderLiveStats() {
    const p = state.practice;
    const live = $("practice-live");
    const hints = $("practice-hints");
    if (!p || p.recorder.t0 === null) {
      live.textContent = "";
      delete live.dataset.source;
      hints.replaceChildren();
      return;
    }
    const a = p.answer;
    if (a) {
      live.dataset.source = "live";
      live.textContent = `${fmt.num(a.wpm)} WPM · ${fmt.pct(a.accuracy, 0)} right · health ${fmt.num(a.health)}`;
    } else {
      const strokes = p.recorder.strokes;
      const minutes = strokes[strokes.length - 1].down / 60000;
      const typed = p.recorder.typed;
      const correct = typed.filter((c, i) => c === p.chars[i]).length;
      const wpm = minutes > 0 ? (typed.length / 5) / minutes : null;
      live.dataset.source = "page";
      live.textContent = `${wpm == null ? "–" : wpm.toFixed(0)} WPM · ${fmt.pct(typed.length ? correct / typed.length : null, 0)} right`;
    }
    hints.replaceChildren(...p.hints.map((h) => el("li", { "data-kind": h.kind, title: evidenceText(h.evidence), text: h.message })));
  }

  function evidenceText(evidence) {
    return Object.entries(evidence).filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${v}`).join(", ");
  }

  async function finishPractice() {
    const p = state.practice;
    p.done = true;
    p.recorder.enabled = false;
    $("practice-input").readOnly = true;
    await p.recorder.released(RELEASE_WAIT_MS);
    p.submission = p.recorder.submission({
      userId: state.userId, text: p.text, layout: layoutName(), testId: p.live && p.live.testId,
    });
    await submitPractice();
  }

  async function submitPractice() {
    const p = state.practice;
    const status = $("practice-status");
    $("practice-retry").hidden = true;
    status.textContent = "Sending your test…";
    const before = state.insights ? state.insights.test_count : 0;
    if (p.live) {
      try {
        const testId = await p.live.end(); // submitted by keyscope from the streamed keys
        status.textContent = "Submitted — your insights update in a few seconds.";
        status.dataset.testId = testId;
        pollForTest(before);
        return;
      } catch (error) {
        p.live = null; // POST it instead, under the same test id: if `end` did reach keyscope, nothing is stored twice
      }
    }
    try {
      const queued = await api("/v1/tests", { method: "POST", body: p.submission });
      status.textContent = "Submitted — your insights update in a few seconds.";
      status.dataset.testId = queued.test_id;
      pollForTest(before);
    } catch (error) {
      if (error.status === 401) return;
      const why = {
        403: "This sign-in may not submit tests.",
        413: "The test is too large to submit.",
        422: `The test was refused: ${error.message}`,
        429: "Too many requests: wait a moment and send again.",
        503: "keyscope is busy right now: send again in a few seconds.",
      }[error.status] || `Could not submit the test: ${error.message}`;
      status.textContent = why;
      if (error.status !== 403 && error.status !== 413 && error.status !== 422) $("practice-retry").hidden = false;
    }
  }

  function stopPolling() {
    if (state.polling) clearTimeout(state.polling.timer);
    state.polling = null;
  }

  // Re-read the insights until they count the new test, then refresh every panel and offer a new passage.
  function pollForTest(before) {
    stopPolling();
    const deadline = Date.now() + POLL_TIMEOUT_MS;
    const poll = { timer: null };
    state.polling = poll;
    const tick = async () => {
      if (state.polling !== poll) return;
      let delay = POLL_INTERVAL_MS;
      try {
        const insights = await api(userPath("insights"), { allow404: true });
        if (insights && insights.test_count > before) {
          state.polling = null;
          await loadAll();
          $("practice-status").textContent = `Your insights now include this test (${insights.test_count} tests).`;
          await loadPractice();
          $("practice-status").textContent = `Your insights now include this test (${insights.test_count} tests). Here is a new passage.`;
          return;
        }
      } catch (error) {
        if (error.status === 401) return;
        if (error.retryAfter) delay = error.retryAfter * 1000;
      }
      if (Date.now() > deadline) {
        state.polling = null;
        $("practice-status").textContent = "Your test is still being processed: reload the page in a while.";
        return;
      }
      poll.timer = setTimeout(tick, delay);
    };
    poll.timer = setTimeout(tick, POLL_INTERVAL_MS);
  }

  // ---- wiring -------------------------------------------------------------------------------------------

  function start() {
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      signIn($("token-input").value);
    });
    $("sign-out").addEventListener("click", () => showSignIn("Signed out."));
    for (const radio of document.querySelectorAll('input[name="heat-metric"]')) {
      radio.addEventListener("change", () => {
        state.metric = radio.value;
        renderHeatmap();
      });
    }
    $("practice-new").addEventListener("click", () => loadPractice());
    $("practice-retry").addEventListener("click", () => submitPractice());

    // A link with a new token opened in this tab changes only the fragment: sign in with it.
    window.addEventListener("hashchange", () => {
      if (takeTokenFromUrl()) signIn(sessionStorage.getItem(TOKEN_KEY));
    });
    takeTokenFromUrl();
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) signIn(token);
    else showSignIn("");
  }

  start();
})();
