"""Pages and fragments, rendered with jinja2 from the repository's templates/ folder."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from sneakers23.domain.catalog import Product

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = Path(os.environ.get("SNEAKERS23_TEMPLATES", ROOT / "templates"))
STATIC = Path(os.environ.get("SNEAKERS23_STATIC", ROOT / "static"))


@lru_cache
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                       trim_blocks=False, lstrip_blocks=False)


def catalog_page(products: list[Product]) -> str:
    return _environment().get_template("catalog.html").render(products=products)


def size_html(product: Product) -> str:
    """The size selector of a product, from the same template as the page."""
    return str(_environment().get_template("_sizes.html").module.sizes(product))
