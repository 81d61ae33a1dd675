"""Pages and fragments, rendered with jinja2 from the templates/ folder (in the package when it is
installed from a wheel, at the top of the repository otherwise)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from sneakers23.domain.carts import CartLine
from sneakers23.domain.catalog import Product
from sneakers23.domain.drops import MODES
from sneakers23.domain.levels import LEVEL_MARKS, LEVEL_WORDS
from sneakers23.domain.purchases import Order



def _shipped(name: str) -> Path:
    """The folder as a wheel installs it (sneakers23/<name>), else the repository's (<root>/<name>)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / name
    return installed if installed.is_dir() else package.parent / name


TEMPLATES = Path(os.environ.get("SNEAKERS23_TEMPLATES") or _shipped("templates"))
STATIC = Path(os.environ.get("SNEAKERS23_STATIC") or _shipped("static"))


@lru_cache
def _environment() -> Environment:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                              trim_blocks=False, lstrip_blocks=False)
    environment.globals.update(LEVELS=[(level, words, LEVEL_MARKS[level]) for level, words in LEVEL_WORDS.items()],
                               LEVEL_WORDS=LEVEL_WORDS, LEVEL_MARKS=LEVEL_MARKS)
    return environment


# Where a shopper's own part goes in the catalog page, which is otherwise rendered once for everyone.
CART_MARKER = "data-sneakers23-cart-goes-here"


def catalog_page(products: list[Product], cart_attributes: str = CART_MARKER) -> str:
    return _environment().get_template("catalog.html").render(products=products, cart_attributes=cart_attributes)


def checkout_page(lines: list[CartLine], version: int, message: str | None = None, tab: dict | None = None,
                  form_token: str | None = None) -> str:
    return _environment().get_template("checkout.html").render(
        lines=lines, version=version, message=message, any_out=any(line.out_of_stock for line in lines), tab=tab,
        form_token=form_token,
        item_ids=",".join(str(line.item_id) for line in lines),
        subtotal=sum(line.price_usd for line in lines if not line.out_of_stock))


def complete_page(lines: list[CartLine], tab: dict | None = None) -> str:
    return _environment().get_template("complete.html").render(lines=lines, total=sum(line.price_usd for line in lines),
                                                               tab=tab)


def orders_page(orders: list[tuple[Order, list[CartLine]]], tab: dict | None = None) -> str:
    return _environment().get_template("orders.html").render(
        tab=tab, orders=[{"key": order.key, "bought_at": order.bought_at, "lines": lines} for order, lines in orders])


def size_html(product: Product) -> str:
    """The size selector of a product, from the same template as the page."""
    return str(_environment().get_template("_sizes.html").module.sizes(product))


def admin_off_page(message: str) -> str:
    return _environment().get_template("admin_off.html").render(message=message)


def admin_login_page(form_token: str, message: str | None = None) -> str:
    return _environment().get_template("admin_login.html").render(form_token=form_token, message=message)


def dashboard_page(products: list[Product], who: str, csrf: str, socket_token: str, audit: list[dict]) -> str:
    return _environment().get_template("admin.html").render(products=products, who=who, csrf=csrf,
                                                            socket_token=socket_token, audit=audit,
                                                            drop_modes=[str(mode) for mode in MODES])


def page(template: str, **context) -> str:
    """A page of its own template (the account's pages)."""
    return _environment().get_template(template).render(**context)
