"""The inventory: the one business API of the shop, for the web replicas, the actors, the jobs and
the CLI (each gets its own, put together in sneakers23.assembly).

It knows the shop's operations, not the web or the command line, in six services of one job each,
on one database (db/unit_of_work.py: every write commits, then publishes its changes):
- the shop (shop.py): the catalog, releases, purchases, restocks, orders;
- the carts (carts.py): the sizes shoppers put aside, their grouped changes, idle carts emptied;
- the staff desk (staff_desk.py): the staff's actions through the shop, the audit, the admin's door;
- maintenance (maintenance.py): schema, seed, stock audit, the reads that caches heal from;
- the accounts (accounts.py): shoppers' sign-up, sign-in, sessions, emailed links, locks;
- the draws (draws.py): a draw's entries, and its close (the shuffle, the winners' purchases);
- the waiting rooms (waiting_rooms.py): a queued drop's places, and its keeper's admissions.
`Inventory` puts them together and offers each service's operations under its own name
(`inventory.release(…)` is `inventory.shop.release(…)`). Writes go to the database, which
decides; nothing here decides from memory.

Reads have two places, by design:
- the database, through this API's reads (`complete_products`, `current_changes`, `audit`, …): the
  CLI, the jobs, and the node caches, which load and heal from it;
- memory: pages and channels read their node's live catalog (sneakers23.live), a copy of the node
  cache, and never the database, so that a drop's crowd costs the database nothing.
The one exception is the sales actors' ledger: it loads each product's sales (db.sales) to admit
purchases in memory, since it is the write side of purchases (this API's Sales port).
"""

from __future__ import annotations

import functools
import inspect
from typing import Iterable

from sneakers23.db.engine import make_engine
from sneakers23.db.unit_of_work import Database
from sneakers23.inventory.accounts import Accounts
from sneakers23.domain.changes import Change
from sneakers23.inventory.carts import Carts
from sneakers23.inventory.draws import Draws, DrawReport
from sneakers23.inventory.maintenance import Maintenance, StockAudit
from sneakers23.inventory.ports import Activity, Mail, Replication, Sales
from sneakers23.inventory.shop import ReleaseOutcome, SellReport, Shop
from sneakers23.inventory.staff_desk import StaffDesk
from sneakers23.inventory.waiting_rooms import WaitingRooms
from sneakers23.settings import Settings, get_settings

__all__ = ["Activity", "DrawReport", "Inventory", "Mail", "ReleaseOutcome", "Replication", "Sales", "SellReport", "StockAudit"]

SERVICES = {"shop": Shop, "carts": Carts, "desk": StaffDesk, "maintenance": Maintenance, "accounts": Accounts,
            "draws": Draws, "waiting_rooms": WaitingRooms}


class Inventory:
    """The five services on one database. Every public operation of a service is the inventory's
    operation of the same name: no two services share a name, nor take one of the inventory's own
    (checked as this module loads)."""

    OWN = ("settings", "replication", "sales", "engine", "database", *SERVICES, "close")

    def __init__(self, settings: Settings | None = None, replication: Replication | None = None,
                 sales: Sales | None = None, activity: Activity | None = None, mail: Mail | None = None):
        self.settings = settings or get_settings()
        self.replication = replication
        self.sales = sales
        self.engine = make_engine(self.settings.database_url)  # connects on first use
        self.database = Database(self.engine, self.settings.database_url, self._publish)
        self.shop = Shop(self.database, self.settings, sales, activity)
        self.carts = Carts(self.database, self.settings, activity)
        self.maintenance = Maintenance(self.database)
        self.accounts = Accounts(self.database, mail, self.settings.public_url)
        self.draws = Draws(self.database, self.settings, mail, self.settings.public_url)
        self.waiting_rooms = WaitingRooms(self.database, self.settings)
        self.desk = StaffDesk(self.database, self.shop, self.accounts, self.waiting_rooms)

    def close(self) -> None:
        self.database.close()

    def _publish(self, changes: Iterable[Change]) -> None:
        # (The unit of work calls it, after the commit.)
        if self.replication is not None:
            self.replication.publish(changes)


def operations(service: type) -> list[str]:
    return [name for name, value in vars(service).items() if not name.startswith("_") and inspect.isfunction(value)]


def _through(attribute: str, function):
    if inspect.iscoroutinefunction(function):
        @functools.wraps(function)
        async def operation(self, *args, **kwargs):
            return await getattr(getattr(self, attribute), function.__name__)(*args, **kwargs)
    else:
        @functools.wraps(function)
        def operation(self, *args, **kwargs):
            return getattr(getattr(self, attribute), function.__name__)(*args, **kwargs)
    return operation


for _attribute, _service in SERVICES.items():
    for _name in operations(_service):
        if hasattr(Inventory, _name) or _name in Inventory.OWN:
            raise TypeError(f"the inventory has two things named {_name}")
        setattr(Inventory, _name, _through(_attribute, getattr(_service, _name)))
