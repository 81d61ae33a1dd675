"""The unit of work (db/unit_of_work.py): a transaction's changes are published after its commit,
never when it rolls back, and the driver's errors come out as the shop's one-line errors."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from sneakers23.db.engine import make_engine
from sneakers23.db.unit_of_work import Database
from sneakers23.domain.changes import AvailabilityChanged
from sneakers23.errors import SchemaMissing

CHANGE = AvailabilityChanged(1, 1, 5, 2)


@pytest.fixture
def database(tmp_path):
    url = f"sqlite:///{tmp_path / 'unit.db'}"
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE rows (n INTEGER)"))
    published: list[list] = []
    yield Database(engine, url, published.append), engine, published
    engine.dispose()


def count(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM rows")).scalar_one()


def test_changes_are_published_once_the_transaction_has_committed(database):
    db, engine, published = database
    seen_inside = []
    with db.transaction() as unit:
        unit.connection.execute(text("INSERT INTO rows VALUES (1)"))
        unit.publish([CHANGE])
        seen_inside.append(list(published))
    assert seen_inside == [[]], "nothing is published before the commit"
    assert published == [[CHANGE]] and count(engine) == 1


def test_a_transaction_that_fails_writes_and_publishes_nothing(database):
    db, engine, published = database
    with pytest.raises(RuntimeError):
        with db.transaction() as unit:
            unit.connection.execute(text("INSERT INTO rows VALUES (1)"))
            unit.publish([CHANGE])
            raise RuntimeError("a rule refused it")
    assert published == [] and count(engine) == 0


def test_a_transaction_without_changes_publishes_nothing_and_errors_are_the_shops(database):
    db, _engine, published = database
    with db.transaction() as unit:
        unit.connection.execute(text("INSERT INTO rows VALUES (1)"))
    assert published == []
    with pytest.raises(SchemaMissing, match="sneakers23 db upgrade"):
        with db.reading() as connection:
            connection.execute(text("SELECT * FROM no_such_table"))
    db.published([CHANGE])
    assert published == [[CHANGE]]
