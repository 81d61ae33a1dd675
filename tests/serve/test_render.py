"""The pages' templates, rendered without a store (sneakers23/serve/render.py)."""

from __future__ import annotations

from datetime import datetime, timezone

from sneakers23.domain.catalog import Item, Product
from sneakers23.domain.drops import DropMode
from sneakers23.serve.render import size_html


def product(**changes) -> Product:
    items = (Item(14, "N-01", "6", 2, 5, 1), Item(15, "N-02", "6.5", 2, 0, 1))
    return Product(**{"id": 2, "sku": "N", "order": 1, "brand": "Nike", "name": "Air", "color": "red", "price_usd": 100,
                      "main_image_url": "", "released": False, "version": 1, "items": items, **changes})


def test_a_draw_offers_an_entry_with_one_size_before_its_close_and_no_size_to_buy_after():
    before = size_html(product(drop_mode=DropMode.DRAW, sign_in_required=True,
                               release_at=datetime(2026, 12, 24, 18, 0, tzinfo=timezone.utc)))
    assert 'data-draw-for="2"' in before and "ENTER THE DRAW" in before
    assert '<label class="draw__label" for="draw-size-2">Your size</label>' in before
    assert '<option value="14">6</option>' in before and '<option value="15">6.5</option>' in before
    assert "entries close at <time datetime=\"2026-12-24T18:00:00+00:00\">2026-12-24 18:00 UTC</time>" in before
    assert "data-sign-in-required" not in before  # (the draw says it: one note, not two)
    after = size_html(product(drop_mode=DropMode.DRAW, sign_in_required=True, released=True))
    assert "the draw has closed" in after and "ENTER THE DRAW" not in after
    assert "size-container__entry" not in after  # nothing to buy: the winners' pairs are bought for them
    assert "sneakers23 drop verify 2" in after
    first_come = size_html(product(released=True))
    assert "data-draw-for" not in first_come and first_come.count("size-container__entry ") == 2
