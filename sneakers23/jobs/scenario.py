"""A drop rehearsal's scenario: who comes, when, and what they do (docs/rehearsals.md has the schema,
`scenarios/` an example). Read from YAML and checked by pydantic, so that a bad file is refused with
the field named, before any shopper starts."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sneakers23.domain.admin import MAX_PACE_PER_MINUTE
from sneakers23.errors import Sneakers23Error

MAX_SHOPPERS = 100_000
MAX_ERRORS_SHOWN = 3


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # (a misspelt field is named, not ignored)


class Arrivals(_Strict):
    """When shoppers open the product's page, around its release time."""

    before_release_s: float = Field(default=10.0, gt=0, le=3600,
                                    description="the early shoppers arrive evenly over this long before the release")
    share_before: float = Field(default=0.8, ge=0, le=1, description="the share of shoppers that arrive early")
    after_release_s: float = Field(default=3.0, ge=0, le=3600,
                                   description="the late shoppers arrive evenly over this long after the release")


class WhenSoldOut(_Strict):
    """What a shopper does when the size they want is sold out."""

    another_size: float = Field(default=0.5, ge=0, le=1,
                                description="the share that try another size with pairs left (the others leave)")
    most_sizes: int = Field(default=3, ge=1, le=20, description="a shopper tries at most this many sizes")


class Behaviour(_Strict):
    buy_now: float = Field(default=0.5, ge=0, le=1,
                           description="the share that press buy on the size; the others add it to the cart, then check out")
    sizes: dict[str, float] | None = Field(
        default=None, description="weights of the sizes shoppers want first, by size (every size alike when left out)")
    when_sold_out: WhenSoldOut = WhenSoldOut()
    reload: float = Field(default=0.05, ge=0, le=1, description="the share that reload the page once while waiting")
    leave: float = Field(default=0.05, ge=0, le=1, description="the share that leave before the release")

    @field_validator("sizes", mode="before")
    @classmethod
    def _sizes_as_written(cls, sizes):
        """`9: 3` and `10.5: 2` (YAML's numbers) name the sizes "9" and "10.5", as quoted ones do."""
        if isinstance(sizes, dict):
            return {(f"{size:g}" if isinstance(size, (int, float)) and not isinstance(size, bool) else size): weight
                    for size, weight in sizes.items()}
        return sizes

    @model_validator(mode="after")
    def _weights(self) -> "Behaviour":
        if self.sizes is not None and (not self.sizes or any(w < 0 for w in self.sizes.values())
                                       or sum(self.sizes.values()) <= 0):
            raise ValueError("sizes: give each size a weight of 0 or more, and at least one above 0")
        return self


class Queue(_Strict):
    """A queued drop's waiting room, as the staff set it."""

    admit_per_minute: float | None = Field(
        default=None, gt=0, le=MAX_PACE_PER_MINUTE,
        description="shoppers let in a minute (left out: the store's own pace, which follows what it sells)")
    press_before_turn: float = Field(
        default=0.05, ge=0, le=1,
        description="the share that press buy once while still in line, as a script would (the store must refuse them)")


class Scenario(_Strict):
    product: int = Field(ge=1, le=999_999_999, description="the product to drop: not released yet")
    mode: Literal["first-come", "queue", "draw"] = Field(
        default="first-come", description="how its pairs go to shoppers: first-come; queue (signed in, each in "
                                          "their turn); draw (signed in, one entry each, drawn at the release)")
    shoppers: int = Field(ge=1, le=MAX_SHOPPERS)
    arrivals: Arrivals = Arrivals()
    behaviour: Behaviour = Behaviour()
    queue: Queue | None = Field(default=None, description="the waiting room's pace (mode queue only)")
    linger_s: float = Field(default=3.0, ge=0, le=600,
                            description="how long shoppers keep their sockets after their last step")
    seed: int | None = Field(default=None, description="the random seed of the shoppers' choices (random when left out)")

    @field_validator("queue")
    @classmethod
    def _queue_with_its_mode(cls, queue, info):
        if queue is not None and info.data.get("mode") != "queue":
            raise ValueError("only a drop of mode queue has a waiting room")
        return queue


def _where(location: tuple) -> str:
    return ".".join(str(part) for part in location) or "(the file)"


def load(path: Path, shoppers: int | None = None) -> Scenario:
    """The scenario in this YAML file (with `shoppers` instead of the file's, if given). Raises
    Sneakers23Error naming the field that is wrong."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise Sneakers23Error(f"{path}: cannot be read ({error.__class__.__name__})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise Sneakers23Error(f"{path}: not YAML{where}") from None
    if not isinstance(raw, dict):
        raise Sneakers23Error(f"{path}: a scenario is a mapping of fields (product, shoppers, …)")
    if shoppers is not None:
        raw = {**raw, "shoppers": shoppers}
    try:
        return Scenario.model_validate(raw)
    except ValidationError as error:
        said = [f"field {_where(e['loc'])}: {_message(e)}" for e in error.errors()[:MAX_ERRORS_SHOWN]]
        more = len(error.errors()) - len(said)
        raise Sneakers23Error(f"{path}: {'; '.join(said)}" + (f" (and {more} more)" if more else "")) from None


def _message(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "not a field of a scenario (docs/rehearsals.md lists them)"
    if error["loc"] == ("mode",) and error["type"] == "literal_error":
        return "a drop is first-come, queue or draw"
    return error["msg"].removeprefix("Value error, ")
