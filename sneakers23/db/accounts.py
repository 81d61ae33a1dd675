"""Accounts, their emailed links and their sessions, as rows. Tokens are kept only as their
SHA-256 (`token_hash`): whoever reads the tables cannot sign in or use a link with what they read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from sneakers23.db.engine import in_batches
from sneakers23.db.models import AccountLinkRow, AccountRow, AccountSessionRow
from sneakers23.domain.accounts import Account, LinkPurpose

accounts_t = AccountRow.__table__
links_t = AccountLinkRow.__table__
sessions_t = AccountSessionRow.__table__


@dataclass(frozen=True, slots=True)
class Credentials:
    account: Account
    password_hash: str


@dataclass(frozen=True, slots=True)
class Link:
    account_id: int
    purpose: LinkPurpose
    made_at: datetime
    used_at: datetime | None


def add_account(connection: Connection, email: str, email_key: str, password_hash: str) -> Account | None:
    """The new account; None when an account of that address exists (the unique index says so,
    racing sign-ups included)."""
    now = datetime.now(timezone.utc)
    try:
        with connection.begin_nested():
            account_id = connection.execute(
                insert(accounts_t).values(email=email, email_key=email_key, password_hash=password_hash,
                                          created_at=now).returning(accounts_t.c.id)).scalar_one()
    except IntegrityError:
        return None
    return Account(account_id, email, False, False, now)


def credentials(connection: Connection, email_key: str, lock: bool = False) -> Credentials | None:
    """The account and its password's hash; with `lock`, its row held until the transaction ends
    (on PostgreSQL; SQLite's writer holds the whole database)."""
    query = select(accounts_t).where(accounts_t.c.email_key == email_key)
    row = connection.execute(query.with_for_update() if lock else query).first()
    return None if row is None else Credentials(_account(row), row.password_hash)


def account(connection: Connection, account_id: int) -> Account | None:
    row = connection.execute(select(accounts_t).where(accounts_t.c.id == account_id)).first()
    return None if row is None else _account(row)


def accounts(connection: Connection, account_ids: set[int]) -> dict[int, Account]:
    """Those of the accounts that exist, by id (a draw writes to all of its entrants at once)."""
    return {row.id: _account(row) for batch in in_batches(account_ids)
            for row in connection.execute(select(accounts_t).where(accounts_t.c.id.in_(batch)))}


def set_password_hash(connection: Connection, account_id: int, password_hash: str) -> None:
    connection.execute(update(accounts_t).where(accounts_t.c.id == account_id).values(password_hash=password_hash))


def mark_verified(connection: Connection, account_id: int) -> None:
    connection.execute(update(accounts_t).where(accounts_t.c.id == account_id, accounts_t.c.verified_at.is_(None))
                       .values(verified_at=datetime.now(timezone.utc)))


def locked_held(connection: Connection, account_id: int) -> bool:
    """Whether the account is locked, read for a place about to be taken in its name: on PostgreSQL
    its row is share-locked until the commit, so a lock made meanwhile waits for the place (and
    takes it out), or the place waits for the lock (and sees it). (It marks the row: one more write
    per join. SQLite's writer holds the whole database: no row lock is needed there.) No such
    account: not locked."""
    query = select(accounts_t.c.locked_at).where(accounts_t.c.id == account_id)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    return connection.execute(query).scalar() is not None


def set_locked(connection: Connection, account_id: int, locked: bool) -> bool:
    """True when the account exists."""
    return connection.execute(update(accounts_t).where(accounts_t.c.id == account_id).values(
        locked_at=datetime.now(timezone.utc) if locked else None)).rowcount == 1


def add_link(connection: Connection, token_hash: str, account_id: int, purpose: LinkPurpose) -> None:
    connection.execute(insert(links_t).values(token_hash=token_hash, account_id=account_id, purpose=purpose.value,
                                              made_at=datetime.now(timezone.utc)))


def link(connection: Connection, token_hash: str) -> Link | None:
    row = connection.execute(select(links_t).where(links_t.c.token_hash == token_hash)).first()
    return None if row is None else Link(row.account_id, LinkPurpose(row.purpose), _utc(row.made_at),
                                         _utc(row.used_at) if row.used_at is not None else None)


def use_link(connection: Connection, token_hash: str) -> bool:
    """Mark the link used; False when another request used it first (a link works once)."""
    return connection.execute(update(links_t).where(links_t.c.token_hash == token_hash, links_t.c.used_at.is_(None))
                              .values(used_at=datetime.now(timezone.utc))).rowcount == 1


def use_links_of(connection: Connection, account_id: int) -> None:
    """Every link of the account not used yet is used up (after a password reset)."""
    connection.execute(update(links_t).where(links_t.c.account_id == account_id, links_t.c.used_at.is_(None))
                       .values(used_at=datetime.now(timezone.utc)))


def add_session(connection: Connection, token_hash: str, account_id: int, client: str, user_agent: str) -> None:
    connection.execute(insert(sessions_t).values(token_hash=token_hash, account_id=account_id,
                                                 created_at=datetime.now(timezone.utc), client=client[:64],
                                                 user_agent=user_agent[:256]))


def sessions(connection: Connection, token_hashes: list[str]) -> dict[str, tuple[Account, datetime]]:
    """`session` of several, in one query: by token hash, those that exist."""
    found = connection.execute(
        select(accounts_t, sessions_t.c.token_hash, sessions_t.c.created_at.label("session_created_at"))
        .join(sessions_t, sessions_t.c.account_id == accounts_t.c.id)
        .where(sessions_t.c.token_hash.in_(set(token_hashes)))).all()
    return {row.token_hash: (_account(row), _utc(row.session_created_at)) for row in found}


def sessions_of(connection: Connection, account_id: int) -> list[AccountSessionRow]:
    rows = connection.execute(select(sessions_t).where(sessions_t.c.account_id == account_id)
                              .order_by(sessions_t.c.created_at.desc())).all()
    return [AccountSessionRow(token_hash=row.token_hash, account_id=row.account_id, created_at=_utc(row.created_at),
                              client=row.client, user_agent=row.user_agent) for row in rows]


def end_session(connection: Connection, token_hash: str) -> int | None:
    """The account whose session it was (None: no such session)."""
    return connection.execute(delete(sessions_t).where(sessions_t.c.token_hash == token_hash)
                              .returning(sessions_t.c.account_id)).scalar()


def end_sessions(connection: Connection, account_id: int) -> int:
    return connection.execute(delete(sessions_t).where(sessions_t.c.account_id == account_id)).rowcount


def end_sessions_of_addresses(connection: Connection, key_like: str, key_pattern: "re.Pattern") -> list[int]:
    """Every session of the accounts whose address key matches the regular expression (those the
    LIKE pattern finds, then checked), ended; their ids."""
    ids = [account_id for account_id, key in connection.execute(
        select(accounts_t.c.id, accounts_t.c.email_key).where(accounts_t.c.email_key.like(key_like)))
        if key_pattern.fullmatch(key)]
    for chunk in range(0, len(ids), 1_000):
        connection.execute(delete(sessions_t).where(sessions_t.c.account_id.in_(ids[chunk:chunk + 1_000])))
    return ids


def _account(row) -> Account:
    return Account(row.id, row.email, row.verified_at is not None, row.locked_at is not None, _utc(row.created_at))


def _utc(moment: datetime) -> datetime:
    # (SQLite gives back naive datetimes: they were written in UTC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def figures(connection: Connection, since: datetime) -> tuple[int, int, int]:
    """(accounts, of them not verified, of them made since `since`): one scan, for the staff."""
    row = connection.execute(select(
        func.count(), func.count(case((accounts_t.c.verified_at.is_(None), 1))),
        func.count(case((accounts_t.c.created_at >= since, 1))))).one()
    return int(row[0]), int(row[1]), int(row[2])
