"""Maintenance: the schema and the seed, the database's own account of stock and sales to check a
drop against, and the reads that caches heal from (anti-entropy)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sneakers23.db import queries, seeds
from sneakers23.db.unit_of_work import Database
from sneakers23.domain.changes import Change
from sneakers23.retries import again_if_deadlocked


@dataclass(frozen=True, slots=True)
class StockAudit:
    """The database's own account of stock and sales, to check a drop against."""

    counts: dict[int, int]  # item -> pairs left
    orders: dict[int, int]  # item -> orders written
    most_pairs_per_size: int  # the most orders any shopper holds for one item
    most_pairs_per_product: int  # the most orders any shopper holds for one product


class Maintenance:
    def __init__(self, database: Database):
        self.database = database

    def upgrade_schema(self) -> None:
        from sneakers23.db import migrate

        with self.database.errors():
            migrate.upgrade(self.database.engine)

    def is_seeded(self) -> bool:
        with self.database.reading() as connection:
            return queries.count_products(connection) > 0

    def seed(self, random_seed: int | None = None, reset: bool = False) -> int:
        def once() -> int:
            with self.database.engine.begin() as connection:
                return seeds.seed(connection, random_seed=random_seed, reset=reset)

        with self.database.errors():
            return again_if_deadlocked(once)

    def audit(self) -> StockAudit:
        with self.database.reading() as connection:
            return StockAudit(*queries.stock_audit(connection))

    def current_changes(self, carts_changed_since: datetime | None = None) -> list[Change]:
        """Every row's current state as a change: what a cache applies to catch up (anti-entropy).
        Of the carts, which grow with the shoppers, only those changed since the moment given."""
        with self.database.reading() as connection:
            return queries.current_changes(connection, carts_changed_since)

    def database_version(self) -> int:
        """The sum of every row's version (of the carts, those that hold something)."""
        return sum(self.database_versions())

    def database_versions(self) -> tuple[int, int]:
        """The sums of the versions of the products and sizes, and of the carts that hold
        something: the figures caches are compared with."""
        with self.database.reading() as connection:
            return queries.version_totals(connection)
