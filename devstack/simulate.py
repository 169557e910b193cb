"""Seeded typist simulator: typing-test submissions with human-like timing, rollover, slips and corrections.

Each simulated typist (a TypistProfile) is drawn from the published distributions in typing-facts.md
(Dhakal et al., CHI 2018): speed, key-hold time, rollover and error habits. A test types one to three
built-in English sentences press by press:

- inter-key intervals (IKI) are log-normal around a per-user median set by the user's WPM, faster for
  letter pairs on alternating hands than on the same hand (144 vs 176 ms population medians), with
  occasional pauses;
- holds are log-normal around the user's hold median; the next key goes down before the previous one is
  released (rollover) in the user's share of presses;
- a slip presses a neighbouring key on the user's layout; most slips are noticed after 0-2 more
  characters and fixed with the right number of Backspaces, the rest stay in the text;
- capitals and other shifted characters are typed with Shift held across the key.

With `traits=True` (the data the models learn from) each typist also has the structure real typists show
and the models must find; without it the output is exactly what it always was:

- letter pairs that are persistently slow for this typist (`pair_factors`) and keys this typist gets wrong more
  often than their overall slip rate says (`key_error_factors`);
- a power-law practice curve (Newell & Rosenbloom, 1981: time per action falls as a power of the practice
  count): each test's intervals are `floor + (1 - floor) · (n + 1)^-rate` of the first test's, so speed rises
  quickly, then plateaus at `wpm / floor`; slower typists have more room to gain;
- within-test fatigue: intervals stretch by `fatigue` per 100 characters typed;
- day-to-day form: one log-normal factor per test on every interval.

Everything comes from numpy Generators seeded per user, so the same seed gives the same submissions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any

import numpy as np

from app.analytics.layouts import KeyboardLayout, get_layout

BACKSPACE = "Backspace"
SHIFT = "Shift"

SENTENCES: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "A quiet morning by the river is worth more than gold.",
    "She packed her bags and left for the coast before dawn.",
    "Every good story needs a beginning, a middle and an end.",
    "The old clock in the hall had stopped at a quarter past nine.",
    "We walked along the narrow path until the trees grew thin.",
    "Bright stars filled the sky as the last train pulled away.",
    "He asked a simple question and waited for a quick reply.",
    "Fresh bread from the corner bakery smells better than anything else.",
    "The children built a small boat out of paper and string.",
    "Rain tapped softly on the window while the kettle began to sing.",
    "Nobody knew who had left the basket of apples on the step.",
    "The market was busy, loud and full of bright colors.",
    "Could you close the door on your way out, please?",
    "Learning to type well takes patience and steady practice.",
    "The queen's garden was famous for its roses and tall hedges.",
    "A gentle breeze carried the smell of salt across the harbor.",
    "They played cards by candlelight when the power went out.",
    "Our neighbor's dog barks at every bicycle that passes.",
    "The museum opens at ten and closes early on Sundays.",
    "Please write your name clearly at the top of each page.",
    "The mountain road twisted through forests of pine and birch.",
    "Why does the toast always land butter side down?",
    "Snow fell all night, and by morning the town was silent.",
    "The baker kneaded the dough and shaped it into round loaves.",
    "A squirrel darted across the square with an acorn in its mouth.",
    "The library was quiet except for the turning of pages.",
    "My grandfather kept every letter he ever received.",
    "The ship's captain studied the map by the light of a lamp.",
    "Fix the leaking tap before the kitchen floods again.",
    "The jazz band played late into the warm summer night.",
    "Those who plant trees rarely sit in their shade.",
    "Keep your wrists relaxed and let your fingers do the work.",
    "The experiment failed twice before it finally worked.",
    "Lunch was a bowl of soup, some cheese and a crisp apple.",
    "What a wonderful view there is from the top of the hill!",
    "The fox was quicker than the hounds and vanished into the hedge.",
    "Bring a warm coat; the evening air can be sharp in autumn.",
    "Her question puzzled the whole class for a minute or two.",
    "Two black cats slept on the sunny windowsill all afternoon.",
    "The well-known author signed copies at the bookshop on Friday.",
    "The train leaves at 7 and arrives by 9 in the evening.",
)

# --- Population parameters (typing-facts.md: Dhakal et al. 2018, recomputed on 2,329 participants) ---
WPM_MEAN, WPM_SD = 51.5, 20.5
WPM_RANGE = (15.0, 150.0)
# Per-user hold medians; with HOLD_SIGMA the per-user mean hold is ≈ 112.7 ± 21.5 ms and the pooled
# median ≈ 103 ms.
HOLD_MEDIAN_MEAN_MS, HOLD_MEDIAN_SD_MS = 103.0, 20.0
HOLD_MEDIAN_RANGE_MS = (50.0, 220.0)
HOLD_SIGMA = 0.35  # within one user; the pooled σ 0.40 also contains the spread between users
IKI_SIGMA = 0.50  # within one user; the pooled σ 0.69 also contains the spread of speeds
# Letter-pair medians 144 (alternating hands), 176 (same hand) and 157 ms (repeated key) as factors
# around a pair-neutral median.
ALTERNATING_FACTOR, SAME_HAND_FACTOR, REPEAT_FACTOR = 0.90, 1.10, 0.98
WORD_START_FACTOR = 1.15  # the first letter after a space waits on reading the next word
RETYPE_FACTOR = 1.25  # re-finding the place after a correction
NOTICE_FACTOR = 2.2  # the pause between a slip and its first Backspace
BACKSPACE_REPEAT_FACTOR = 0.65  # Backspace bursts are quick
PAUSE_PROBABILITY, PAUSE_MEDIAN_FACTOR, PAUSE_SIGMA = 0.02, 3.5, 0.5  # the heavy right tail of real IKIs
MIN_IKI_MS = 20.0
SHIFT_LEAD_RANGE = (0.3, 0.6)  # share of a shifted key's interval by which Shift goes down ahead of it
SHIFT_RELEASE_LAG_MS = (10.0, 60.0)  # Shift comes up after the key it shifted
ROLLOVER_OVERRUN_MS = (3.0, 40.0)  # how far a rolled-over hold outlasts the next press
MISSING_UP_SHARE = 0.01  # presses whose release the client lost (up is None)
# Slips: per-user rate with median SLIP_MEDIAN at WPM_MEAN (slower typists slip more), 82 % noticed, so
# uncorrected errors ≈ 1.2 % of characters. A noticed slip is seen after 0, 1 or 2 more characters.
SLIP_MEDIAN, SLIP_SIGMA, SLIP_RANGE = 0.058, 0.55, (0.005, 0.30)
CORRECTION_BETA = (16.0, 3.5)
NOTICE_LAG_PROBABILITIES = (0.45, 0.35, 0.20)
SAME_ROW_SLIP_WEIGHT = 3.0  # horizontal slips are commoner than slips to the row above or below
CONFUSION_PROBABILITY = 0.2  # chance that a presented character in `confusions` becomes its partner
# Rollover ≈ 0.22 ± 0.16: a user's share follows from hold vs IKI medians, but typists lift a key early
# when the next one is coming, so only ROLLOVER_SCALE of the independent-log-normal share (calibrated on
# the published mean), plus a personal habit.
ROLLOVER_SCALE, ROLLOVER_NOISE_SD, ROLLOVER_RANGE = 0.72, 0.06, (0.0, 0.85)
# --- Traits (traits=True): what makes one typist's tests predictable from their history ---
SLOW_PAIRS_PER_USER = (4, 10)  # how many letter pairs are persistently slow for one typist
SLOW_PAIR_FACTOR = (1.3, 2.2)  # how much slower (× the interval before the pair's second key)
ERROR_PRONE_KEYS_PER_USER = (2, 6)
ERROR_PRONE_FACTOR = (2.0, 5.0)  # × the typist's slip rate on that key
# Practice: plateau WPM = wpm + headroom, headroom ~ U(range) × (WPM_MEAN / wpm)^0.5 (beginners gain more);
# the power-law exponent of the curve.
PRACTICE_HEADROOM_WPM = (4.0, 30.0)
PRACTICE_RATE = (0.25, 0.6)
FATIGUE_PER_100_CHARS = (0.0, 0.05)  # interval stretch per 100 characters typed in one test
DAY_FORM_SIGMA = (0.03, 0.09)  # σ of the per-test log-normal speed factor
# Common English letter pairs: where a typist's slow pairs come from (they must occur in real text).
COMMON_PAIRS: tuple[str, ...] = (
    "th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of", "ed", "is", "it",
    "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le", "ve", "co", "me", "de", "hi", "ri",
    "ro", "ic", "ne", "ea", "ra", "ce", "li", "ch", "ll", "be", "ma", "si", "om", "ur",
)
ERROR_PRONE_CANDIDATES = "etaoinshrdlcumwfgypbvk"

LAYOUT_SHARES = {"qwerty": 0.80, "qwertz": 0.07, "azerty": 0.06, "dvorak": 0.04, "colemak": 0.03}

_MEAN_NOTICE_LAG = sum(lag * p for lag, p in enumerate(NOTICE_LAG_PROBABILITIES))
# Mean of the per-press interval factors over English text relative to the pair-neutral median; keeps a
# profile's WPM equal to the WPM its tests score (checked by the tests).
_CONTEXT_FACTOR_MEAN = 1.02
_PAUSE_MEAN = 1 + PAUSE_PROBABILITY * (PAUSE_MEDIAN_FACTOR * math.exp(PAUSE_SIGMA**2 / 2) - 1)

_CHAR, _RETYPE, _NOTICE, _BACKSPACE_REPEAT = 0, 1, 2, 3  # press kinds, for their intervals


@dataclass
class TypistProfile:
    """One simulated typist's habits."""

    user_id: int
    wpm: float  # the speed this typist's tests score, errors and corrections included
    hold_median_ms: float  # median key-press duration
    rollover: float  # share of presses that go down before the previous key is released
    error_rate: float  # chance of a slip per presented character
    correction_rate: float  # chance that a slip is noticed and corrected
    layout: str = "qwerty"
    slow_keys: dict[str, float] = field(default_factory=dict)  # key → multiplier on the IKI before it
    confusions: dict[str, str] = field(default_factory=dict)  # presented char → char typed instead
    # Traits (module docstring); the defaults leave a typist without them.
    pair_factors: dict[str, float] = field(default_factory=dict)  # "th" → multiplier on the IKI before the 'h'
    key_error_factors: dict[str, float] = field(default_factory=dict)  # key → multiplier on the slip rate
    practice_floor: float = 1.0  # the plateau's intervals as a share of the first test's (1 = no learning)
    practice_rate: float = 0.0  # the power-law exponent of the practice curve
    fatigue: float = 0.0  # interval stretch per 100 characters typed in one test
    day_sigma: float = 0.0  # σ of the per-test log-normal speed factor

    def practice_factor(self, test_index: int) -> float:
        """The interval multiplier of the typist's test number `test_index` (0-based) on the practice curve."""
        if self.practice_rate <= 0.0 or self.practice_floor >= 1.0:
            return 1.0
        return self.practice_floor + (1.0 - self.practice_floor) * (test_index + 1) ** -self.practice_rate

    @property
    def plateau_wpm(self) -> float:
        """The speed the practice curve levels off at."""
        return self.wpm / self.practice_floor

    def __post_init__(self) -> None:
        get_layout(self.layout)  # fail early on unknown layouts
        if not self.wpm > 0 or not self.hold_median_ms > 0:
            raise ValueError("wpm and hold_median_ms must be positive")
        for name in ("rollover", "error_rate", "correction_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if not 0.0 < self.practice_floor <= 1.0:
            raise ValueError("practice_floor must be in (0, 1]")
        if self.practice_rate < 0.0 or self.fatigue < 0.0 or self.day_sigma < 0.0:
            raise ValueError("practice_rate, fatigue and day_sigma must be ≥ 0")
        for pair in self.pair_factors:
            if len(pair) != 2:
                raise ValueError(f"pair_factors keys are two characters, got {pair!r}")


def _iki_median_ms(wpm: float, error_rate: float, correction_rate: float) -> float:
    """Return the pair-neutral IKI median that makes a typist with these habits score `wpm`."""
    # WPM counts 5 characters a word; corrections cost presses that produce nothing, so speed those up.
    corrections = error_rate * correction_rate
    presses_per_char = 1 + corrections * (
        NOTICE_FACTOR - 1 + (1 + _MEAN_NOTICE_LAG) * (BACKSPACE_REPEAT_FACTOR + 1) + RETYPE_FACTOR - 1
    )
    mean_interval = 12_000.0 / wpm / presses_per_char
    return mean_interval / (_CONTEXT_FACTOR_MEAN * math.exp(IKI_SIGMA**2 / 2) * _PAUSE_MEAN)


def _natural_rollover(hold_median_ms: float, iki_median_ms: float) -> float:
    """Return P(hold > next IKI) for log-normal holds and IKIs with these medians."""
    spread = math.hypot(HOLD_SIGMA, IKI_SIGMA + 0.1)  # +0.1: pair factors and pauses widen the IKIs
    return NormalDist().cdf(math.log(hold_median_ms / iki_median_ms) / spread)


def _user_rng(seed: int, user_id: int, stream: int) -> np.random.Generator:
    """Return the Generator for one user's profile (stream 0) or tests (stream 1)."""
    return np.random.default_rng([seed, user_id, stream])


def _traits(wpm: float, rng: np.random.Generator) -> dict[str, Any]:
    """Return one typist's traits (module docstring), drawn from their own stream."""
    n_pairs = int(rng.integers(SLOW_PAIRS_PER_USER[0], SLOW_PAIRS_PER_USER[1] + 1))
    pairs = rng.choice(len(COMMON_PAIRS), size=n_pairs, replace=False)
    n_keys = int(rng.integers(ERROR_PRONE_KEYS_PER_USER[0], ERROR_PRONE_KEYS_PER_USER[1] + 1))
    keys = rng.choice(len(ERROR_PRONE_CANDIDATES), size=n_keys, replace=False)
    headroom = float(rng.uniform(*PRACTICE_HEADROOM_WPM)) * math.sqrt(WPM_MEAN / wpm)
    return {
        "pair_factors": {COMMON_PAIRS[int(i)]: round(float(rng.uniform(*SLOW_PAIR_FACTOR)), 3) for i in pairs},
        "key_error_factors": {
            ERROR_PRONE_CANDIDATES[int(i)]: round(float(rng.uniform(*ERROR_PRONE_FACTOR)), 3) for i in keys
        },
        "practice_floor": round(wpm / (wpm + headroom), 4),
        "practice_rate": round(float(rng.uniform(*PRACTICE_RATE)), 4),
        "fatigue": round(float(rng.uniform(*FATIGUE_PER_100_CHARS)), 4),
        "day_sigma": round(float(rng.uniform(*DAY_FORM_SIGMA)), 4),
    }


def make_profiles(n_users: int, seed: int, first_user_id: int = 1, traits: bool = False) -> list[TypistProfile]:
    """Return `n_users` typist profiles drawn from the published population distributions, with `traits` the
    structure the models learn (module docstring).

    Each user's profile depends only on (seed, user_id), so adding users leaves earlier ones unchanged; the traits
    come from a stream of their own, so a typist's other habits are the same with or without them.
    """
    profiles = []
    layout_names = list(LAYOUT_SHARES)
    layout_p = np.array(list(LAYOUT_SHARES.values()))
    for user_id in range(first_user_id, first_user_id + n_users):
        rng = _user_rng(seed, user_id, 0)
        wpm = float(np.clip(rng.normal(WPM_MEAN, WPM_SD), *WPM_RANGE))
        hold = float(np.clip(rng.normal(HOLD_MEDIAN_MEAN_MS, HOLD_MEDIAN_SD_MS), *HOLD_MEDIAN_RANGE_MS))
        slip_median = SLIP_MEDIAN * (WPM_MEAN / wpm) ** 0.3
        error_rate = float(np.clip(slip_median * math.exp(SLIP_SIGMA * rng.normal()), *SLIP_RANGE))
        correction_rate = float(rng.beta(*CORRECTION_BETA))
        natural = _natural_rollover(hold, _iki_median_ms(wpm, error_rate, correction_rate))
        rollover = float(
            np.clip(ROLLOVER_SCALE * natural + rng.normal(0.0, ROLLOVER_NOISE_SD), *ROLLOVER_RANGE)
        )
        layout = layout_names[int(rng.choice(len(layout_names), p=layout_p))]
        profiles.append(
            TypistProfile(
                user_id=user_id,
                wpm=round(wpm, 2),
                hold_median_ms=round(hold, 2),
                rollover=round(rollover, 4),
                error_rate=round(error_rate, 5),
                correction_rate=round(correction_rate, 4),
                layout=layout,
                **(_traits(wpm, _user_rng(seed, user_id, 2)) if traits else {}),
            )
        )
    return profiles


def _slip(char: str, layout: KeyboardLayout, u: float) -> str | None:
    """Return the character a slip on `char` produces (a weighted neighbour), or None if it has none."""
    key = layout.key_info(char)
    neighbours = layout.neighbours(char)
    if key is None or not neighbours:
        return None
    rows = [getattr(layout.key_info(neighbour), "row", None) for neighbour in neighbours]
    weights = np.array([SAME_ROW_SLIP_WEIGHT if row == key.row else 1.0 for row in rows])
    cumulative = np.cumsum(weights) / weights.sum()
    return neighbours[min(int(np.searchsorted(cumulative, u, side="right")), len(neighbours) - 1)]


def _confusion(char: str, confusions: dict[str, str]) -> str | None:
    """Return the forced substitute for `char` from `confusions` (matching case), or None."""
    if char in confusions:
        return confusions[char]
    lower = char.lower()
    if lower != char and lower in confusions:
        return confusions[lower].upper()
    return None


def _presses(
    text: str, profile: TypistProfile, layout: KeyboardLayout, rng: np.random.Generator
) -> tuple[list[str], list[int]]:
    """Return the character and Backspace presses that type `text` with slips, and each press's kind."""
    n = len(text)
    slip_u, pick_u, notice_u = rng.random(n), rng.random(n), rng.random(n)
    lags = rng.choice(len(NOTICE_LAG_PROBABILITIES), size=n, p=NOTICE_LAG_PROBABILITIES)
    keys: list[str] = []
    kinds: list[int] = []
    key_error = profile.key_error_factors
    i = 0
    while i < n:
        char = text[i]
        typed: str | None = None
        confused = _confusion(char, profile.confusions) if profile.confusions else None
        if confused is not None and slip_u[i] < CONFUSION_PROBABILITY:
            typed = confused
        elif slip_u[i] < profile.error_rate * key_error.get(char.lower(), 1.0):
            typed = _slip(char, layout, pick_u[i])
        if typed is None or typed == char:
            keys.append(char)
            kinds.append(_CHAR)
            i += 1
            continue
        keys.append(typed)
        kinds.append(_CHAR)
        if notice_u[i] >= profile.correction_rate:
            i += 1  # left uncorrected
            continue
        # Noticed after `lag` more (correct) characters: erase them and the slip, then retype them all.
        lag = min(int(lags[i]), n - 1 - i)
        keys.extend(text[i + 1 : i + 1 + lag])
        kinds.extend([_CHAR] * lag)
        keys.extend([BACKSPACE] * (lag + 1))
        kinds.extend([_NOTICE] + [_BACKSPACE_REPEAT] * lag)
        keys.extend(text[i : i + 1 + lag])
        kinds.extend([_RETYPE] + [_CHAR] * lag)
        i += lag + 1
    return keys, kinds


def _interval_factors(
    keys: list[str], kinds: list[int], layout: KeyboardLayout, profile: TypistProfile
) -> list[float]:
    """Return each press's IKI factor relative to the user's pair-neutral median (first press: 1)."""
    factors = [1.0] * len(keys)
    hands = [layout.hand(key) if len(key) == 1 else None for key in keys]
    slow_keys, pair_factors = profile.slow_keys, profile.pair_factors
    for k in range(1, len(keys)):
        kind, key, previous = kinds[k], keys[k], keys[k - 1]
        if kind == _NOTICE:
            factor = NOTICE_FACTOR
        elif kind == _BACKSPACE_REPEAT:
            factor = BACKSPACE_REPEAT_FACTOR
        elif kind == _RETYPE:
            factor = RETYPE_FACTOR
        elif previous == " " and key != " ":
            factor = WORD_START_FACTOR
        elif key.lower() == previous.lower():
            factor = REPEAT_FACTOR
        elif hands[k] is not None and hands[k - 1] is not None:
            factor = ALTERNATING_FACTOR if hands[k] != hands[k - 1] else SAME_HAND_FACTOR
        else:
            factor = 1.0
        if slow_keys and len(key) == 1:
            factor *= slow_keys.get(key.lower(), slow_keys.get(key, 1.0))
        if pair_factors and kind == _CHAR and len(key) == 1 and len(previous) == 1:
            factor *= pair_factors.get(previous.lower() + key.lower(), 1.0)
        factors[k] = factor
    return factors


def _format_started_at(started_at: datetime) -> str:
    """Return `started_at` as an ISO-8601 UTC string with milliseconds ('2026-11-27T10:00:00.000Z')."""
    if started_at.tzinfo is None:
        started_at = started_at.replace(tzinfo=UTC)  # naive times are taken as UTC
    utc = started_at.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def simulate_test(
    profile: TypistProfile,
    rng: np.random.Generator,
    started_at: datetime,
    test_index: int,
    test_id: str | None = None,
    noiseless: bool = False,
) -> dict[str, Any]:
    """Return one simulated typing-test submission (JSON-ready dict) typed by `profile`.

    `test_id` defaults to f"sim-{user_id}-{test_index}". With `noiseless` every interval is its median (no
    log-normal spread, no pauses) and everything else is as without it: the best any predictor of the intervals
    could do, for measuring how close a model gets.
    """
    layout = get_layout(profile.layout)
    chosen = rng.choice(len(SENTENCES), size=int(rng.integers(1, 4)), replace=False)
    text = " ".join(SENTENCES[int(index)] for index in chosen)

    keys, kinds = _presses(text, profile, layout, rng)
    factors = np.array(_interval_factors(keys, kinds, layout, profile))
    n = len(keys)
    iki_median = _iki_median_ms(profile.wpm, profile.error_rate, profile.correction_rate)
    pauses = np.where(
        rng.random(n) < PAUSE_PROBABILITY, PAUSE_MEDIAN_FACTOR * np.exp(PAUSE_SIGMA * rng.normal(size=n)), 1.0
    )
    noise = np.exp(IKI_SIGMA * rng.normal(size=n))
    if noiseless:  # the same draws, so the same presses, at each interval's median
        pauses, noise = np.ones(n), np.ones(n)
    iki = np.maximum(iki_median * factors * noise * pauses, MIN_IKI_MS)
    if profile.day_sigma > 0.0 or profile.fatigue > 0.0 or profile.practice_rate > 0.0:
        form = math.exp(profile.day_sigma * float(rng.normal()))  # today's form, one draw per test
        stretch = 1.0 + profile.fatigue * np.arange(n) / 100.0
        iki = np.maximum(iki * profile.practice_factor(test_index) * form * stretch, MIN_IKI_MS)
    hold = profile.hold_median_ms * np.exp(HOLD_SIGMA * rng.normal(size=n))

    # Shift goes down part-way through the interval before a shifted key and stays down across it.
    shifted = np.array([len(key) == 1 and layout.needs_shift(key) for key in keys], dtype=bool)
    if shifted.any():
        lead = rng.uniform(*SHIFT_LEAD_RANGE, size=n)
        where = np.flatnonzero(shifted)
        keys = list(np.insert(np.array(keys, dtype=object), where, SHIFT))
        shift_iki = iki[where] * (1 - lead[where])
        iki = iki.copy()
        iki[where] *= lead[where]
        iki = np.insert(iki, where, shift_iki)
        hold = np.insert(hold, where, 1.0)  # set below, once the shifted key's release is known
        n = len(keys)
    is_shift = np.array([key == SHIFT for key in keys], dtype=bool)
    down = np.cumsum(iki)
    down -= down[0]

    if n > 1:
        hold = _apply_rollover(hold, down, is_shift, profile.rollover, rng)
    shift_at = np.flatnonzero(is_shift)
    release_lag = rng.uniform(*SHIFT_RELEASE_LAG_MS, size=shift_at.size)
    hold[shift_at] = down[shift_at + 1] - down[shift_at] + hold[shift_at + 1] + release_lag

    down_ms = np.rint(down).astype(np.int64).tolist()
    up_ms = np.rint(down + hold).astype(np.int64).tolist()
    lost = rng.random(n) < MISSING_UP_SHARE
    keystrokes = [
        {"key": key, "down": d, "up": None if missing else u}
        for key, d, u, missing in zip(keys, down_ms, up_ms, lost.tolist(), strict=True)
    ]
    return {
        "user_id": profile.user_id,
        "test_id": test_id if test_id is not None else f"sim-{profile.user_id}-{test_index}",
        "started_at": _format_started_at(started_at),
        "text": text,
        "layout": profile.layout,
        "language": "en",
        "keystrokes": keystrokes,
    }


def _apply_rollover(
    hold: np.ndarray, down: np.ndarray, is_shift: np.ndarray, rollover: float, rng: np.random.Generator
) -> np.ndarray:
    """Return holds adjusted so that the user's `rollover` share of presses overlaps the next press.

    Presses whose natural hold most exceeds the following interval are the ones that roll over (so a
    profile whose rollover equals its natural hold-vs-IKI share is left untouched); only the presses
    on the wrong side of that cut have their release moved just past or just before the next press.
    """
    hold = hold.copy()
    gap = np.diff(down)
    adjustable = ~is_shift[:-1]  # a Shift always overlaps the key it shifts
    n_adjustable = int(adjustable.sum())
    if n_adjustable == 0:
        return hold
    target = (rollover * gap.size - int(is_shift[:-1].sum())) / n_adjustable
    target = min(max(target, 0.0), 1.0)
    excess = np.log(hold[:-1]) - np.log(np.maximum(gap, 1e-3))
    cut = np.quantile(excess[adjustable], 1.0 - target)
    rolls = adjustable & (excess > cut)
    nudge = rng.uniform(*ROLLOVER_OVERRUN_MS, size=gap.size)
    current = hold[:-1]
    current = np.where(rolls & (current <= gap), gap + nudge, current)
    current = np.where(adjustable & ~rolls & (current >= gap), np.maximum(gap - nudge, 0.5 * gap), current)
    hold[:-1] = current
    return hold


def simulate_tests(
    n_users: int,
    tests_per_user: int,
    seed: int = 0,
    first_user_id: int = 1,
    start: datetime | None = None,
    traits: bool = False,
    noiseless: bool = False,
) -> list[dict[str, Any]]:
    """Return `tests_per_user` simulated submissions for each of `n_users` users, grouped by user; with `traits`
    the typists have the structure the models learn (module docstring).

    Test i of a user starts on day i after `start` (default 2026-11-01 UTC) at the user's usual hour plus
    a few minutes; test ids are f"sim-{seed}-{user_id}-{i}". The same arguments give the same output.
    """
    start = start if start is not None else datetime(2026, 11, 1, tzinfo=UTC)
    submissions = []
    for profile in make_profiles(n_users, seed, first_user_id, traits=traits):
        rng = _user_rng(seed, profile.user_id, 1)
        usual_hour = rng.uniform(7.0, 20.0)
        for i in range(tests_per_user):
            started_at = start + timedelta(days=i, hours=usual_hour, minutes=float(rng.uniform(0.0, 180.0)))
            submissions.append(
                simulate_test(
                    profile, rng, started_at, i, test_id=f"sim-{seed}-{profile.user_id}-{i}", noiseless=noiseless
                )
            )
    return submissions
