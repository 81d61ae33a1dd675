"""A rehearsal's shopper chooses as its scenario says: its sizes in turn, a size it sees or is told
is sold out sends it to the next only if it tries another size, and it presses at most so many."""

from __future__ import annotations


import pytest

from sneakers23.jobs.shoppers import Plan, Shopper
from tests.support import aio  # (asyncio.run in a thread: a Chromium test of the worker keeps a loop here)


class Crowd:
    def __init__(self):
        self.rows = []


class Pressing(Shopper):
    """A shopper whose buy button answers from a script, by size."""

    def __init__(self, plan: Plan, answers: dict[int, str], out: set[int] = frozenset()):
        super().__init__(Crowd(), plan, "http://shop", None)
        self.answers, self.pressed = answers, []
        self.out |= set(out)

    async def _buy(self, item_id: int) -> str:
        self.pressed.append(item_id)
        return self.answers.get(item_id, "sold")


def plan(another_size: bool, most_sizes: int = 3) -> Plan:
    return Plan(number=0, arrive_at=0.0, buy_now=True, sizes=(1, 2, 3, 4), another_size=another_size,
                most_sizes=most_sizes, reload_at=None, leave_at=None)


def shop(shopper: Pressing) -> list[int]:
    aio.run(shopper._shop())
    return shopper.pressed


@pytest.mark.parametrize("another_size, answers, out, pressed", [
    (True, {}, set(), [1]),  # bought its first choice
    (True, {1: "sold_out", 2: "out_of_stock"}, set(), [1, 2, 3]),  # refused twice, bought the third
    (True, {1: "sold_out"}, {2}, [1, 3]),  # the page showed size 2 sold out: not pressed
    (True, {1: "sold_out", 2: "sold_out", 3: "sold_out"}, set(), [1, 2, 3]),  # at most three pressed
    (True, {1: "limit_reached"}, set(), [1]),  # another refusal: it stops
    (False, {1: "sold_out"}, set(), [1]),  # it leaves on a sold-out size
    (False, {}, {1}, []),  # its first choice shows sold out: it leaves without pressing another
])
def test_a_shopper_goes_through_its_sizes_as_its_scenario_says(another_size, answers, out, pressed):
    shopper = Pressing(plan(another_size), answers, out)
    assert shop(shopper) == pressed
    left = [row for row in shopper.crowd.rows if row.step == "leave"]
    assert bool(left) == (not another_size and answers.get(pressed[-1] if pressed else 1, "sold_out") != "sold")
