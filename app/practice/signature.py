"""What a typist needs from a practice text, as a signature that keys the cache of written texts.

A signature names the layout, the language, a coarse skill band and up to MAX_UNITS target units (lowercase
letters or letter pairs, sorted), e.g. `qwerty-en-s2-ed.q.th`; `qwerty-en-s1-any` is general practice text.
Typists with the same needs share texts, so the cache holds texts per signature, not per person, and a
signature says nothing about who has it (docs/practice.md). Only letters and letter pairs are targets here:
the language model writes words, and capitals, digits and punctuation are the rule-based drills' business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.analytics.layouts import LAYOUTS
from app.practice.drills import drill_targets
from app.schemas.validated import FieldError

MAX_UNITS = 3
# Skill bands by recent WPM; the band picks how common the target words must be (words.py).
SKILL_BANDS_WPM = (25.0, 40.0, 60.0, 80.0)  # s0 below 25, s1 25-40, s2 40-60, s3 60-80, s4 from 80
DEFAULT_SKILL = 1
DEFAULT_LANGUAGE = "en"
GENERAL = "any"
_UNIT = re.compile(r"[a-z]{1,2}")
_SIGNATURE = re.compile(
    r"(?P<layout>[a-z]+)-(?P<language>[a-z]{2,3})-s(?P<skill>[0-4])-(?P<units>any|[a-z]{1,2}(?:\.[a-z]{1,2}){0,2})"
)


class SignatureError(FieldError):
    """A practice signature is malformed; `field` names the request field."""


@dataclass(frozen=True)
class PracticeNeeds:
    """The needs a signature stands for."""

    layout: str = "qwerty"
    language: str = DEFAULT_LANGUAGE
    skill: int = DEFAULT_SKILL
    units: tuple[str, ...] = ()  # sorted, at most MAX_UNITS

    @property
    def signature(self) -> str:
        return f"{self.layout}-{self.language}-s{self.skill}-{'.'.join(self.units) or GENERAL}"


GENERAL_NEEDS = PracticeNeeds()


def skill_band(wpm: float | None) -> int:
    if wpm is None or wpm != wpm:  # None or NaN: no measure yet
        return DEFAULT_SKILL
    return sum(wpm >= edge for edge in SKILL_BANDS_WPM)


def lm_units(keys: list[str], pairs: list[str]) -> tuple[str, ...]:
    """The letters and letter pairs among drill targets (priority order), lowercased, first MAX_UNITS, sorted."""
    chosen: list[str] = []
    for unit in [*keys, *pairs]:
        lower = unit.lower()
        if _UNIT.fullmatch(lower) and lower not in chosen:
            chosen.append(lower)
        if len(chosen) == MAX_UNITS:
            break
    return tuple(sorted(chosen))


def needs_from_insights(insights: dict[str, Any] | None) -> PracticeNeeds:
    """A typist's needs from their insights JSON; general needs for a typist without insights."""
    if not insights:
        return GENERAL_NEEDS
    keys, pairs = drill_targets(insights)
    layout = str(insights.get("layout") or GENERAL_NEEDS.layout).lower()
    if layout not in LAYOUTS:
        layout = GENERAL_NEEDS.layout
    language = str(insights.get("language") or DEFAULT_LANGUAGE).lower()
    if not re.fullmatch(r"[a-z]{2,3}", language):
        language = DEFAULT_LANGUAGE
    recent = insights.get("recent") or {}
    wpm = recent.get("wpm") if isinstance(recent, dict) else None
    if wpm is None:
        wpm = insights.get("mean_wpm")
    return PracticeNeeds(layout, language, skill_band(wpm), lm_units(keys, pairs))


def parse_signature(signature: str, field: str = "signature") -> PracticeNeeds:
    """The needs a signature names; SignatureError naming `field` when it is not one."""
    match = _SIGNATURE.fullmatch(signature or "")
    if match is None:
        raise SignatureError(
            field,
            f"{signature!r} is not a practice signature (layout-language-sSKILL-units, e.g. qwerty-en-s2-ed.q.th)",
        )
    if match["layout"] not in LAYOUTS:
        raise SignatureError(field, f"unknown layout {match['layout']!r}; one of {', '.join(LAYOUTS)}")
    units = () if match["units"] == GENERAL else tuple(match["units"].split("."))
    if list(units) != sorted(set(units)):
        raise SignatureError(field, f"the units of {signature!r} must be distinct and sorted")
    return PracticeNeeds(match["layout"], match["language"], int(match["skill"]), units)
