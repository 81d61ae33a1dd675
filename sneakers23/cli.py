"""The `sneakers23` command: operators' and data engineers' way into the inventory API."""

from __future__ import annotations

import getpass
import json
import re
from datetime import datetime, timedelta, timezone

import click

from sneakers23.domain.catalog import Product
from sneakers23.domain.drops import MODES, parse_drop_mode
from sneakers23.domain.views import product_view
from sneakers23.domain.words import counted
from sneakers23 import assembly
from sneakers23.command_line import Commands, Progress
from sneakers23.errors import Sneakers23Error
from sneakers23.inventory import Inventory
from sneakers23.settings import check_ray_token, get_settings

def _inventory(ctx: click.Context, publish: bool = False) -> Inventory:
    """The inventory API; with publish, changes also go to the caches of a running cluster."""
    inventory = ctx.ensure_object(dict).get("inventory")
    if inventory is None:
        settings = get_settings()
        inventory = assembly.joined_inventory(settings) if publish else assembly.database_inventory(settings)
        ctx.obj["inventory"] = inventory
        ctx.call_on_close(inventory.close)
    return inventory


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Sneakers23: a real-time store for sneaker drops.

    The database is SNEAKERS23_DATABASE_URL (default: sqlite:///sneakers23.db in this folder).
    """
    check_ray_token()  # every command: a node's `node join` and the head's `db upgrade` too


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
        click.echo(json.dumps([product_view(p, counts=True) for p in catalog], indent=2))
    else:
        click.echo("\n\n".join(_product_table(p) for p in catalog) or "no products: run `sneakers23 db seed`")


def _product_table(product: Product) -> str:
    state = "released" if product.released else "coming soon"
    if not product.released and product.release_at is not None:
        state += f" (on sale at {product.release_at.astimezone().isoformat(timespec='seconds')})"
    if product.drop_mode.needs_sign_in:
        state += f", a {product.drop_mode} drop"
    lines = [
        f"Product {product.id}  {product.sku}  {product.brand} {product.name} ({product.color})  "
        f"${product.price_usd}  {state}",
        f"  {'ITEM':>4}  {'SKU':<8}  {'SIZE':>4}  {'COUNT':>5}  LEVEL",
    ]
    lines += [
        f"  {i.id:>4}  {i.sku:<8}  {i.size:>4}  {i.available_count:>5}  {i.level}" for i in product.items
    ]
    return "\n".join(lines)


class _Moment(click.ParamType):
    """An ISO 8601 time (local time when it names no zone), as an aware datetime."""

    name = "TIME"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not a time like 2026-12-01T18:00 or 2026-12-01T18:00:00+01:00", param, ctx)
        return moment.astimezone() if moment.tzinfo is None else moment


class _Duration(click.ParamType):
    """A delay such as 90, 30s, 5m or 2h, in seconds."""

    name = "DURATION"
    UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}

    def convert(self, value, param, ctx):
        match = re.fullmatch(r"(\d+)([smh]?)", str(value).strip())
        if not match or int(match.group(1)) == 0:
            self.fail(f"{value!r} is not a delay such as 90, 30s, 5m or 2h", param, ctx)
        return timedelta(seconds=int(match.group(1)) * self.UNITS[match.group(2)])


@cli.command()
@click.argument("product_ids", metavar="PRODUCT_ID...", nargs=-1, required=True, type=int)
@click.option("--at", "at", type=_Moment(), help="Release at this time instead of now (ISO 8601).")
@click.option("--in", "after", type=_Duration(), help="Release after this delay instead of now (30s, 5m, 2h).")
@click.option("--cancel", is_flag=True, help="Cancel a scheduled release.")
@click.pass_context
def release(ctx: click.Context, product_ids: tuple[int, ...], at: datetime | None, after: timedelta | None,
            cancel: bool) -> None:
    """Release products now, or schedule (--at, --in) or cancel (--cancel) their release."""
    if sum(x is not None and x is not False for x in (at, after, cancel)) > 1:
        raise click.UsageError("give at most one of --at, --in and --cancel")
    inventory = _inventory(ctx, publish=True)
    known = {p.id for p in inventory.complete_products()}
    unknown = [str(i) for i in product_ids if i not in known]
    if unknown:  # checked first, so that a typo releases nothing
        raise Sneakers23Error(f"there is no product {', '.join(unknown)}: nothing was released")
    if after is not None:
        at = datetime.now(timezone.utc) + after
    for product_id in dict.fromkeys(product_ids):
        if cancel:
            change = inventory.schedule_release(product_id, None)
            click.echo(f"product {product_id}: scheduled release cancelled (version {change.version})")
        elif at is not None:
            change = inventory.schedule_release(product_id, at.astimezone(timezone.utc))
            click.echo(f"product {product_id} goes on sale at {change.release_at.astimezone().isoformat(timespec='seconds')}"
                       f" (version {change.version})" + (
                           f"; sold to signed-in shoppers only (`sneakers23 sign-in {product_id} --not-required` "
                           "sells to guests too)" if change.sign_in_required else ""))
        else:
            outcome = inventory.release(product_id)
            verb = "released" if outcome.newly_released else "already released"
            click.echo(f"product {product_id} {verb} (version {outcome.change.version})")


@cli.command("sign-in")
@click.argument("product_ids", metavar="PRODUCT_ID...", nargs=-1, required=True, type=int)
@click.option("--required/--not-required", default=True, show_default=True,
              help="Sell only to signed-in shoppers with a confirmed address, or to guests too.")
@click.pass_context
def sign_in(ctx: click.Context, product_ids: tuple[int, ...], required: bool) -> None:
    """Whether a product sells only to signed-in shoppers (then its pair limit counts per account,
    not per cookie). Written to the admin audit, as the dashboard's button is."""
    from sneakers23.domain.admin import ActionKind, AdminAction

    inventory = _inventory(ctx, publish=True)
    kind = ActionKind.REQUIRE_SIGN_IN if required else ActionKind.ALLOW_GUESTS
    refused = []
    for product_id in dict.fromkeys(product_ids):
        entry = inventory.act(f"{getpass.getuser()}@cli", AdminAction(kind, product_id=product_id), client="cli")
        if entry.ok:
            click.echo(f"product {product_id}: {entry.result}")
        else:
            refused.append(f"product {product_id} is unchanged ({entry.result})")
    if refused:
        raise Sneakers23Error("; ".join(refused))


@cli.command()
@click.argument("item_id", type=int)
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True, help="Pairs to sell.")
@click.pass_context
def sell(ctx: click.Context, item_id: int, count: int) -> None:
    """Sell pairs of an item through the purchase path, one synthetic shopper per pair."""
    inventory = _inventory(ctx, publish=True)
    with Progress(count, f"selling item {item_id}", lines=False) as progress:
        report = inventory.sell(item_id, count, on_sold=lambda _result: progress.advance())
    item = report.item
    if report.sold:
        click.echo(f"sold {counted(report.sold, 'pair')} of item {item.id} ({item.sku}, size {item.size}): "
                   f"{report.available_count} left, level {report.level}")
    if report.refused is not None:
        raise Sneakers23Error(
            f"stopped after selling {report.sold} of {count}: {report.refused.message} ({report.refused.refusal})"
        )


@cli.group()
def admin() -> None:
    """The admin dashboard (/admin): its audit and its login throttle."""


@admin.command("unlock")
@click.pass_context
def admin_unlock(ctx: click.Context) -> None:
    """Let admins log in again at once, past the throttle of failed logins (written to the audit)."""
    entry = _inventory(ctx).unlock_logins(f"{getpass.getuser()}@cli")
    click.echo(f"admin logins unlocked ({entry.at:%Y-%m-%d %H:%M:%S} UTC, audit entry {entry.id})")


@admin.command("audit")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.pass_context
def admin_audit(ctx: click.Context, limit: int) -> None:
    """The newest entries of the admin audit: who did what, when, and how it went."""
    for entry in _inventory(ctx).admin_audit(limit):
        click.echo(f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.who:<16} {entry.action:<15} {entry.target:<12} "
                   f"{'ok' if entry.ok else 'REFUSED':<7} {entry.result}")


@cli.group()
def account() -> None:
    """Shoppers' accounts: look one up, lock it, unlock it (each written to the admin audit)."""


def _act_on_account(ctx: click.Context, kind_name: str, who: str) -> None:
    from sneakers23.domain.admin import ActionKind

    entry, seen = _inventory(ctx, publish=True).act_on_account(f"{getpass.getuser()}@cli", ActionKind(kind_name),
                                                                who, client="cli")
    if not entry.ok:
        raise Sneakers23Error(entry.result)
    click.echo(seen if kind_name == "look_up_account" else f"{entry.target} {entry.result}\n{seen}")


@account.command("show")
@click.argument("who", metavar="ID_OR_EMAIL")
@click.pass_context
def account_show(ctx: click.Context, who: str) -> None:
    """An account: its address, whether it is verified or locked, its sessions and pairs bought."""
    _act_on_account(ctx, "look_up_account", who)


@account.command("lock")
@click.argument("who", metavar="ID_OR_EMAIL")
@click.pass_context
def account_lock(ctx: click.Context, who: str) -> None:
    """Lock an account: every session of it ends, its cart is emptied, its places in queues and
    its draw entries are taken out, and it cannot sign in."""
    _act_on_account(ctx, "lock_account", who)


@account.command("unlock")
@click.argument("who", metavar="ID_OR_EMAIL")
@click.pass_context
def account_unlock(ctx: click.Context, who: str) -> None:
    """Let a locked account sign in again."""
    _act_on_account(ctx, "unlock_account", who)


@cli.command()
@click.argument("item_id", type=int)
@click.argument("count", type=click.IntRange(min=1))
@click.pass_context
def restock(ctx: click.Context, item_id: int, count: int) -> None:
    """Add COUNT pairs to a size: the pages, and the product's sales, follow at once."""
    change = _inventory(ctx, publish=True).restock(item_id, count)
    click.echo(f"item {item_id} restocked: {change.available_count} left, level {change.level} "
               f"(version {change.version})")


@cli.group()
def node() -> None:
    """What a cluster node runs beside Ray (cluster.yaml runs it)."""


@node.command("join")
@click.argument("address")
def node_join(address: str) -> None:
    """Start this worker's Ray, joined to the head at ADDRESS (host:port), so that all of its Ray
    processes end once it has lost the head (after `ray down`, for one)."""
    from sneakers23 import node as cluster_node

    try:
        said = cluster_node.join(address)
    except RuntimeError as error:
        raise Sneakers23Error(str(error)) from None
    click.echo(said.rstrip())


@node.command("stop")
def node_stop() -> None:
    """Stop this worker's Ray: `ray stop`, then the `ray start --block` that `node join` left waiting."""
    import subprocess
    import sys
    from pathlib import Path

    from sneakers23 import node as cluster_node

    subprocess.run([str(Path(sys.executable).with_name("ray")), "stop"], check=False)
    click.echo("the node's `ray start --block` ended" if cluster_node.stop() else "no `node join` was running")


@cli.command()
@click.option("--host", default=None, help="Address to listen on  [default: 127.0.0.1; on a joined cluster, "
              "where its Serve listens]")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port to listen on  [default: 8000; on a joined cluster, where its Serve listens]")
@click.option("--address", envvar="RAY_ADDRESS", default=None, metavar="HOST:PORT",
              help="Join the Ray cluster at this address (also RAY_ADDRESS) instead of starting one of its own.")
@click.option("--replace", is_flag=True,
              help="With --address: take the place of the store already running on that cluster.")
@click.option("--release", "release", type=click.IntRange(min=1), multiple=True, metavar="PRODUCT_ID",
              help="Put this product on sale once the database is ready (repeatable; `./dev store` releases 1).")
def serve(host: str | None, port: int | None, address: str | None, replace: bool, release: tuple[int, ...]) -> None:
    """Run the live store: Ray, the node caches, the pages and the product channels.

    It starts a Ray cluster of its own on this machine, and Ctrl-C (or SIGTERM) stops all of it.
    With --address it joins a running cluster instead, and leaves a store already running there
    as it is unless --replace is given.
    """
    from sneakers23.serve.run import run_store

    run_store(get_settings(), host, port, address=address or None, replace=replace, release=release)


@cli.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show the cluster's nodes, each cache's version and lag behind the database, and replication."""
    import time

    import ray

    from sneakers23 import cluster
    from sneakers23.db.engine import describe_url

    inventory = _inventory(ctx)
    database_version = inventory.database_version()
    click.echo(f"database     {describe_url(inventory.settings.database_url)}  version {database_version}")
    if not cluster.join(inventory.settings):
        raise Sneakers23Error("no store on this database runs on a Ray cluster here (nor at RAY_ADDRESS): "
                              "no cache to report on")
    replicator = cluster.replicator()
    if replicator is None:
        raise Sneakers23Error("the store's replication is not running on this cluster: start the store")
    try:
        report = ray.get(replicator.status.remote(), timeout=30)
    except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as error:
        raise Sneakers23Error(f"the replication actor did not answer: {type(error).__name__}") from None
    now = time.time()
    fault = report.fault
    fault_text = (f", FAULT INJECTION ON: dropping {fault['drop_probability']:.0%} of deliveries"
                  f" to {fault['node_id'] or 'every node'}") if fault["drop_probability"] else ""
    click.echo(f"replication  alive, up {now - report.started_at:.0f}s: {report.published} change(s) published, "
               f"{report.delivered} deliveries, {report.failed} failed, {report.dropped} dropped{fault_text}"
               + (f"; through {len(report.groups)} relays, one a group of nodes" if report.groups else ""))
    rows = [("NODE", "ADDRESS", "ROLE", "CACHE", "VERSION", "LAG", "LAST RESYNC")]
    for node in report.nodes:
        role = "head" if node.is_head else "worker"
        if node.cache is None:
            rows.append((node.node_id[:12], node.address, role, "DOWN", "-", "-", node.error or ""))
            continue
        stats = node.cache
        resync = f"{now - stats.last_resync_at:.1f}s ago" if stats.last_resync_at else "not yet"
        rows.append((node.node_id[:12], node.address, role, "ready", str(stats.version),
                     str(database_version - stats.version), resync))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for stats in _sales_stats():
        refused = sum(stats.refusals.values())
        click.echo(f"sales        product {stats.product_id}: {counted(stats.pairs_sold, 'pair')} sold in "
                   f"{counted(stats.batches, 'batch')}, {counted(stats.transactions, 'transaction')}; {refused} refused and "
                   f"{stats.answered_from_memory - refused} replayed from memory; {stats.busy} turned away busy")
    for line in _channel_lines():
        click.echo(line)


def _channel_lines() -> list[str]:
    """A line for each channel replica of the deployed store: its sockets and its loop's stalls."""
    from sneakers23.serve.deploy import channel_replicas

    return [f"channels     node {replica['node_id'][:12]}: {counted(replica['sockets'], 'socket')}; its loop's "
            f"longest stall {replica['loop_stall_ms']:.0f} ms in the last minute ({replica['loop_stall_ever_ms']:.0f} "
            f"ms ever), {counted(replica['full_collections'], 'full collection')} (longest "
            f"{replica['full_collection_ever_ms']:.0f} ms), the freezer's collection once a drop was over "
            f"{replica.get('planned_pause_ms', 0):.0f} ms in the last minute" for replica in channel_replicas()]


def _sales_stats() -> list:
    """The stats of every product's sales actor running on the joined cluster."""
    import ray

    from sneakers23.cluster import NAMESPACE
    from sneakers23.actors.sales import sales_actor_names

    stats = []
    for name in sales_actor_names():
        try:
            stats.append(ray.get(ray.get_actor(name, namespace=NAMESPACE).read_stats.remote(), timeout=10))
        except Exception:  # restarting: it is shown the next time
            continue
    return sorted(stats, key=lambda s: s.product_id)


from sneakers23.jobs.drop import drop  # noqa: E402 (its group, under this one)

cli.add_command(drop)


@drop.command("mode")
@click.argument("product_id", type=int)
@click.argument("mode", type=click.Choice([str(mode) for mode in MODES], case_sensitive=False))
@click.pass_context
def drop_mode(ctx: click.Context, product_id: int, mode: str) -> None:
    """How a product's pairs go to shoppers at its release: first-come, queue (a waiting room) or
    draw. Set before the release; a queue or a draw sells to signed-in shoppers only. Written to
    the admin audit, as the dashboard's button is."""
    from sneakers23.domain.admin import ActionKind, AdminAction

    action = AdminAction(ActionKind.SET_DROP_MODE, product_id=product_id, mode=parse_drop_mode(mode))
    entry = _inventory(ctx, publish=True).act(f"{getpass.getuser()}@cli", action, client="cli")
    if not entry.ok:
        raise Sneakers23Error(f"product {product_id} is unchanged ({entry.result})")
    click.echo(f"product {product_id}: {entry.result}")


def main() -> None:
    cli.main()


if __name__ == "__main__":
    main()
