"""A product as JSON: for shoppers (levels, never counts), for staff and ops (with its counts), and
an item as a product channel tells it."""

from __future__ import annotations

from sneakers23.domain.catalog import Item, Product


def product_view(product: Product, counts: bool = False) -> dict:
    """Shoppers' (the JSON API): with the image, sizes by level. Staff's (`products --json`): with counts."""
    view = {"id": product.id, "sku": product.sku, "name": product.name, "brand": product.brand,
            "color": product.color, "price_usd": product.price_usd}
    if not counts:
        view["main_image_url"] = product.main_image_url
    view["released"] = product.released
    view["sign_in_required"] = product.sign_in_required
    view["drop_mode"] = str(product.drop_mode)
    view["items"] = [item_view(item, counts) for item in product.items]
    return view


def item_view(item: Item, counts: bool = False) -> dict:
    view = {"id": item.id, "sku": item.sku, "size": item.size}
    if counts:
        view["available_count"] = item.available_count
    view["level"] = str(item.level)
    return view


def item_level(item: Item) -> dict:
    """An item as a product channel tells it: which, and its level (the page has the rest)."""
    return {"id": item.id, "level": str(item.level)}
