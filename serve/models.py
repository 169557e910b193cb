"""Response models: they name and document every field of the API in its OpenAPI schema (`/docs`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.schemas import LAYOUTS
from serve.prediction_request import DEFAULT_LAYOUT, MAX_PREDICT_CHARS

M = "Null where undefined for the test."


class Queued(BaseModel):
    test_id: str = Field(description="The test's id: the one submitted, or one derived from its content")
    status: str = Field("queued", description="Always 'queued': the test is on Kafka and will be analysed")


class CharStats(BaseModel):
    correct: int = Field(description="Characters typed right, word by word (Monkeytype)")
    incorrect: int = Field(description="Characters typed wrong within a word's length")
    extra: int = Field(description="Characters typed beyond a word's length")
    missed: int = Field(description="Characters of a word never typed")


class TestMetrics(BaseModel):
    test_id: str
    started_at: str = Field(description="ISO-8601 UTC")
    layout: str
    language: str
    keystroke_count: int = Field(description="Key presses, named keys included")
    duration_ms: int = Field(description="First to last key press")
    wpm: float | None = Field(description=f"(len(T) − 1) / S × 60 / 5. {M}")
    raw_wpm: float | None = Field(description=f"All character presses / 5 per minute. {M}")
    net_wpm: float | None = Field(description=f"Characters of correctly typed words (with spaces) / 5 per minute. {M}")
    accuracy: float | None = Field(description=f"Correct character presses / character presses. {M}")
    uncorrected_error_rate: float | None = Field(description=f"MSD(P, T) / max(len(P), len(T)). {M}")
    corrected_error_rate: float | None = Field(description=f"IF / (C + INF + IF). {M}")
    total_error_rate: float | None = Field(description=f"(INF + IF) / (C + INF + IF). {M}")
    kspc: float | None = Field(description=f"Key presses / len(T). {M}")
    ecpc: float | None = Field(description=f"Backspace and Delete presses / len(T). {M}")
    mean_iki_ms: float | None = Field(description=f"Mean time between consecutive key presses. {M}")
    median_iki_ms: float | None = Field(description=f"Median time between consecutive key presses. {M}")
    mean_hold_ms: float | None = Field(description=f"Mean release − press over presses with a known release. {M}")
    rollover_ratio: float | None = Field(description=f"Share of presses before the previous key's release. {M}")
    consistency: float | None = Field(description=f"100 × (1 − tanh(cv + cv³/3 + cv⁵/5)) of per-second raw WPM. {M}")
    key_consistency: float | None = Field(description=f"The same formula over the IKIs. {M}")
    iki_cv: float | None = Field(description=f"Coefficient of variation of the IKIs. {M}")
    slowdown: float | None = Field(description=f"Mean IKI of the last third / first third − 1 (fatigue). {M}")
    health_score: float | None = Field(description=f"0–100 composite of typing technique (see health_*). {M}")
    health_speed: float | None
    health_accuracy: float | None
    health_consistency: float | None
    health_rhythm: float | None
    health_fatigue: float | None
    char_stats: CharStats
    c_correct: int = Field(description="C: correct characters of T (max(|P|, |T|) − INF)")
    inf: int = Field(description="INF: incorrect and not fixed (MSD(P, T))")
    if_: int = Field(description="IF: incorrect and fixed (character presses erased before the end)")
    corrections: int = Field(description="Backspace and Delete presses")
    hesitations: int = Field(description="IKIs over 3 × the test's median IKI or 2 s")
    hesitations_word_start: int
    hesitations_after_error: int
    transpositions: int
    doubled_letters: int
    dropped_letters: int
    error_bursts: int = Field(description="Runs of two or more wrong character presses")
    errors_by_finger: list[int] = Field(description="Wrong presses by the presented key's finger (left pinky … thumb)")
    errors_by_hand: list[int] = Field(description="Left, right")
    errors_by_row: list[int] = Field(description="Number, top, home, bottom, space row")
    per_second_wpm: list[float] = Field(description="Raw WPM in each second of the test")
    word_burst_wpm: list[float] = Field(description="Speed of each word of the transcription")


class TestList(BaseModel):
    user_id: int
    tests: list[TestMetrics]
    next: str | None = Field(None, description="Cursor of the next (older) page; null on the last page")


class PracticeTargets(BaseModel):
    keys: list[str] = Field(description="Weak keys the passage drills")
    pairs: list[str] = Field(description="Weak letter pairs the passage drills")


class Practice(BaseModel):
    user_id: int
    text: str = Field(description="The passage to type")
    targets: PracticeTargets
    source: str = Field(description="What wrote it: 'drill' (rule-based word drill)")


class PracticeScore(BaseModel):
    """How well a text serves its targets (app/practice/score.py); the same scale for written texts and drills."""

    words: int = Field(description="Words in the text")
    target_share: float = Field(description="Share of words holding a target key or letter pair")
    lift: float = Field(description="Target units per character against ordinary text of the language")
    dictionary_share: float = Field(description="Share of words that are common words of the language")
    distinct_share: float = Field(description="Distinct words / words")
    problems: list[str] = Field(description="Checks the text failed (empty: it passed)")
    passed: bool = Field(description="No check failed")
    value: float = Field(description="The one number written texts are ranked by (higher: better)")


class PracticeExperiment(BaseModel):
    name: str = Field(description="The experiment that chose this user's generator")
    variant: str = Field(description="The user's variant (the same on every request)")


class PracticeText(BaseModel):
    user_id: int
    text: str = Field(description="The passage to type, about `words` words")
    targets: list[str] = Field(description="The keys and letter pairs it drills, most important first")
    generator: str = Field(description="'lm': written for this kind of typist by the language model; 'rules': a "
                           "rule-based word drill (no written text yet: one is being written)")
    signature: str = Field(description="The kind of typist the text is for (layout-language-skill-targets); names "
                           "no one")
    text_ids: list[str] = Field(description="The written texts the passage is made of (empty for a drill)")
    score: PracticeScore
    experiment: PracticeExperiment | None = Field(
        default=None, description="Present while an experiment on the practice generator runs (docs/experiments.md)"
    )


class SignatureText(BaseModel):
    id: str
    text: str
    targets: list[str] = Field(description="The letters and letter pairs it was written to drill")
    generator: str = Field(description="'lm'")
    score: PracticeScore
    created_at: str = Field(description="ISO-8601 UTC")


class SignatureTexts(BaseModel):
    signature: str
    texts: list[SignatureText] = Field(description="Best first; empty while none is written yet (then queued)")


class UnitAggregate(BaseModel):
    key: str = Field(description="The presented key, or letter pair")
    presses: int
    errors: int
    error_rate: float | None
    timed_presses: int
    mean_time_to_type_ms: float | None = Field(description="Mean time since the previous key press")
    median_time_to_type_ms: float | None
    p95_time_to_type_ms: float | None
    mean_hold_ms: float | None


class KeyRow(UnitAggregate):
    smoothed_time_ms: float | None = Field(None, description="keybr-style exponentially smoothed time-to-type")
    confidence: float | None = Field(None, description="Target time / smoothed time (≥ 1: at target speed)")
    weakness: float | None = Field(None, description="Higher is weaker (speed and shrunk error rate combined)")
    typed_instead: list[dict[str, Any]] = Field(default_factory=list, description="Top keys typed instead")
    row: int | None = None
    column: int | None = None
    x: float | None = Field(None, description="Key centre in key widths, for drawing the keyboard")
    hand: str | None = None
    finger: str | None = None


class KeyTable(BaseModel):
    user_id: int
    layout: str
    keys: list[KeyRow]
    pairs: list[KeyRow]


class Health(BaseModel):
    score: float | None = Field(description="Mean health score of the recent tests (0–100)")
    components: dict[str, float | None] = Field(description="speed, accuracy, consistency, rhythm, fatigue (0–100)")
    tests: int
    note: str


class RankedUnit(BaseModel):
    key: str = Field(description="The key, or letter pair")
    presses: int
    errors: int
    error_rate: float | None
    shrunk_error_rate: float | None = Field(description="Error rate shrunk toward the user's own (Beta prior)")
    error_interval: list[float | None] = Field(description="90 % interval of the error rate")
    tests: int
    timed_presses: int
    mean_time_ms: float | None
    smoothed_time_ms: float | None = Field(description="keybr-style exponentially smoothed time-to-type")
    time_ratio: float | None = Field(description="Smoothed time / the user's median")
    confidence: float | None = Field(description="Target time / smoothed time (≥ 1: at target speed)")
    score: float | None = Field(description="Weakness: > 0 weaker than typical, < 0 stronger")
    eligible: bool = Field(description="Enough presses to be judged")
    reason: str = Field(description="The evidence in plain language")


class Recommendation(BaseModel):
    kind: str
    priority: int = Field(description="1 = most important")
    title: str
    detail: str
    evidence: dict[str, Any] = Field(description="The numbers behind the advice")
    targets: dict[str, list[str]] = Field(description="Keys and pairs a practice text should target")


class Confusion(BaseModel):
    key: str = Field(description="The presented key")
    typed: str = Field(description="The key typed instead")
    count: int
    share_of_key_errors: float | None = None


class ErrorPatterns(BaseModel):
    transpositions: int
    doubled_letters: int
    dropped_letters: int
    error_bursts: int
    corrections: int
    by_finger: dict[str, int]
    by_hand: dict[str, int]
    by_row: dict[str, int]
    top_confusions: list[Confusion]


class Insights(BaseModel):
    user_id: int
    test_count: int
    keystroke_count: int
    layout: str = Field(description="The layout the user types on most")
    mean_wpm: float | None
    mean_accuracy: float | None
    health: Health
    recent: dict[str, float | int | None] = Field(description="Metric means over the newest tests")
    overall: dict[str, float | None] = Field(description="Metric means over all tests")
    rhythm: dict[str, float | None]
    error_patterns: ErrorPatterns
    weak_keys: list[RankedUnit] = Field(description="Weakest keys, each with its evidence and a reason")
    strong_keys: list[RankedUnit]
    weak_pairs: list[RankedUnit]
    strong_pairs: list[RankedUnit]
    recommendations: list[Recommendation] = Field(description="Ranked advice, each tied to evidence and targets")
    progress: dict[str, Any] = Field(
        description="Trend, keybr's forecast, the trajectory model's (model_forecast), streaks and personal bests"
    )
    keys: list[UnitAggregate]
    slowest_keys: list[UnitAggregate]


class Progress(BaseModel):
    user_id: int
    daily: list[dict[str, Any]] = Field(description="Per UTC day: tests, mean wpm, accuracy, health score")
    personal_bests: dict[str, Any]
    streaks: dict[str, Any]
    trend: dict[str, Any]
    forecast: dict[str, Any] = Field(description="keybr's: a polynomial fit of the smoothed speed, extended")
    model_forecast: dict[str, Any] | None = Field(
        default=None,
        description="The trajectory model's WPM `after_tests` tests ahead with its 80 % interval (low, high); null "
        "until a trajectory model is promoted or for a typist without features",
    )


class CharPrediction(BaseModel):
    char: str = Field(description="The character of the text")
    time_ms: float | None = Field(description="Predicted time to type it: ms since the previous character's press")
    error_prob: float | None = Field(description="Predicted probability that its first press is wrong")


class TypingPrediction(BaseModel):
    user_id: int
    text: str
    model_version: str = Field(description="The versions that answered: pattern:<version>,error:<version>")
    chars: list[CharPrediction] = Field(description="One entry per character of the text, in order")
    predicted_wpm: float | None = Field(description="(characters − 1) / 5 per minute over the predicted times")
    predicted_accuracy: float | None = Field(description="1 − the mean error probability")


class TrajectoryPoint(BaseModel):
    test: int = Field(description="1 = the user's next test")
    wpm: float = Field(description="Predicted WPM (median)")
    low: float = Field(description="Lower end of the interval")
    high: float = Field(description="Upper end of the interval")


class Trajectory(BaseModel):
    user_id: int
    model_version: str
    current_wpm: float | None = Field(description="Mean WPM of the user's latest tests; null without tests")
    interval: float = Field(description="Probability that a test's WPM falls between low and high")
    points: list[TrajectoryPoint] = Field(description="One per coming test; empty for a user without tests")
    reason: str | None = Field(None, description="Why there are no points")


# The request body of POST /v1/predict/typing; the handler validates the raw body itself (serve/prediction_request.py),
# after authenticating, so a refused credential never learns what its body got wrong.
PREDICT_TYPING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["user_id", "text"],
    "properties": {
        "user_id": {"type": "integer", "minimum": 1, "description": "The typist's id on the platform"},
        "text": {"type": "string", "minLength": 1, "maxLength": MAX_PREDICT_CHARS, "description": "The text to type"},
        "layout": {"type": "string", "enum": list(LAYOUTS), "default": DEFAULT_LAYOUT},
    },
    "additionalProperties": False,
}


# The request body of POST /v1/tests, as a plain JSON schema: the handler validates the raw body itself
# (app/schemas.py, field-named errors, nothing produced unless all of it is valid), so this documents the shape and
# gives the fuzzer (tests/e2e/test_fuzz.py) something to aim at. The seed's shape (userId, keyTimings, ...) is
# accepted too; see the README.
SUBMISSION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["user_id", "started_at", "keystrokes"],
    "properties": {
        "user_id": {"type": "integer", "minimum": 1, "description": "The typist's id on the platform"},
        "test_id": {
            "type": "string",
            "pattern": "^[A-Za-z0-9_.:-]{1,64}$",
            "description": "Optional; derived from the content when absent, so a re-sent test is stored once",
        },
        "started_at": {"type": "string", "format": "date-time", "description": "ISO-8601; no zone means UTC"},
        "text": {"type": "string", "maxLength": 10000, "description": "The presented text"},
        "layout": {"type": "string", "enum": list(LAYOUTS), "default": "qwerty"},
        "language": {"type": "string", "default": "en", "description": "A tag like en or de-CH"},
        "keystrokes": {
            "type": "array",
            "maxItems": 20000,
            "items": {
                "type": "object",
                "required": ["key", "down"],
                "properties": {
                    "key": {"type": "string", "description": "One character, or a named key such as Backspace"},
                    "down": {"type": "number", "minimum": 0, "description": "ms from started_at; never decreasing"},
                    "up": {"type": ["number", "null"], "description": "ms from started_at, ≥ down; null if unknown"},
                },
            },
        },
    },
}
