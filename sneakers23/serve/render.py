"""Pages and fragments, rendered with jinja2 from the templates/ folder (in the package when it is
installed from a wheel, at the top of the repository otherwise)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from sneakers23.domain.catalog import Product



def _shipped(name: str) -> Path:
    """The folder as a wheel installs it (sneakers23/<name>), else the repository's (<root>/<name>)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / name
    return installed if installed.is_dir() else package.parent / name


TEMPLATES = Path(os.environ.get("SNEAKERS23_TEMPLATES") or _shipped("templates"))
STATIC = Path(os.environ.get("SNEAKERS23_STATIC") or _shipped("static"))


@lru_cache
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                       trim_blocks=False, lstrip_blocks=False)


def catalog_page(products: list[Product]) -> str:
    return _environment().get_template("catalog.html").render(products=products)


def size_html(product: Product) -> str:
    """The size selector of a product, from the same template as the page."""
    return str(_environment().get_template("_sizes.html").module.sizes(product))
