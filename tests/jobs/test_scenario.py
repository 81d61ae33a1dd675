"""A rehearsal's scenario: the examples load, a bad file is refused with the field named (by the
command too: one line, a non-zero exit), and the shoppers' plans follow the scenario."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from sneakers23.errors import Sneakers23Error
from sneakers23.jobs.rehearsal import loopback_sources, plans
from sneakers23.jobs.scenario import Scenario, load
from sneakers23.jobs.shoppers import checkout_refusal, choose_sizes

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def test_every_example_scenario_loads():
    examples = sorted(SCENARIOS.glob("*.yaml"))
    assert examples
    for path in examples:
        assert load(path).shoppers >= 1
    assert load(examples[0], shoppers=300).shoppers == 300


@pytest.mark.parametrize("text, said", [
    ("product: 2\nshoppers: 0\n", "field shoppers: Input should be greater than or equal to 1"),
    ("product: 2\nshoppers: 10\nbehaviour: {buy_now: 1.5}\n", "field behaviour.buy_now: Input should be less than"),
    ("product: 2\nshopers: 10\n", "field shopers: not a field of a scenario"),
    ("product: 2\nshoppers: 10\nmode: raffle\n", "field mode: a drop is first-come, queue or draw"),
    ("product: 2\nshoppers: 10\nqueue: {admit_per_minute: 60}\n", "field queue: only a drop of mode queue has"),
    ("product: 2\nshoppers: 10\nmode: queue\nqueue: {admit_per_minute: 0}\n",
     "field queue.admit_per_minute: Input should be greater than 0"),
    ("product: 2\nshoppers: 10\nbehaviour: {sizes: {'9': -1}}\n", "field behaviour: sizes:"),
    ("product: 2\nshoppers: 10\nbehaviour: {when_sold_out: {most_sizes: 0}}\n",
     "field behaviour.when_sold_out.most_sizes:"),
    ("shoppers: 10\n", "field product: Field required"),
    ("- product\n- 2\n", "a scenario is a mapping of fields"),
    ("product: [2\n", "not YAML at line 2"),
])
def test_a_bad_scenario_is_refused_with_the_field_named(tmp_path, text, said):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(Sneakers23Error) as refused:
        load(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and said in message and "\n" not in message, message


def test_the_command_refuses_a_bad_scenario_in_one_line_before_anything_starts(tmp_path):
    from sneakers23.cli import cli

    path = tmp_path / "bad.yaml"
    path.write_text("product: 2\nshoppers: 10\narrivals: {share_before: 2}\n")
    result = CliRunner().invoke(cli, ["drop", "rehearse", str(path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"sneakers23: {path}: field arrivals.share_before: Input should be less than or equal to 1"]


def test_a_product_the_shop_cannot_drop_is_refused_in_one_line_before_anything_starts(tmp_path, monkeypatch):
    from sneakers23.cli import cli
    from sneakers23.settings import get_settings

    monkeypatch.setenv("SNEAKERS23_DATABASE_URL", f"sqlite:///{tmp_path / 'shop.db'}")
    monkeypatch.setenv("SNEAKERS23_CLUSTER", "none")
    get_settings.cache_clear()
    runner = CliRunner()
    for args in (["db", "upgrade"], ["db", "seed", "--random-seed", "5"], ["release", "1"]):
        assert runner.invoke(cli, args).exit_code == 0
    said = {}
    for product, sizes in ((1, None), (9, None), (2, {"9": 1, "13": 1}), (2, None)):
        path = tmp_path / f"drop-{product}.yaml"
        path.write_text(f"product: {product}\nshoppers: 10\n" + (f"behaviour: {{sizes: {sizes}}}\n" if sizes else ""))
        result = runner.invoke(cli, ["drop", "rehearse", str(path)])
        assert result.exit_code == 1
        said[product, bool(sizes)] = result.output
    get_settings.cache_clear()
    assert said == {
        (1, False): "sneakers23: field product: product 1 is on sale already (a rehearsal releases its product: seed "
                    "the shop again, or name another)\n",
        (9, False): "sneakers23: field product: there is no product 9\n",
        (2, True): "sneakers23: field behaviour.sizes: product 2 has no size 13 (its sizes: 6, 6.5, 7, 7.5, 8, 8.5, 9, "
                   "9.5, 10, 10.5, 11, 11.5, 12)\n",
        # (a product it could drop: the next thing it needs is the store's cluster)
        (2, False): "sneakers23: a rehearsal runs on the Ray cluster of a store on this database: start the store "
                    "(or set RAY_ADDRESS)\n"}


def test_the_plans_follow_the_scenario():
    scenario = Scenario.model_validate({
        "product": 2, "shoppers": 1000, "seed": 5,
        "arrivals": {"before_release_s": 10, "share_before": 0.7, "after_release_s": 4},
        "behaviour": {"buy_now": 0.3, "reload": 0.1, "leave": 0.2, "when_sold_out": {"another_size": 0.5}}})
    weights = {14: 3.0, 15: 1.0, 16: 0.0}
    made = plans(scenario, weights, 1000.0, random.Random(5))
    assert sorted(plan.number for plan in made) == list(range(1000))
    early = [plan for plan in made if plan.arrive_at < 1000.0]
    assert len(early) == 700 and min(plan.arrive_at for plan in early) >= 990.0
    assert max(plan.arrive_at for plan in made) <= 1004.0
    # Leaving and reloading happen before the release, and only to those who came early.
    assert all(990.0 <= plan.leave_at < 1000.0 for plan in made if plan.leave_at is not None)
    assert all(plan.arrive_at <= plan.reload_at < 1000.0 for plan in made if plan.reload_at is not None)
    leavers = sum(plan.leave_at is not None for plan in made)
    assert 100 < leavers < 180  # about 20 % of the 700
    assert 200 < sum(plan.buy_now for plan in made) < 400  # about 30 %
    # Everyone lists every size; size 16 (weight 0) is always last, size 14 first about 3 times in 4.
    assert all(sorted(plan.sizes) == [14, 15, 16] and plan.sizes[-1] == 16 for plan in made)
    first = Counter(plan.sizes[0] for plan in made)
    assert 680 < first[14] < 820
    assert plans(scenario, weights, 1000.0, random.Random(5)) == made  # a seed repeats the drop


def test_sizes_are_chosen_by_their_weights():
    rng = random.Random(1)
    orders = [choose_sizes(rng, {1: 1.0, 2: 1.0}) for _ in range(2000)]
    assert 900 < sum(order[0] == 1 for order in orders) < 1100
    assert choose_sizes(rng, {7: 0.0, 8: 0.0}) in ((7, 8), (8, 7))


def test_a_refused_checkout_is_read_from_its_page():
    assert checkout_refusal("Your cart has out-of-stock shoes") == "out_of_stock"
    assert checkout_refusal("Your purchase could not be completed (item 14 is sold out)") == "sold_out"
    assert checkout_refusal("Your purchase could not be completed (the store is busy)") == "failed"
    assert checkout_refusal("Something new") == "refused"


def test_shoppers_on_this_machine_send_from_addresses_of_their_own():
    assert loopback_sources("http://127.0.0.1:8000")[:2] == ["127.0.0.2", "127.0.0.3"]
    assert len(loopback_sources("http://localhost:8000")) == 253
    assert loopback_sources("https://shop.example") is None
