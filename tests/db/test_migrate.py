import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from sneakers23.db import migrate
from sneakers23.db.engine import make_engine


def test_upgrade_builds_exactly_the_models_schema(database_url):
    engine = make_engine(database_url)
    assert migrate.current_revision(engine) == migrate.head_revision()
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), SQLModel.metadata) == []
    engine.dispose()


def test_downgrade_and_upgrade_again(database_url):
    engine = make_engine(database_url)
    migrate.downgrade(engine, "base")
    assert "products" not in inspect(engine).get_table_names()
    migrate.upgrade(engine)
    assert {"products", "items", "item_availabilities", "orders"} <= set(inspect(engine).get_table_names())
    migrate.upgrade(engine)  # at head already: nothing to do
    engine.dispose()


def test_the_database_refuses_negative_stock_and_a_second_availability_row(inventory):
    with pytest.raises(IntegrityError):
        with inventory.engine.begin() as connection:
            connection.execute(text("UPDATE item_availabilities SET available_count = -1 WHERE item_id = 1"))
    with pytest.raises(IntegrityError):
        with inventory.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO item_availabilities (item_id, available_count, version, inserted_at, updated_at) "
                "VALUES (1, 5, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ))


def test_a_database_with_orders_goes_down_a_revision_and_up_again_keeping_every_row(inventory, database_url):
    """SQLite rebuilds a table to add a CHECK or drop a column (0007 does both): with rows pointing
    at `products`, foreign keys on, that failed before migrations turned them off meanwhile."""
    inventory.release(1)
    item = next(item for item in inventory.complete_products()[0].items if item.available_count > 0)
    assert inventory.purchase("a" * 64, [item.id]).ok

    def rows() -> list[int]:
        with inventory.engine.connect() as connection:
            return [connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                    for table in ("products", "items", "item_availabilities", "orders")]

    before = rows()
    engine = make_engine(database_url)
    try:
        migrate.downgrade(engine, "0006")
        assert migrate.current_revision(engine) == "0006" and rows() == before
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision() and rows() == before
        if engine.dialect.name == "sqlite":  # (and the connections after it enforce them again)
            with engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        engine.dispose()


def test_a_product_made_a_draw_before_0008_gets_its_draw_and_commitment(inventory, database_url):
    from sneakers23.domain.drops import DropMode
    from sneakers23.domain.fairness import commitment

    engine = make_engine(database_url)
    try:
        migrate.downgrade(engine, "0007")
        with engine.begin() as connection:  # (as 0007's `drop mode 2 draw` left it)
            connection.execute(text("UPDATE products SET drop_mode = 'draw', sign_in_required = true WHERE id = 2"))
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    state = inventory.draw_state(2)
    assert state is not None and state.record is None and inventory.draw_state(1) is None
    with inventory.engine.connect() as connection:
        seed = connection.execute(text("SELECT seed FROM draws WHERE product_id = 2")).scalar_one()
    assert commitment(bytes.fromhex(seed)) == state.commitment
    assert inventory.set_drop_mode(2, DropMode.DRAW).drop_mode is DropMode.DRAW  # (its draw kept)
    assert inventory.draw_state(2).commitment == state.commitment
