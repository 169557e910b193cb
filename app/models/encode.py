"""Model inputs, one definition for training and serving: a text's characters in context, with the typist's
features (app/features/) at the prediction point, as arrays the networks take.

Per character of a text:
    cats      int64 [n, 4]: character id, previous id, the one before (START at the text's start), letter-pair id
    numeric   float32 [n, NUMERIC]: the typist's history for this character and pair, the typist overall, the
              layout (hand, finger, row, same hand / finger as the previous character) and the place in the text
    base      float32 [n]: the typist's overall clean log time to type (population's without history); the pattern
              network predicts the log time relative to it
Everything is numpy over the whole text at once: encoding costs microseconds per character.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from app.analytics.layouts import FINGER_CODES as _FINGERS
from app.analytics.layouts import HAND_CODES, get_layout
from app.features.summary import UserFeatures
from app.features.vocab import CHARACTERS, VOCAB_SIZE, codepoint_ids, pair_ids, text_codepoints

START = VOCAB_SIZE  # the "previous character" before a text's first
EMBEDDINGS = VOCAB_SIZE + 1
LOG_REF = 5.3  # ln(200 ms): log times are centred on it
POPULATION_LOG_MS = 5.25  # clean letter-pair time to type of a typist with no history (≈ 190 ms)
POPULATION_ERROR_RATE = 0.05
PRIOR_PRESSES = 30.0  # the analytics' Beta prior strength (app/analytics/weakness.py)
RECENT_WINDOW = 5  # tests whose mean WPM is "current speed"
_MS_PER_CHAR_AT_1_WPM = 12_000.0  # 60 000 ms / 5 characters per word
_HANDS, _FINGER_SLOTS, _ROWS = 3, 10, 6

# The numeric inputs, in order: the typist overall, their history of this character and pair, the character in
# context, then one-hot hand, finger and row.
TYPIST_INPUTS = (
    "has_history", "tests", "user_log_ms", "recent_log_ms", "recent_trend", "user_error_rate", "recent_accuracy",
)
KEY_INPUTS = ("key_log_ms", "key_timed", "key_error_rate", "key_presses")
PAIR_INPUTS = ("pair_log_ms", "pair_timed", "pair_error_rate")
CONTEXT_INPUTS = (
    "position", "is_upper", "word_start", "is_space", "same_hand", "same_finger", "repeat", "text_start",
)  # fmt: skip
_KEY_AT = len(TYPIST_INPUTS)
_PAIR_AT = _KEY_AT + len(KEY_INPUTS)
_CONTEXT_AT = _PAIR_AT + len(PAIR_INPUTS)
_ONE_HOT_AT = _CONTEXT_AT + len(CONTEXT_INPUTS)
NUMERIC = _ONE_HOT_AT + _HANDS + _FINGER_SLOTS + _ROWS


@dataclass(frozen=True)
class Encoded:
    cats: np.ndarray
    numeric: np.ndarray
    base: np.ndarray

    def __len__(self) -> int:
        return int(self.cats.shape[0])


@lru_cache(maxsize=16)
def _layout_tables(layout: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per vocabulary id on this layout: hand (0 left, 1 right, 2 none), finger (9 unknown), row (5 unknown)."""
    model = get_layout(layout)
    hand = np.full(EMBEDDINGS, 2, dtype=np.int64)
    finger = np.full(EMBEDDINGS, 9, dtype=np.int64)
    row = np.full(EMBEDDINGS, 5, dtype=np.int64)
    for i, char in enumerate(CHARACTERS, start=1):
        info = model.key_info(char)
        if info is None:
            continue
        hand[i] = 2 if info.hand is None else HAND_CODES[info.hand]
        finger[i] = _FINGERS[info.finger]
        row[i] = info.row
    return hand, finger, row


@dataclass(frozen=True)
class TypistView:
    """The per-id rates and means the encoder reads from a typist's features (computed once per typist)."""

    has_history: float
    tests: float
    user_log_ms: float  # absolute, ln ms
    key_log_ms: np.ndarray  # relative to user_log_ms, 0 where untimed
    key_timed: np.ndarray
    pair_log_ms: np.ndarray
    pair_timed: np.ndarray
    recent_log_ms: float
    key_error_rate: np.ndarray
    key_presses: np.ndarray
    pair_error_rate: np.ndarray
    user_error_rate: float
    recent_accuracy: float

    @property
    def typist_inputs(self) -> np.ndarray:
        """TYPIST_INPUTS as the networks take them."""
        return np.array(
            [
                self.has_history,
                _log1p5(self.tests),
                self.user_log_ms - LOG_REF,
                self.recent_log_ms - LOG_REF,
                self.recent_log_ms - self.user_log_ms,
                _logit(np.float64(self.user_error_rate)),
                self.recent_accuracy,
            ],
            dtype=np.float32,
        )

    @property
    def key_inputs(self) -> np.ndarray:
        """KEY_INPUTS per character id, [VOCAB_SIZE, 4]."""
        columns = (self.key_log_ms, _log1p5(self.key_timed), _logit(self.key_error_rate), _log1p5(self.key_presses))
        return np.stack(columns, axis=1).astype(np.float32)

    def pair_inputs(self, pairs: np.ndarray) -> np.ndarray:
        """PAIR_INPUTS of these pair ids, [len(pairs), 3]."""
        return np.stack(
            (self.pair_log_ms[pairs], _log1p5(self.pair_timed[pairs]), _logit(self.pair_error_rate[pairs])), axis=1
        )

    @classmethod
    def of(cls, features: UserFeatures | None) -> TypistView:
        if features is None or features.tests == 0:
            return _NO_HISTORY
        key, pair = features.key.astype(np.float64), features.pair.astype(np.float64)
        pair_timed = pair[:, 2]
        total_timed = pair_timed.sum()
        user_log = pair[:, 3].sum() / 1000.0 / total_timed if total_timed > 0 else POPULATION_LOG_MS
        with np.errstate(divide="ignore", invalid="ignore"):
            key_log = np.where(key[:, 2] > 0, key[:, 3] / 1000.0 / key[:, 2] - user_log, 0.0)
            pair_log = np.where(pair_timed > 0, pair[:, 3] / 1000.0 / pair_timed - user_log, 0.0)
        presses, errors = key[:, 0].sum(), key[:, 1].sum()
        # The Beta prior of the analytics: p0 kept half a press inside (0, 1).
        user_rate = float(np.clip((errors + 0.5) / (presses + 1.0), 1e-4, 1 - 1e-4))
        prior_errors = PRIOR_PRESSES * user_rate
        key_rate = (key[:, 1] + prior_errors) / (key[:, 0] + PRIOR_PRESSES)
        pair_rate = (pair[:, 1] + prior_errors) / (pair[:, 0] + PRIOR_PRESSES)
        wpm = features.recent_wpm()[-RECENT_WINDOW:]
        wpm = wpm[wpm > 0]
        recent_log = float(np.log(_MS_PER_CHAR_AT_1_WPM / wpm.mean())) if wpm.size else user_log
        accuracies = [e[3] for e in features.recent[-RECENT_WINDOW:] if e[3] is not None]
        return cls(
            has_history=1.0,
            tests=float(features.tests),
            user_log_ms=float(user_log),
            key_log_ms=key_log,
            key_timed=key[:, 2],
            pair_log_ms=pair_log,
            pair_timed=pair_timed,
            recent_log_ms=recent_log,
            key_error_rate=key_rate,
            key_presses=key[:, 0],
            pair_error_rate=pair_rate,
            user_error_rate=user_rate,
            recent_accuracy=float(np.mean(accuracies)) if accuracies else 1.0 - user_rate,
        )


_ZERO_KEYS, _ZERO_PAIRS = np.zeros(VOCAB_SIZE), np.zeros(VOCAB_SIZE * VOCAB_SIZE)
_NO_HISTORY = TypistView(
    has_history=0.0, tests=0.0, user_log_ms=POPULATION_LOG_MS, key_log_ms=_ZERO_KEYS, key_timed=_ZERO_KEYS,
    pair_log_ms=_ZERO_PAIRS, pair_timed=_ZERO_PAIRS, recent_log_ms=POPULATION_LOG_MS,
    key_error_rate=np.full(VOCAB_SIZE, POPULATION_ERROR_RATE), key_presses=_ZERO_KEYS,
    pair_error_rate=np.full(VOCAB_SIZE * VOCAB_SIZE, POPULATION_ERROR_RATE),
    user_error_rate=POPULATION_ERROR_RATE, recent_accuracy=1.0 - POPULATION_ERROR_RATE,
)  # fmt: skip


def _logit(rate: np.ndarray) -> np.ndarray:
    """Error rates as log-odds: the scale a logistic output adds them on."""
    rate = np.clip(rate, 1e-4, 1 - 1e-4)
    return np.log(rate / (1 - rate))


def _log1p5(count: np.ndarray | float) -> np.ndarray:
    """Counts on a scale near 1."""
    return np.log1p(count) / 5.0


def _uppercase(text: str, n: int) -> np.ndarray:
    """Which characters are capitals: those lower() changes (one code point each way; else char by char)."""
    lowered = text.lower()
    if len(lowered) != n:
        return np.fromiter((c.isupper() for c in text), dtype=bool, count=n)
    return text_codepoints(lowered) != text_codepoints(text)


def encode_text(text: str, layout: str, view: TypistView) -> Encoded:
    """The model inputs for every character of `text` typed on `layout` by the typist in `view`."""
    return encode_batch([(text, layout, view)])


def _cats(joined: str, position: np.ndarray) -> np.ndarray:
    """The categorical inputs [n, 4] (character, previous, the one before, pair) of concatenated texts, each
    character's `position` in its own text marking where one text ends and the next starts."""
    n = position.shape[0]
    ids = codepoint_ids(text_codepoints(joined)).astype(np.int64)
    prev = np.full(n, START, dtype=np.int64)
    prev[1:] = np.where(position[1:] >= 1, ids[:-1], START)
    prev2 = np.full(n, START, dtype=np.int64)
    prev2[2:] = np.where(position[2:] >= 2, ids[:-2], START)
    pairs = pair_ids(np.where(prev == START, 0, prev), ids).astype(np.int64)
    return np.stack([ids, prev, prev2, pairs], axis=1)


def text_cats(text: str) -> np.ndarray:
    """The categorical inputs of one text: what the baselines group by (character and letter pair ids)."""
    return _cats(text, np.arange(len(text), dtype=np.int64))


def encode_batch(requests: list[tuple[str, str, TypistView]]) -> Encoded:
    """The model inputs of many texts at once, concatenated in order: a few dozen array operations for the batch
    rather than per text (the predictor's batches and the training samples)."""
    texts = [text for text, _, _ in requests]
    joined = "".join(texts)
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    n = int(lengths.sum())
    position = np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cats = _cats(joined, position)
    ids, prev, pairs = cats[:, 0], cats[:, 1], cats[:, 3]

    request_of = np.repeat(np.arange(len(requests)), lengths)
    layouts = sorted({layout for _, layout, _ in requests})
    tables = np.stack([np.stack(_layout_tables(name)) for name in layouts])  # [layouts, 3, EMBEDDINGS]
    layout_of = np.array([layouts.index(layout) for _, layout, _ in requests], dtype=np.int64)[request_of]
    hand_id, finger_id, row_id = (tables[layout_of, k, ids] for k in range(3))
    hand_prev, finger_prev = tables[layout_of, 0, prev], tables[layout_of, 1, prev]

    numeric = np.zeros((n, NUMERIC), dtype=np.float32)
    base = np.empty(n, dtype=np.float32)
    distinct: dict[int, int] = {}
    view_of_request = np.array([distinct.setdefault(id(v), len(distinct)) for _, _, v in requests], dtype=np.int64)
    view_of_char = view_of_request[request_of]
    first_request = {v: i for i, v in reversed(list(enumerate(view_of_request.tolist())))}
    for v, i in first_request.items():
        view = requests[i][2]
        at = np.flatnonzero(view_of_char == v) if len(distinct) > 1 else slice(None)
        numeric[at, :_KEY_AT] = view.typist_inputs
        numeric[at, _KEY_AT:_PAIR_AT] = view.key_inputs[ids[at]]
        numeric[at, _PAIR_AT:_CONTEXT_AT] = view.pair_inputs(pairs[at])
        base[at] = view.user_log_ms
    upper = _uppercase(joined, n)
    context = (
        position / 100.0,
        upper,
        prev == 1,  # a word's first character (id 1 is the space)
        ids == 1,
        (hand_id == hand_prev) & (hand_id < 2),
        (finger_id == finger_prev) & (finger_id < 9),
        ids == prev,
        prev == START,
    )
    numeric[:, _CONTEXT_AT:_ONE_HOT_AT] = np.stack(context, axis=1)
    rows = np.arange(n)
    numeric[rows, _ONE_HOT_AT + hand_id] = 1.0
    numeric[rows, _ONE_HOT_AT + _HANDS + finger_id] = 1.0
    numeric[rows, _ONE_HOT_AT + _HANDS + _FINGER_SLOTS + row_id] = 1.0
    return Encoded(cats, numeric, base)

