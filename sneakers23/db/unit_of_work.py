"""The unit of work: every write of the inventory API is a transaction that translates the
driver's errors into the shop's one-line errors, commits, and only then publishes the change events
it collected. Nobody can publish before the commit (a cache must never show what the database might
still roll back), or forget to: a change is published by handing it to the unit, inside it."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from sqlalchemy import Connection, Engine

from sneakers23.db.engine import reading, translated_errors
from sneakers23.domain.changes import Change


@dataclass
class Unit:
    """One transaction: its connection, and the changes to publish once it has committed."""

    connection: Connection
    changes: list[Change] = field(default_factory=list)

    def publish(self, changes: Iterable[Change]) -> None:
        self.changes.extend(changes)


# Work for callers on an event loop runs in threads of its own: a transaction mostly waits for the
# database (its commit for the disk), so more of them at once than asyncio's default few keep it busy.
DATABASE_THREADS = 32


class Database:
    def __init__(self, engine: Engine, url: str, publish: Callable[[list[Change]], None] | None = None):
        self.engine = engine
        self._url = url
        self._publish = publish
        self._threads: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False)
        self.engine.dispose()

    def in_thread(self, function, *args) -> asyncio.Future:
        """Blocking database work, for a caller on an event loop."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(DATABASE_THREADS, thread_name_prefix="sneakers23-database")
        return asyncio.get_running_loop().run_in_executor(self._threads, function, *args)

    @contextmanager
    def transaction(self) -> Iterator[Unit]:
        """A write: committed when the block ends (rolled back if it raises), then its changes
        are published."""
        with translated_errors(self._url):
            with self.engine.begin() as connection:
                unit = Unit(connection)
                yield unit
        if unit.changes and self._publish is not None:
            self._publish(unit.changes)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read (it never waits for a writer)."""
        with translated_errors(self._url), reading(self.engine) as connection:
            yield connection

    def errors(self):
        """The shop's one-line errors for work that opens its own transactions."""
        return translated_errors(self._url)

    def published(self, changes: Iterable[Change]) -> None:
        """Changes committed by work that ran its own transactions (a purchase that reads again
        when a guard trips): published now, after those commits."""
        changes = list(changes)
        if changes and self._publish is not None:
            self._publish(changes)
