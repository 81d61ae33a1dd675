"""The sales actor's one way to the database (db/sales.py): a batch of claims admitted in memory is
sold in one transaction, behind the database's guards."""

from __future__ import annotations

from sneakers23.db.sales import sell_claims
from sneakers23.domain.purchases import Refusal
from sneakers23.domain.sales import Claim


def test_a_sign_in_drop_the_ledger_did_not_know_of_yet_sells_nothing_to_a_guest(inventory, settings):
    """The staff made product 1 a sign-in drop; the sales actor's memory has not heard yet and
    admitted a guest with an account's shopper: the database's guard refuses the batch, and the
    purchase by purchase that follows sells to the account alone."""
    inventory.release(1)
    first, second = [i.id for i in inventory.complete_products()[0].items if i.available_count > 0][:2]
    inventory.require_sign_in(1)
    claims = [Claim("account-3", (first,), "k1", True), Claim("a" * 64, (second,), "k2", True)]
    committed = sell_claims(inventory.engine, settings.database_url, 1, claims, settings.max_pairs_per_product)
    assert committed.redone
    account, guest = committed.outcomes
    assert account.ok and guest.refusal is Refusal.SIGN_IN_REQUIRED
    assert len(inventory.orders("a" * 64)) == 0 and len(inventory.orders("account-3")) == 1
