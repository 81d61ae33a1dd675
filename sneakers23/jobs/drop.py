"""Mock drops: `sneakers23 drop …`, or as a Ray job:

    ray job submit --address http://HEAD:8265 -- python -m sneakers23.jobs.drop stampede --buyers 10000 --concurrency 200

Both commands buy through the real purchase path, show progress (a bar on a terminal, a line a
second in job logs), and end with a report whose invariants are checked against the database; a
failed invariant makes the command exit non-zero.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from pathlib import Path

import click

from sneakers23 import assembly
from sneakers23.command_line import Commands, Progress
from sneakers23.errors import Sneakers23Error
from sneakers23.inventory import Inventory
from sneakers23.jobs.report import Attempt, DropReport, build_report
from sneakers23.settings import get_settings


def _finish(report: DropReport, as_json: bool, report_file: Path | None) -> None:
    report_to = click.get_current_context().meta.get(_REPORT_TO) if as_json else None
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.table(), file=report_to)
    if report_file is not None:
        report_file.write_text(json.dumps(report.to_dict(), indent=2))
    if not report.ok:
        raise Sneakers23Error("an invariant failed: see the report")


def _publishing_inventory() -> Inventory:
    return assembly.joined_inventory(get_settings(), wait=False)


@click.group(cls=Commands)
def drop() -> None:
    """Drops: a product's drop mode; mock drops (sell-offs and buyer stampedes, with a report that
    proves nothing was oversold); rehearsals of a whole drop, with their reports; the check of a
    fair drop's shuffle."""


_REPORT_TO = "sneakers23.drop.report_to"


def _stdout_for_the_report_alone(ctx: click.Context, _param, as_json: bool) -> bool:
    """With --json, stdout carries the JSON report and nothing else, for the scripts that read it. Ray's
    driver prints the raylet's warnings to stdout ("N worker processes have been started…"), whatever
    `log_to_driver` says: everything else written to stdout goes to stderr, until the process ends."""
    if as_json and _REPORT_TO not in ctx.meta:
        ctx.meta[_REPORT_TO] = sys.stdout
        sys.stdout = sys.stderr
    return as_json


_report_options = [
    click.option("--json", "as_json", is_flag=True, callback=_stdout_for_the_report_alone,
                 help="Print the report as JSON (stdout carries it alone)."),
    click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path),
                 help="Also write the JSON report to this file."),
]


def report_options(command):
    for option in reversed(_report_options):
        command = option(command)
    return command


@drop.command()
@click.argument("product_id", type=int, required=False)
@click.option("--record", "record_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A shuffle's record as published after the drop (JSON: docs/fairness.md), instead of a product's.")
@click.option("--commitment", default=None,
              help="The commitment you noted before the shuffle (its SHA-256 of the seed), to check it too.")
def verify(product_id: int | None, record_file: Path | None, commitment: str | None) -> None:
    """Recompute a drop's shuffle from what was published, and say whether it matches: the record
    of PRODUCT's closed draw or shuffled queue (with the commitment its page showed from the
    start), or a record saved to a file (--record)."""
    from sneakers23.domain.fairness import ShuffleRecord, verify as problems_in

    if (product_id is None) == (record_file is None):
        raise click.UsageError("give a PRODUCT or --record FILE (one of them)")
    if record_file is not None:
        try:
            record = ShuffleRecord.from_dict(json.loads(record_file.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise Sneakers23Error(f"{record_file} is not a shuffle record (JSON, as docs/fairness.md shows)") from None
        shown = None
    else:
        inventory = assembly.database_inventory(get_settings())
        try:
            state = inventory.draw_state(product_id)
            queue = inventory.queue_record(product_id) if state is None else None
        finally:
            inventory.close()
        if queue is not None:  # (a queue's pre-queue, shuffled at the release)
            if queue[1] is None:
                raise Sneakers23Error(f"product {product_id}'s queue is not shuffled yet: its pre-queue is at its release")
            shown, record = queue
        elif state is None or state.record is None:
            raise Sneakers23Error(f"product {product_id} has no closed draw or shuffled queue to check"
                                  + ("" if state is None else ": its draw closes at its release"))
        else:
            record, shown = state.record, state.commitment
    noted = commitment.strip().lower() if commitment else None
    problems = problems_in(record, published_commitment=noted)
    if shown is not None and shown != record.commitment:
        problems.append("the record's commitment is not the one the product page showed")
    if problems:
        raise Sneakers23Error(f"the record does not check out: {'; '.join(problems)}")
    click.echo(f"the record checks out: {len(record.order)} entries in the published order, "
               f"{len(record.removed)} removed (listed with why), seed matching commitment {record.commitment[:16]}…")


@drop.command()
@click.argument("product_id", type=int)
@click.argument("per_minute", metavar="PER_MINUTE|default")
def pace(product_id: int, per_minute: str) -> None:
    """How many shoppers a minute PRODUCT's queue lets in (0 pauses it; `default`: as many as there
    are pairs left, at most SNEAKERS23_QUEUE_ADMISSIONS_PER_MINUTE). Written to the admin audit, as
    the dashboard's button is."""
    import getpass

    from sneakers23.domain.admin import ActionKind, AdminAction, parse_pace

    try:
        chosen = parse_pace(per_minute)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="PER_MINUTE") from None
    inventory = assembly.database_inventory(get_settings())
    try:
        entry = inventory.act(f"{getpass.getuser()}@cli", AdminAction(ActionKind.SET_QUEUE_PACE, product_id=product_id,
                                                                      pace=chosen), client="cli")
    finally:
        inventory.close()
    if not entry.ok:
        raise Sneakers23Error(f"product {product_id}'s queue is unchanged ({entry.result})")
    click.echo(f"product {product_id}'s queue {entry.result}")


@drop.command("sell-until-gone")
@click.option("--per-tick", type=click.IntRange(min=1), default=200, show_default=True, help="Sales per tick.")
@click.option("--tick-ms", type=click.IntRange(min=0), default=250, show_default=True, help="Pause between ticks.")
@report_options
def sell_until_gone(per_tick: int, tick_ms: int, as_json: bool, report_file: Path | None) -> None:
    """Each tick, sell that many pairs of random released sizes that still have stock, until none has."""
    inventory = _publishing_inventory()
    rng = random.Random()
    before = inventory.audit()
    in_stock = [i.id for p in inventory.complete_products() if p.released for i in p.items if i.available_count > 0]
    progress = Progress(sum(before.counts[i] for i in in_stock), "selling")
    attempts: list[Attempt] = []
    started, started_at = time.monotonic(), time.time()
    while in_stock:
        for _ in range(per_tick):
            if not in_stock:
                break
            item_id = rng.choice(in_stock)
            tried = time.perf_counter()
            result = inventory.purchase(f"mock-{uuid.uuid4().hex}", [item_id])
            outcome = "sold" if result.ok else str(result.refusal)
            attempts.append(Attempt(item_id, outcome, (time.perf_counter() - tried) * 1000, time.time()))
            if result.ok:
                progress.advance(note="still selling...")
                if result.units[0].available_count == 0:
                    in_stock.remove(item_id)
            else:
                in_stock.remove(item_id)  # sold out (or withdrawn) under us: pick among the rest
        if in_stock and tick_ms:
            time.sleep(tick_ms / 1000)
    progress.close()
    click.echo("sold out!", err=True)
    seconds = time.monotonic() - started
    _finish(build_report("sell-until-gone", attempts, started_at, seconds, before, inventory.audit(),
                         inventory.settings.max_pairs_per_product), as_json, report_file)


@drop.command()
@click.option("--buyers", type=click.IntRange(min=1), required=True, help="Simulated shoppers, one try each.")
@click.option("--concurrency", type=click.IntRange(min=1), default=100, show_default=True,
              help="Purchases under way at once, over the whole cluster.")
@click.option("--items", "item_list", default=None,
              help="Item ids to race for, comma-separated (default: every released size with stock).")
@click.option("--via", type=click.Choice(["api", "http"]), default="api", show_default=True,
              help="The inventory API directly, or the store's HTTP endpoint.")
@click.option("--url", "urls", multiple=True, default=["http://127.0.0.1:8000"], show_default=True,
              help="With --via http: a store URL; give one per node to use every node in turn.")
@report_options
def stampede(buyers: int, concurrency: int, item_list: str | None, via: str, urls: tuple[str, ...],
             as_json: bool, report_file: Path | None) -> None:
    """N shoppers race to buy, spread as Ray actors over the cluster's nodes."""
    import ray

    inventory = _publishing_inventory()
    if not ray.is_initialized():
        raise Sneakers23Error("a stampede runs on the Ray cluster of a store on this database: start the store "
                              "(or set RAY_ADDRESS)")
    products = inventory.complete_products()
    items = _items_to_race_for(products, item_list)
    pool, per_actor = _buyers_pool(inventory, concurrency, via, urls)
    plan = [(n, random.choice(items)) for n in range(buyers)]
    size = max(1, min(per_actor * 4, buyers // (len(pool) * 4) or 1))
    chunks = [plan[start:start + size] for start in range(0, buyers, size)]
    if via == "http":  # the shoppers wait on the store's page for the drop: each has its cookie
        opening, opened = Progress(buyers, "opening the store"), 0
        for done in _spread(pool, "open_store", [[n for n, _item in chunk] for chunk in chunks]):
            opened += done
            opening.advance(done)
        opening.close()
        if opened < buyers:
            raise Sneakers23Error(f"only {opened} of {buyers} shoppers could open the store at {', '.join(urls)}")
    before = inventory.audit()
    selling = sorted({p.id for p in products for i in p.items if i.id in items})
    transactions_before = _sales_transactions(inventory, selling)
    progress, attempts = Progress(buyers, "buyers"), []
    started, started_at = time.monotonic(), time.time()
    for batch in _spread(pool, "buy", chunks):
        attempts += batch
        progress.advance(len(batch), note=f"sold {sum(a.outcome == 'sold' for a in attempts)}")
    seconds = time.monotonic() - started
    progress.close()
    for buyer in pool:
        ray.kill(buyer)
    report = build_report("stampede", attempts, started_at, seconds, before, inventory.audit(),
                          inventory.settings.max_pairs_per_product)
    if transactions_before is not None:
        report.transactions = _sales_transactions(inventory, selling) - transactions_before
    _finish(report, as_json, report_file)


@drop.command()
@click.argument("scenario_file", metavar="SCENARIO", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="The store the shoppers visit.")
@click.option("--socket-url", default=None,
              help="Where the shoppers' sockets connect, when not the store's URL (a channel replica's own port, "
                   "with Serve's direct ingress).")
@click.option("--shoppers", type=click.IntRange(min=1), default=None, help="Instead of the scenario's number.")
@click.option("--out", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("rehearsal"),
              show_default=True, help="Where the report (JSON, HTML) and the event log (Parquet) are written.")
@click.option("--source", "sources", multiple=True,
              help="A local address the shoppers send from, in turn (give several: on one machine, 127.0.0.2, "
                   "127.0.0.3, … stay under the edge's caps per address).")
@click.option("--json", "as_json", is_flag=True, callback=_stdout_for_the_report_alone,
              help="Print the report as JSON (stdout carries it alone).")
def rehearse(scenario_file: Path, url: str, socket_url: str | None, shoppers: int | None, directory: Path,
             sources: tuple[str, ...], as_json: bool) -> None:
    """Rehearse a whole drop from a SCENARIO file (YAML: docs/rehearsals.md; examples in scenarios/):
    its shoppers, spread as Ray actors over the cluster's nodes, open the page, join the channels,
    wait for the release the rehearsal schedules, and buy through the store's doors. Writes the
    JSON report (invariants checked against the database), the event log (Parquet) and an HTML
    report with charts."""
    import ray

    _have_the_rehearsal_extra()
    from sneakers23.jobs import scenario as scenarios
    from sneakers23.jobs.rehearsal import files_in, product_to_drop, rehearse as run

    scenario = scenarios.load(scenario_file, shoppers)
    inventory = _publishing_inventory()
    product_to_drop(inventory, scenario)  # (a scenario the shop cannot drop is refused before anything starts)
    if not ray.is_initialized():
        raise Sneakers23Error("a rehearsal runs on the Ray cluster of a store on this database: start the store "
                              "(or set RAY_ADDRESS)")
    progress = Progress(scenario.shoppers, "shoppers done")

    def shown(arrived: int, done: int) -> None:
        progress.advance(done - progress.done, note=f"({arrived} arrived)")

    report = run(inventory, scenario, url.rstrip("/"), directory, list(sources) or None, shown,
                 (socket_url or url).rstrip("/"))
    progress.close()
    paths = files_in(directory)
    click.echo(f"wrote {paths.json}, {paths.log} and {paths.html}", err=True)
    _finish(report, as_json, None)


@drop.command()
@click.argument("log_file", metavar="FILE.parquet", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write it (default: beside the log, with .html).")
def report(log_file: Path, html_file: Path | None) -> None:
    """Draw a rehearsal's HTML report again from its event log."""
    _have_the_rehearsal_extra()
    from sneakers23.jobs import drop_charts, event_log

    html_file = html_file or log_file.with_suffix(".html")
    html_file.write_text(drop_charts.render(event_log.read(log_file)))
    click.echo(f"wrote {html_file}")


def _have_the_rehearsal_extra() -> None:
    """Rehearsals need what a store's nodes do not (pyproject.toml's `rehearsal` extra)."""
    import importlib.util

    if missing := [name for name in ("yaml", "pyarrow", "matplotlib") if importlib.util.find_spec(name) is None]:
        raise Sneakers23Error(f"drop rehearsals need {', '.join(missing)}: pip install -e '.[rehearsal]' where the "
                              "rehearsal runs (./dev installs it)")


def _items_to_race_for(products, item_list: str | None) -> list[int]:
    """The sizes asked for (`--items`), or every released size with stock."""
    if item_list:
        try:
            items = [int(i) for i in item_list.split(",") if i.strip()]
        except ValueError:
            raise click.BadParameter(f"{item_list!r} is not a list of item ids", param_hint="--items") from None
    else:
        items = [i.id for p in products if p.released for i in p.items if i.available_count > 0]
    if not items:
        raise Sneakers23Error("nothing to race for: no released size has stock")
    known = {i.id for p in products for i in p.items}
    if unknown := [i for i in items if i not in known]:
        raise Sneakers23Error(f"there is no item {', '.join(map(str, unknown))}")
    return items


def _buyers_pool(inventory: Inventory, concurrency: int, via: str, urls: tuple[str, ...]):
    """Buyer actors spread over the nodes (two a node at most), each with its share of the
    purchases under way; all up before the start line."""
    import ray

    from sneakers23.jobs.buyers import Buyers

    actors = min(concurrency, max(1, len(ray.nodes())) * 2)
    per_actor = max(1, concurrency // actors)
    pool = [Buyers.options(scheduling_strategy="SPREAD").remote(inventory.settings, per_actor, via, list(urls),
                                                                inventory.sales is not None)
            for _ in range(actors)]
    ray.get([buyer.node_id.remote() for buyer in pool])
    return pool, per_actor


def _spread(pool: list, method: str, chunks: list):
    """Each chunk to the pool's next actor; their results as they come in."""
    return _as_they_finish([getattr(pool[k % len(pool)], method).remote(chunk) for k, chunk in enumerate(chunks)])


def _as_they_finish(calls: list):
    """The calls' results, each as soon as it is in."""
    import ray

    pending = list(calls)
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
        for ref in done:
            yield ray.get(ref)


def _sales_transactions(inventory: Inventory, product_ids: list[int]) -> int | None:
    """Write transactions the products' sales actors have committed so far (None without them)."""
    if inventory.sales is None:
        return None
    return sum(inventory.sales.stats(product_id).transactions for product_id in product_ids)


def main() -> None:
    drop.main(prog_name="python -m sneakers23.jobs.drop")


if __name__ == "__main__":
    main()
