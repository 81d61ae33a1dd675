"""Engines for SQLite (the embedded default) and PostgreSQL, set up for concurrent selling."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError, ProgrammingError

from sneakers23.errors import DatabaseUnavailable, SchemaMissing, Sneakers23Error


SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "sneakers23_read_only"


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<malformed URL>"


def database_identity(url: str) -> str:
    """What one database is called whatever the URL's driver, user or password: two URLs with the
    same identity name the same database."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    return f"{parsed.get_backend_name()}://{parsed.host or ''}:{parsed.port or ''}/{parsed.database or ''}"


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise Sneakers23Error(
            f"malformed database URL {url!r}: expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        if parsed.drivername != "postgresql+psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=80, connect_args={"connect_timeout": 5})
    raise Sneakers23Error(f"unsupported database {backend!r} in {describe_url(url)}: use sqlite or postgresql")


def _sqlite_engine(url) -> Engine:
    try:
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
    except NoSuchModuleError as error:  # pragma: no cover - stdlib sqlite3 is always there
        raise Sneakers23Error(str(error)) from None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; safe with WAL
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Writers take the write lock at the start: a deferred transaction that reads and then
        # writes fails with "database is locked" instead of waiting when another writer got in
        # between. Readers (see `reading`) begin deferred and never wait for writers (WAL).
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def translated_errors(url: str) -> Iterator[None]:
    """Turn driver errors into one-line shop errors (the URL shown without its password)."""
    try:
        yield
    except (OperationalError, ProgrammingError) as error:
        text = (str(error.orig if error.orig is not None else error).strip().splitlines() or [repr(error)])[0]
        if "no such table" in text or ("relation" in text and "does not exist" in text):
            raise SchemaMissing(
                f"the database at {describe_url(url)} has no Sneakers23 tables: run `sneakers23 db upgrade`"
            ) from None
        if isinstance(error, OperationalError):
            raise DatabaseUnavailable(f"cannot reach the database at {describe_url(url)}: {text}") from None
        raise
    except DBAPIError as error:
        if error.connection_invalidated:
            raise DatabaseUnavailable(f"lost the connection to the database at {describe_url(url)}") from None
        raise


class QueryCounter:
    """Counts the statements an engine sends to the database: for stats, and for the tests that
    show a refusal reached no database."""

    def __init__(self, engine: Engine):
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args) -> None:
        self.count += 1


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only: on SQLite it does not take the write lock."""
    with engine.connect() as connection:
        connection.execution_options(**{READ_ONLY: True})
        yield connection


KEYS_AT_ONCE = 10_000  # keys in one `IN (…)`: PostgreSQL takes at most 65,535 parameters a statement


def in_batches(keys) -> list[list]:
    """The keys, sorted, in lists short enough for one `IN (…)` each (a draw reads 100,000 accounts)."""
    ordered = sorted(keys)
    return [ordered[start:start + KEYS_AT_ONCE] for start in range(0, len(ordered), KEYS_AT_ONCE)]

