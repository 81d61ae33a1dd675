"""A draw of ENTRIES entries (issue 25: closed, drawn and every pair bought in ≤ 30 s on PostgreSQL),
beside baselines measured in the same run, on a durable PostgreSQL (fsync on) of its own:

- the draw: product 2 made a draw, PAIRS pairs over its sizes, ENTRIES verified accounts each with one
  entry (sizes chosen at random, as a crowd would), then its release; `run_draw` as the release clock
  calls it, timed by step: the close (the shuffle and its record kept), the winners' rounds (each
  round's winners marked and bought in group commits through the drop engine, db/sales.py): the
  figure of the target; then the letters to every entrant, round after round as the release clock
  writes them (each round as many as the postbox has room for, 1,000 here; a counting postbox that
  sends at once: the store's sends on a thread of its own, at the mail server's pace);
- baseline 1, the shuffle alone: domain/fairness.py's `draw` over the same number of entry ids, in
  memory (what no database can make faster);
- baseline 2, the same pairs sold first come, first served: the same number of buyers through the
  same group commit (`sell_claims`), in batches as large as the draw's rounds, on a fresh copy of
  the stock (what the drop engine takes to sell that many pairs at all).

    .venv/bin/python -m bench.draws [--entries 100000] [--pairs 1000]
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import time
from datetime import datetime, timezone

from sqlalchemy import insert, select

from harness import postgres, shop
from sneakers23.db.models import AccountRow, DrawEntryRow
from sneakers23.db.sales import sell_claims
from sneakers23.domain.accounts import Delivery, account_shopper_id
from sneakers23.domain.draws import Outcome
from sneakers23.domain.drops import DropMode
from sneakers23.domain.fairness import draw
from sneakers23.domain.sales import Claim
from sneakers23.inventory import Inventory
from sneakers23.settings import Settings

PRODUCT = 2
CHUNK = 5_000  # rows a bulk insert sends at once


class CountingPostbox:
    """A postbox that sends at once (its receipts come back at once), counting the letters."""

    def __init__(self):
        self.letters = 0

    def post(self, _letter, on_done=None) -> bool:
        self.letters += 1
        if on_done is not None:
            on_done(Delivery.SENT)
        return True

    def room(self) -> int:
        return 1_000  # (the store's postbox holds 1,000)


def accounts(inventory: Inventory, count: int, prefix: str) -> list[str]:
    """`count` verified accounts, made in bulk; their shopper ids."""
    now = datetime.now(timezone.utc)
    ids: list[int] = []
    with inventory.engine.begin() as connection:
        for start in range(0, count, CHUNK):
            rows = [{"email": f"{prefix}{n}@example.com", "email_key": f"{prefix}{n}@example.com",
                     "password_hash": "unused", "verified_at": now, "created_at": now}
                    for n in range(start, min(count, start + CHUNK))]
            connection.execute(insert(AccountRow.__table__), rows)
        ids = list(connection.execute(select(AccountRow.__table__.c.id)
                                      .where(AccountRow.__table__.c.email_key.like(f"{prefix}%"))
                                      .order_by(AccountRow.__table__.c.id)).scalars())
    return [account_shopper_id(account_id) for account_id in ids]


def stock(inventory: Inventory, pairs: int) -> list[int]:
    """Product 2's sizes, `pairs` pairs spread over them (the rest of the catalog as seeded)."""
    sizes = [item.id for item in next(p for p in inventory.complete_products() if p.id == PRODUCT).items]
    for n, item_id in enumerate(sizes):
        shop.set_available(inventory, item_id, pairs // len(sizes) + (n < pairs % len(sizes)))
    return sizes


def the_draw(url: str, entries: int, pairs: int) -> dict:
    postbox = CountingPostbox()
    inventory = Inventory(Settings(database_url=url), mail=postbox)
    try:
        inventory.upgrade_schema()
        inventory.seed(random_seed=1, reset=True)
        inventory.set_drop_mode(PRODUCT, DropMode.DRAW)
        sizes = stock(inventory, pairs)
        made_at = time.perf_counter()
        shoppers = accounts(inventory, entries, "entrant")
        pick = random.Random(23)
        now = datetime.now(timezone.utc)
        with inventory.engine.begin() as connection:
            for start in range(0, entries, CHUNK):
                connection.execute(insert(DrawEntryRow.__table__), [
                    {"product_id": PRODUCT, "shopper_id": shopper, "entry_id": secrets.token_hex(8),
                     "item_id": pick.choice(sizes), "outcome": str(Outcome.ENTERED), "note": "",
                     "entered_at": now, "updated_at": now} for shopper in shoppers[start:start + CHUNK]])
        entered_s = time.perf_counter() - made_at
        inventory.release(PRODUCT)

        steps: dict[str, float] = {}
        timed(inventory.draws, "_close", steps, "close")
        timed(inventory.draws, "_buy", steps, "buy")
        timed(inventory.draws, "_give", steps, "give")
        timed(inventory.draws, "_tell", steps, "tell")
        started = time.perf_counter()
        report = inventory.run_draw(PRODUCT)  # (as the release clock's round: the close, the pairs, letters)
        for _round in range(entries // 1_000 + 10):  # (the rounds after it: letters, as many as the postbox
            if inventory.draw_figures()[PRODUCT]["told"]:  # takes each; a bound, should a round fail quietly)
                break
            inventory.run_due_draws()
        total_s = time.perf_counter() - started
        bought = sum(shop.order_count(inventory, item_id=item_id) for item_id in sizes)
        left = sum(shop.available(inventory, item_id) for item_id in sizes)
        verified = inventory.verify_draw(PRODUCT) == []
        return {"entries": report.entries, "pairs": pairs, "bought": report.bought, "lost": report.lost,
                "orders": bought, "pairs_left": left, "letters": postbox.letters,
                "every_entrant_told": inventory.draw_figures()[PRODUCT]["told"], "record_checks": verified,
                "seconds": round(steps["give"], 2), "close_s": round(steps["close"], 2),
                "purchases_s": round(steps["buy"], 2), "purchase_rounds": steps["buy calls"],
                "letters_s": round(steps["tell"], 2), "letter_rounds": steps["tell calls"],
                "all_s": round(total_s, 2), "entries_made_s": round(entered_s, 1)}
    finally:
        inventory.close()


def timed(service, name: str, steps: dict, step: str) -> None:
    """Wraps the service's step `name` to add its time (and calls) to `steps[step]`."""
    original = getattr(service, name)
    steps[step], steps[f"{step} calls"] = 0.0, 0

    def measured(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            steps[step] += time.perf_counter() - started
            steps[f"{step} calls"] += 1

    setattr(service, name, measured)


def shuffle_alone(entries: int) -> float:
    ids = [secrets.token_hex(8) for _ in range(entries)]
    started = time.perf_counter()
    draw(secrets.token_bytes(32), ids, [])
    return time.perf_counter() - started


def first_come(url: str, pairs: int, batch: int) -> float:
    """The same pairs sold to as many buyers through the same group commit, `batch` at a time."""
    inventory = Inventory(Settings(database_url=url))
    try:
        inventory.seed(random_seed=1, reset=True)
        sizes = stock(inventory, pairs)
        inventory.release(PRODUCT)
        left = {item_id: shop.available(inventory, item_id) for item_id in sizes}
        buyers = accounts(inventory, pairs, "buyer")
        claims = []
        for shopper in buyers:
            item_id = next(i for i in sizes if left[i] > 0)
            left[item_id] -= 1
            claims.append(Claim(shopper, (item_id,), f"first-come-{shopper}", True))
        started = time.perf_counter()
        for at in range(0, len(claims), batch):
            committed = sell_claims(inventory.engine, inventory.settings.database_url, PRODUCT, claims[at:at + batch],
                                    inventory.settings.max_pairs_per_product)
            assert all(not isinstance(o, Exception) and o.ok for o in committed.outcomes), committed.outcomes[:3]
        return time.perf_counter() - started
    finally:
        inventory.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=1_000)
    args = parser.parse_args()
    if args.entries < 1 or not 1 <= args.pairs <= args.entries:
        raise SystemExit("--entries must be at least 1, and --pairs from 1 to --entries")
    server = postgres.start(postgres.find_bindir(), durable=True)
    try:
        drawn = the_draw(server.url, args.entries, args.pairs)
        alone = shuffle_alone(args.entries)
        sold = first_come(server.url, args.pairs, max(1, args.pairs // max(1, drawn["purchase_rounds"])))
    finally:
        server.stop()
    figures = {
        "draw": drawn,
        "baseline_shuffle_alone_s": round(alone, 3),
        "baseline_first_come_sale_s": round(sold, 2),
        "close_over_shuffle_alone": round(drawn["close_s"] / alone, 1),
        "purchases_over_first_come_sale": round(drawn["purchases_s"] / sold, 2),
        "target_s": 30, "met": drawn["seconds"] <= 30 and drawn["orders"] == drawn["bought"]
        and drawn["pairs_left"] == 0 and drawn["record_checks"] and drawn["every_entrant_told"],
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
