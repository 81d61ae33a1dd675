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
