"""Change events: each row's change crosses processes intact, and a schedule change is its own."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone

from sneakers23.domain.catalog import Catalog, Item, Product
from sneakers23.domain.changes import (AvailabilityChanged, ProductReleased, ReleaseScheduleChanged,
                                       product_state)
from sneakers23.domain.drops import DropMode

AT = datetime(2026, 12, 1, 18, 0, tzinfo=timezone.utc)


def product(released: bool = False, version: int = 1) -> Product:
    return Product(id=1, sku="SHU6000", order=1, brand="Snks 23", name="Hop Man 3", color="yellow/blue",
                   price_usd=120, main_image_url="/static/images/hopman.svg", released=released, version=version,
                   items=(Item(id=1, sku="SHU6001", size="6", product_id=1, available_count=5, version=1),))


def test_every_change_crosses_a_process_boundary_intact():
    for change in (ProductReleased(1, True, 3, AT), ReleaseScheduleChanged(1, 2, AT), ReleaseScheduleChanged(1, 2, None),
                   ProductReleased(1, True, 4, None, sign_in_required=True),
                   ReleaseScheduleChanged(1, 2, AT, sign_in_required=True), AvailabilityChanged(1, 1, 4, 2),
                   ReleaseScheduleChanged(1, 5, AT, True, DropMode.QUEUE), ProductReleased(1, True, 6, None, True, DropMode.DRAW)):
        assert pickle.loads(pickle.dumps(change)) == change


def test_a_row_state_is_a_release_or_a_schedule():
    assert product_state(1, True, 3, None) == ProductReleased(1, True, 3, None)
    assert product_state(1, False, 2, AT) == ReleaseScheduleChanged(1, 2, AT)
    assert product_state(1, True, 3, None, True).sign_in_required
    assert product_state(1, False, 3, None, True, DropMode.QUEUE).drop_mode is DropMode.QUEUE


def test_a_cache_holds_the_drop_mode_its_newest_change_brings():
    catalog = Catalog([product()])
    assert catalog.product(1).drop_mode is DropMode.FIRST_COME
    assert catalog.apply(ReleaseScheduleChanged(1, 2, None, True, DropMode.QUEUE))
    assert catalog.product(1).drop_mode is DropMode.QUEUE and catalog.sign_in_required(1)
    assert catalog.apply(ProductReleased(1, True, 3, None, True, DropMode.DRAW)) and catalog.product(1).drop_mode is DropMode.DRAW


def test_a_schedule_change_moves_the_release_time_and_leaves_the_product_unreleased():
    catalog = Catalog([product()])
    assert catalog.apply(ReleaseScheduleChanged(1, 2, AT))
    assert catalog.product(1).release_at == AT and not catalog.product(1).released
    assert not catalog.apply(ReleaseScheduleChanged(1, 2, None)), "not newer: ignored"
    assert catalog.apply(ReleaseScheduleChanged(1, 3, None)) and catalog.product(1).release_at is None
    assert catalog.apply(ProductReleased(1, True, 4)) and catalog.released(1)
