"""Availability levels: what shoppers see instead of raw counts."""

from enum import StrEnum


class Level(StrEnum):
    OUT = "out"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


LOW_BELOW = 150
MEDIUM_BELOW = 500


def level_for(available_count: int) -> Level:
    if available_count <= 0:
        return Level.OUT
    if available_count < LOW_BELOW:
        return Level.LOW
    if available_count < MEDIUM_BELOW:
        return Level.MEDIUM
    return Level.HIGH


# What a level says in words, never by colour alone (WCAG 1.4.1): a size's accessible name ("Size 7,
# few left"), the legend, and what the page announces when a level changes. The mark is those words,
# shown small on the size itself (a plain size is in stock), so that low and medium differ by more
# than their borders' colours, and what is seen is what a screen reader says (WCAG 2.5.3).
LEVEL_WORDS = {Level.HIGH: "in stock", Level.MEDIUM: "some left", Level.LOW: "few left", Level.OUT: "sold out"}
LEVEL_MARKS = {level: "" if level is Level.HIGH else words for level, words in LEVEL_WORDS.items()}
