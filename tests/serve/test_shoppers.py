"""What a web replica remembers of signed-in sessions (serve/shoppers.py `SignedInShoppers`): each
session asked about once per period, again at once when its account changed anywhere (an
AccountChanged through the node's live copy, live.py), and every one after the copy started again."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from sneakers23.domain.accounts import Account
from sneakers23.domain.catalog import Catalog
from sneakers23.domain.changes import AccountChanged
from sneakers23.domain.shopper_events import SessionsToCheck
from sneakers23.errors import DatabaseUnavailable
from sneakers23.actors.node_cache import Snapshot
from sneakers23.live import LiveCatalog
from sneakers23.serve.shoppers import SignedInShoppers
from tests.support import aio  # (asyncio.run in a thread: a Chromium test of the worker keeps a loop here)

KEY = "a-secret-key-for-these-tests-only-and-no-other"


def account(account_id: int, verified: bool = True) -> Account:
    return Account(account_id, f"shopper{account_id}@example.com", verified, False, datetime.now(timezone.utc))


class Database:
    """The lookup: what each session token is now, and how often it was asked."""

    def __init__(self):
        self.sessions: dict[str, Account | None] = {}
        self.asked: list[str] = []
        self.away = False

    async def lookup(self, token: str) -> Account | None:
        self.asked.append(token)
        if self.away:
            raise DatabaseUnavailable("the database is away")
        return self.sessions.get(token)


def test_a_session_is_asked_about_once_a_period_and_again_once_its_account_changed():
    database = Database()
    database.sessions = {"ada-phone": account(1, verified=False), "ada-laptop": account(1), "bob": account(2)}
    remembered = SignedInShoppers(KEY, database.lookup)

    async def visits():
        for _ in range(3):
            for token in ("ada-phone", "ada-laptop", "bob"):
                await remembered.account(token)
        assert database.asked == ["ada-phone", "ada-laptop", "bob"], "each asked once"
        # Ada verifies her address (on another node): both her sessions are asked again, Bob's not.
        database.sessions["ada-phone"] = database.sessions["ada-laptop"] = account(1)
        remembered.forget_account(1)
        assert (await remembered.account("ada-phone")).verified
        await remembered.account("ada-laptop")
        await remembered.account("bob")
        assert database.asked[3:] == ["ada-phone", "ada-laptop"]
        # She signs out everywhere: neither session answers for her any more.
        database.sessions["ada-phone"] = database.sessions["ada-laptop"] = None
        remembered.forget_account(1)
        assert await remembered.account("ada-phone") is None and await remembered.account("ada-laptop") is None
        # Every account's, after the node's copy started again.
        remembered.forget_account(None)
        await remembered.account("bob")
        assert database.asked[-1] == "bob"

    aio.run(visits())


def test_what_was_answered_while_the_database_was_away_is_asked_again_sooner(monkeypatch):
    from sneakers23.serve import shoppers

    clock = [1000.0]
    monkeypatch.setattr(shoppers.time, "monotonic", lambda: clock[0])
    database = Database()
    database.sessions = {"ada": account(1)}
    remembered = SignedInShoppers(KEY, database.lookup)

    async def visits():
        assert (await remembered.account("ada")).id == 1
        clock[0] += shoppers.SESSION_RECHECK_S  # (the period is over)
        database.away = True
        assert (await remembered.account("ada")).id == 1, "what was last seen, while it is away"
        clock[0] += shoppers.OUTAGE_RECHECK_S - 0.1
        await remembered.account("ada")
        assert len(database.asked) == 2, "not asked again at every request during the outage"
        clock[0] += 0.2
        database.away = False
        await remembered.account("ada")
        assert len(database.asked) == 3, "asked again soon after"

    aio.run(visits())


def test_the_live_copy_passes_on_an_accounts_change_and_after_a_new_snapshot_every_account():
    live = LiveCatalog()
    told: list = []
    live.subscribe(told.extend)
    live._install(Snapshot("epoch-1", 0, [], []))
    live._apply([AccountChanged(7)])
    assert told == [SessionsToCheck(None), SessionsToCheck(7)]
    assert Catalog([], []).apply(AccountChanged(7)), "a node's cache passes it on to its followers"
    live._install(Snapshot("epoch-2", 0, [], []))  # (the node's cache restarted)
    assert told[-1] == SessionsToCheck(None)


def test_a_lookup_overtaken_by_a_sign_out_is_not_kept():
    """A lookup under way when the account's sessions were forgotten may carry the answer from
    before the sign-out: it is answered, not kept (the next request asks again)."""
    database = Database()
    database.sessions = {"ada": account(1)}
    remembered = SignedInShoppers(KEY, database.lookup)
    answered = asyncio.Event()

    async def slow_lookup(token):
        found = await database.lookup(token)  # (read before the sign-out commits...)
        await answered.wait()
        return found

    remembered._lookup = slow_lookup

    async def visits():
        asking = asyncio.ensure_future(remembered.account("ada"))
        await asyncio.sleep(0)
        database.sessions["ada"] = None  # ...which commits, and reaches this replica, meanwhile
        remembered.forget_account(1)
        answered.set()
        assert (await asking).id == 1
        assert await remembered.account("ada") is None, "asked again, not the answer from before"

    aio.run(visits())
