import pytest

from sneakers23.domain.levels import Level, level_for


@pytest.mark.parametrize(
    ("count", "level"),
    [(0, Level.OUT), (1, Level.LOW), (149, Level.LOW), (150, Level.MEDIUM), (499, Level.MEDIUM),
     (500, Level.HIGH), (1200, Level.HIGH)],
)
def test_level_at_every_boundary(count, level):
    assert level_for(count) is level


def test_levels_are_the_strings_the_markup_uses():
    assert [str(level) for level in Level] == ["out", "low", "medium", "high"]
