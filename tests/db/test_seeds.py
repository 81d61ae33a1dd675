import pytest

from sneakers23.errors import AlreadySeeded
from sneakers23.inventory import Inventory
from harness import shop

SIZES = ["6", "6.5", "7", "7.5", "8", "8.5", "9", "9.5", "10", "10.5", "11", "11.5", "12"]


def test_seeds_are_the_original_store(inventory):
    products = inventory.complete_products()
    assert [(p.id, p.sku, p.order, p.brand, p.name, p.color, p.price_usd, p.released) for p in products] == [
        (1, "SHU6000", 0, "Snks 23", "Hop Man 3", "yellow/blue", 120, False),
        (2, "SHU6100", 1, "Asler", "Breezy Boost 600", "momentum", 140, False),
    ]
    assert [p.main_image_url for p in products] == ["/static/images/hopman.svg", "/static/images/breezy.svg"]
    items = [i for p in products for i in p.items]
    assert len(items) == 26
    assert [i.id for i in items] == list(range(1, 27))
    assert [i.sku for i in items] == [f"SHU60{n:02d}" for n in range(1, 14)] + [f"SHU61{n:02d}" for n in range(1, 14)]
    assert [i.size for i in items] == SIZES * 2
    assert [i.product_id for i in items] == [1] * 13 + [2] * 13
    assert all(i.available_count == 0 or 201 <= i.available_count <= 1200 for i in items)


def test_a_random_seed_makes_the_stock_repeatable(settings):
    inventory = Inventory(settings)
    inventory.seed(random_seed=7)
    first = shop.all_counts(inventory)
    inventory.seed(random_seed=7, reset=True)
    assert shop.all_counts(inventory) == first
    inventory.seed(random_seed=8, reset=True)
    assert shop.all_counts(inventory) != first
    inventory.close()


def test_seeding_a_stocked_database_is_refused_unless_reset(inventory):
    inventory.release(1)
    assert inventory.purchase("shopper", [1]).ok or shop.available(inventory, 1) == 0
    with pytest.raises(AlreadySeeded, match="--reset"):
        inventory.seed(random_seed=1)
    assert inventory.complete_products()[0].released  # nothing was touched

    inventory.seed(random_seed=1, reset=True)
    products = inventory.complete_products()
    assert [i.id for p in products for i in p.items] == list(range(1, 27))  # ids start over
    assert not any(p.released for p in products)
    assert shop.order_count(inventory) == 0


def test_stock_follows_the_original_distribution(settings):
    """About one size in ten starts out of stock; the rest hold 201 to 1200 pairs."""
    inventory = Inventory(settings)
    counts = []
    for random_seed in range(20):
        inventory.seed(random_seed=random_seed, reset=True)
        counts += shop.all_counts(inventory).values()
    inventory.close()
    zero = sum(1 for c in counts if c == 0)
    assert 0.03 < zero / len(counts) < 0.2
    stocked = [c for c in counts if c]
    assert min(stocked) >= 201 and max(stocked) <= 1200 and max(stocked) - min(stocked) > 800


def test_a_reseed_moves_every_version_forward(inventory):
    inventory.release(1)
    inventory.purchase("shopper", [next(i.id for i in inventory.complete_products()[0].items if i.available_count)])
    before = {i.id: i.version for p in inventory.complete_products() for i in p.items}
    highest = max([*before.values(), *(p.version for p in inventory.complete_products())])
    inventory.seed(random_seed=1, reset=True)
    after = inventory.complete_products()
    assert all(p.version == highest + 1 for p in after)
    assert all(i.version == highest + 1 for p in after for i in p.items)
