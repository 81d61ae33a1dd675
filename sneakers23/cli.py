"""The `sneakers23` command: operators' and data engineers' way into the inventory API."""

from __future__ import annotations

import json
import sys

import click

from sneakers23.domain.catalog import Product
from sneakers23.errors import Sneakers23Error
from sneakers23.inventory import Inventory

PROG = "sneakers23"


class _Commands(click.Group):
    """Every failure ends as one line on stderr and a non-zero exit, never a traceback."""

    def main(self, args=None, prog_name=PROG, **extra):
        try:
            return super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo(f"{PROG}: interrupted", err=True)
            sys.exit(130)
        except click.ClickException as error:  # bad usage: unknown option, non-numeric id, …
            click.echo(f"{PROG}: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except (Sneakers23Error, ValueError) as error:
            click.echo(f"{PROG}: {error}", err=True)
            sys.exit(1)


def _inventory(ctx: click.Context) -> Inventory:
    inventory = ctx.ensure_object(dict).get("inventory")
    if inventory is None:
        inventory = ctx.obj["inventory"] = Inventory()
        ctx.call_on_close(inventory.close)
    return inventory


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Sneakers23: a real-time store for sneaker drops.

    The database is SNEAKERS23_DATABASE_URL (default: sqlite:///sneakers23.db in this folder).
    """


@cli.group()
def db() -> None:
    """Create, upgrade and seed the database."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create the tables, or bring them to the newest schema."""
    inventory = _inventory(ctx)
    inventory.upgrade_schema()
    click.echo("database schema is up to date")


@db.command("seed")
@click.option("--reset", is_flag=True, help="Delete every product, item and order first.")
@click.option("--random-seed", type=int, default=None, help="Make the random stock counts repeatable.")
@click.option("--if-empty", is_flag=True, help="Do nothing (and succeed) when the database holds products.")
@click.pass_context
def db_seed(ctx: click.Context, reset: bool, random_seed: int | None, if_empty: bool) -> None:
    """Fill the database with the original store's products and random stock."""
    inventory = _inventory(ctx)
    if if_empty and not reset and inventory.is_seeded():
        click.echo("database already seeded: left as it is")
        return
    items = inventory.seed(random_seed=random_seed, reset=reset)
    click.echo(f"seeded {items} items")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@click.pass_context
def products(ctx: click.Context, as_json: bool) -> None:
    """Print the catalog: every product with its sizes, counts and levels."""
    catalog = _inventory(ctx).complete_products()
    if as_json:
        click.echo(json.dumps([_product_json(p) for p in catalog], indent=2))
    else:
        click.echo("\n\n".join(_product_table(p) for p in catalog) or "no products: run `sneakers23 db seed`")


def _product_json(product: Product) -> dict:
    return {
        "id": product.id, "sku": product.sku, "name": product.name, "brand": product.brand,
        "color": product.color, "price_usd": product.price_usd, "released": product.released,
        "items": [
            {"id": i.id, "sku": i.sku, "size": i.size, "available_count": i.available_count, "level": str(i.level)}
            for i in product.items
        ],
    }


def _product_table(product: Product) -> str:
    state = "released" if product.released else "coming soon"
    lines = [
        f"Product {product.id}  {product.sku}  {product.brand} {product.name} ({product.color})  "
        f"${product.price_usd}  {state}",
        f"  {'ITEM':>4}  {'SKU':<8}  {'SIZE':>4}  {'COUNT':>5}  LEVEL",
    ]
    lines += [
        f"  {i.id:>4}  {i.sku:<8}  {i.size:>4}  {i.available_count:>5}  {i.level}" for i in product.items
    ]
    return "\n".join(lines)


@cli.command()
@click.argument("product_ids", metavar="PRODUCT_ID...", nargs=-1, required=True, type=int)
@click.pass_context
def release(ctx: click.Context, product_ids: tuple[int, ...]) -> None:
    """Release products: their sizes go on sale."""
    inventory = _inventory(ctx)
    known = {p.id for p in inventory.complete_products()}
    unknown = [str(i) for i in product_ids if i not in known]
    if unknown:  # checked first, so that a typo releases nothing
        raise Sneakers23Error(f"there is no product {', '.join(unknown)}: nothing was released")
    for product_id in dict.fromkeys(product_ids):
        outcome = inventory.release(product_id)
        verb = "released" if outcome.newly_released else "already released"
        click.echo(f"product {product_id} {verb} (version {outcome.change.version})")


@cli.command()
@click.argument("item_id", type=int)
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True, help="Pairs to sell.")
@click.pass_context
def sell(ctx: click.Context, item_id: int, count: int) -> None:
    """Sell pairs of an item through the purchase path, one synthetic shopper per pair."""
    inventory = _inventory(ctx)
    if sys.stderr.isatty() and count > 1:
        with click.progressbar(length=count, label=f"selling item {item_id}", file=sys.stderr) as bar:
            report = inventory.sell(item_id, count, on_sold=lambda _result: bar.update(1))
    else:
        report = inventory.sell(item_id, count)
    item = report.item
    if report.sold:
        click.echo(f"sold {report.sold} pair(s) of item {item.id} ({item.sku}, size {item.size}): "
                   f"{report.available_count} left, level {report.level}")
    if report.refused is not None:
        raise Sneakers23Error(
            f"stopped after selling {report.sold} of {count}: {report.refused.message} ({report.refused.refusal})"
        )


def main() -> None:
    cli.main()


if __name__ == "__main__":
    main()
