"""Draws (sneakers23/inventory/draws.py) on SQLite and PostgreSQL: one entry per account, the
close at the release, the winners' pairs bought in the drawn order, a failed winner's pair passed
on, the record checked, and every entrant told."""

from __future__ import annotations

import itertools

import pytest

from harness import shop
from sneakers23.domain.accounts import account_shopper_id
from sneakers23.domain.changes import DrawFinished
from sneakers23.domain.draws import Outcome
from sneakers23.domain.drops import DropMode
from sneakers23.domain.fairness import commitment
from sneakers23.domain.purchases import Refusal
from sneakers23.errors import DrawProofUsed, DrawRefused, DropModeRefused, NotFound
from sneakers23.inventory import Inventory
from tests.inventory.test_shop import Recorded
from tests.support.letters import Letters

PASSWORD = "analytical engine of 1843"
NUMBERS = itertools.count()


@pytest.fixture
def draw_shop(settings):
    """A seeded inventory that writes letters to a list, product 2 a draw, and two of its sizes
    (2 pairs and 1 pair; the others none)."""
    letters = Letters()
    inventory = Inventory(settings.model_copy(update={"public_url": "https://shop.example"}), mail=letters,
                          replication=Recorded())
    inventory.seed(random_seed=1)
    inventory.set_drop_mode(2, DropMode.DRAW)
    product = next(p for p in inventory.complete_products() if p.id == 2)
    sizes = [item.id for item in product.items]
    for item_id in sizes:
        shop.set_available(inventory, item_id, 0)
    shop.set_available(inventory, sizes[0], 2)
    shop.set_available(inventory, sizes[1], 1)
    yield inventory, letters, sizes
    inventory.close()


def shoppers(inventory, count: int) -> list[tuple[int, str]]:
    """(account id, shopper id) of `count` new verified accounts."""
    made = []
    for _n in range(count):
        account = inventory.sign_up(f"entrant{next(NUMBERS)}@example.com", PASSWORD)
        inventory.verify_email(account.verify_token)
        made.append((account.account.id, account_shopper_id(account.account.id)))
    return made


def test_a_draw_from_the_entries_to_the_winners_orders_and_the_losers_told(draw_shop):
    inventory, letters, (big, small, *_others) = draw_shop
    state = inventory.draw_state(2)
    assert len(state.commitment) == 64 and state.record is None  # committed from the start, nothing drawn yet
    a, b, c, d, e = shoppers(inventory, 5)
    for (_id, shopper), size in zip((a, b, c, d, e), (big, big, big, small, small)):
        assert inventory.enter_draw(shopper, 2, size).outcome is Outcome.ENTERED
    # One entry per account, whatever it asks for the second time.
    again = inventory.enter_draw(a[1], 2, small)
    assert again == inventory.draw_entry(a[1], 2) and again.item_id == big
    assert inventory.draw_entries_per_size(2) == {big: 3, small: 2}
    staff = inventory.draw_figures()[2]  # (what the dashboard shows)
    assert (staff["stage"], staff["entries"], staff["per_size"]) == ("open", 5, {big: 3, small: 2})
    with pytest.raises(DrawRefused, match="sign in"):
        inventory.enter_draw("f" * 64, 2, big)  # a guest
    f = shoppers(inventory, 1)[0]  # (an account with no entry: one that has an entry is given it)
    with pytest.raises(DrawRefused, match="no such size"):
        inventory.enter_draw(f[1], 2, 1)  # a size of product 1
    with pytest.raises(DrawRefused, match="not sold by draw"):
        inventory.enter_draw(f[1], 1, 1)
    with pytest.raises(DropModeRefused, match="5 entries"):
        inventory.set_drop_mode(2, DropMode.FIRST_COME)
    # Nobody buys a draw's pair for themselves, before the close or after.
    inventory.lock_account(c[0])  # taken out before the shuffle
    inventory.release(2)
    assert inventory.purchase(a[1], [big]).refusal is Refusal.SOLD_BY_DRAW

    [report] = inventory.run_due_draws()
    assert (report.entries, report.removed, report.bought, report.failed, report.lost) == (5, 1, 3, 0, 1)
    posted = len(letters.posted)
    assert inventory.run_due_draws() == [] and len(letters.posted) == posted  # given once, told once
    # Its end is published once, after the outcomes are written: each entrant's page reads its own then.
    finished = [change for change in inventory.replication.published if isinstance(change, DrawFinished)]
    assert finished == [DrawFinished(2, 5)]
    staff = inventory.draw_figures()[2]
    assert staff["stage"] == "finished" and staff["per_size"] == {big: 3, small: 2}
    assert staff["text"] == ("draw finished: 5 entries; 3 pairs bought for winners, 0 failed, 1 lost, 1 removed; "
                             "every entrant told")
    assert inventory.draw_figures()[2] == staff  # (told: kept, not counted again)
    assert shop.available(inventory, big) == 0 and shop.available(inventory, small) == 0
    outcomes = {shopper: inventory.draw_entry(shopper, 2) for _id, shopper in (a, b, c, d, e)}
    assert outcomes[a[1]].outcome is outcomes[b[1]].outcome is Outcome.BOUGHT
    assert outcomes[c[1]].outcome is Outcome.REMOVED and outcomes[c[1]].note == "account locked"
    assert sorted(outcomes[s].outcome for s in (d[1], e[1])) == [Outcome.BOUGHT, Outcome.LOST]
    for shopper, entry in outcomes.items():
        bought = [pair for pair in inventory.orders(shopper)]
        if entry.outcome is Outcome.BOUGHT:
            assert [(pair.item_id, pair.idempotency_key) for pair in bought] == [(entry.item_id, f"draw-{entry.entry_id}")]
        else:
            assert bought == []
    # The record: the commitment shown before, the order of every entry less the removed one.
    record = inventory.draw_state(2).record
    assert record.commitment == state.commitment == commitment(bytes.fromhex(record.seed))
    assert sorted(record.entries) == sorted(entry.entry_id for entry in outcomes.values())
    assert [r.entry for r in record.removed] == [outcomes[c[1]].entry_id] and len(record.order) == 4
    assert inventory.verify_draw(2) == []
    audited = {entry.action: entry for entry in inventory.admin_audit()}
    assert record.seed in audited["draw_closed"].result and "5 entries, 1 removed" in audited["draw_closed"].result
    assert audited["draw_finished"].result.startswith("3 pairs bought for winners; 0 failed, 1 lost")
    # Each winner first in its size's drawn order: the two of the 2 pairs, and the one of the 1.
    by_entry = {entry.entry_id: entry for entry in outcomes.values()}
    first_small = next(e for e in record.order if by_entry[e].item_id == small)
    assert by_entry[first_small].outcome is Outcome.BOUGHT
    # Every entrant told, once, by email.
    told = {letter.to: letter for letter in letters.posted if "draw" in letter.subject}
    assert len(told) == 5 and sum("You won" in letter.subject for letter in told.values()) == 3
    assert all("https://shop.example/api/products/2/draw" in letter.text for letter in told.values())
    # After the close: no entry, and a winner does not buy again.
    with pytest.raises(DrawRefused, match="closed"):
        inventory.enter_draw(f[1], 2, big)
    winner = next(s for s, entry in outcomes.items() if entry.outcome is Outcome.BOUGHT)
    assert inventory.purchase(winner, [outcomes[winner].item_id]).refusal is Refusal.SOLD_BY_DRAW
    inventory.seed(random_seed=1, reset=True)  # a reseed takes the draws with the products
    assert inventory.draw_state(2) is None


def test_a_winner_whose_purchase_fails_passes_the_pair_to_the_next_drawn(draw_shop):
    inventory, letters, (big, small, *_others) = draw_shop
    entrants = shoppers(inventory, 3)
    for _id, shopper in entrants:
        inventory.enter_draw(shopper, 2, small)  # 3 entries for 1 pair
    inventory.release(2)
    record = inventory.draws._close(2)  # (closed: the shuffle is kept; nothing bought yet)
    account_of = {inventory.draw_entry(shopper, 2).entry_id: account_id for account_id, shopper in entrants}
    inventory.lock_account(account_of[record.order[0]])  # the first drawn, locked after the close
    report = inventory.run_draw(2)
    assert (report.removed, report.bought, report.failed, report.lost) == (0, 1, 1, 1)
    by_entry = {inventory.draw_entry(shopper, 2).entry_id: inventory.draw_entry(shopper, 2) for _id, shopper in entrants}
    assert [by_entry[e].outcome for e in record.order] == [Outcome.FAILED, Outcome.BOUGHT, Outcome.LOST]
    assert by_entry[record.order[0]].note == "account locked"
    assert inventory.draw_state(2).record == record  # the close happened once
    assert inventory.verify_draw(2) == []


def test_a_product_that_is_not_a_draw_has_none_to_check(inventory):
    with pytest.raises(NotFound, match="no closed draw"):
        inventory.verify_draw(1)
    inventory.set_drop_mode(1, DropMode.DRAW)
    commitment_made = inventory.draw_state(1).commitment
    inventory.set_drop_mode(1, DropMode.DRAW)  # set again: the same commitment
    assert inventory.draw_state(1).commitment == commitment_made
    inventory.set_drop_mode(1, DropMode.QUEUE)  # nobody entered: it may change, and the draw goes
    assert inventory.draw_state(1) is None


def test_only_the_draws_own_purchase_buys_a_winners_pair_and_a_passing_error_keeps_the_winner(draw_shop, monkeypatch):
    from sneakers23.db.sales import sell_claims
    from sneakers23.domain.draws import draw_key
    from sneakers23.domain.sales import Claim
    from sneakers23.errors import SalesBusy
    from sneakers23.inventory import draws as draws_service

    inventory, _letters, (_big, small, *_others) = draw_shop
    [(_id, shopper)] = shoppers(inventory, 1)
    entry = inventory.enter_draw(shopper, 2, small)
    inventory.release(2)
    inventory.draws._close(2)
    # The winner is drawn (marked won) but the run stops before its purchase: a passing error.
    def busy(*_args, **_kwargs):
        raise SalesBusy("sizes are being bought by many at once")

    monkeypatch.setattr(draws_service, "sell_claims", busy)
    assert inventory.run_due_draws() == []  # (logged; tried again at the next round)
    assert inventory.draw_entry(shopper, 2).outcome is Outcome.WON
    # Meanwhile the winner buys the pair themselves, under a key of their own: refused, by the
    # database's facts (no sales actor here) and by a group commit's guard.
    assert inventory.purchase(shopper, [small], "my-own-key").refusal is Refusal.SOLD_BY_DRAW
    committed = sell_claims(inventory.engine, inventory.settings.database_url, 2,
                            [Claim(shopper, (small,), "another-key", True)], 2)
    assert committed.redone and committed.outcomes[0].refusal is Refusal.SOLD_BY_DRAW
    assert shop.available(inventory, small) == 1
    # The next round buys it, under the entry's key, once.
    monkeypatch.undo()
    [report] = inventory.run_due_draws()
    assert report.bought == 1 and inventory.draw_entry(shopper, 2).outcome is Outcome.BOUGHT
    assert [pair.idempotency_key for pair in inventory.orders(shopper)] == [draw_key(entry.entry_id)]
    assert inventory.run_draw(2).bought == 1  # (again: nothing more is bought, nobody told twice)
    assert shop.available(inventory, small) == 0


def test_a_draw_stopped_between_its_finish_and_its_letters_tells_every_entrant_at_the_next_round(draw_shop, monkeypatch):
    inventory, letters, (_big, small, *_others) = draw_shop
    entrants = shoppers(inventory, 2)
    for _id, shopper in entrants:
        inventory.enter_draw(shopper, 2, small)  # 2 entries for 1 pair
    inventory.release(2)

    def stopped(*_args):  # (the process dies, or the database goes, as the letters are written)
        raise ConnectionError("the database went away")

    def told() -> list[str]:
        return sorted(letter.subject.split(":")[0] for letter in letters.posted if "draw" in letter.subject)

    monkeypatch.setattr(inventory.draws, "_tell", stopped)
    assert inventory.run_due_draws() == []  # (logged; tried again at the next round)
    assert inventory.draw_state(2).finished_at is not None and told() == []
    monkeypatch.undo()
    assert inventory.run_due_draws() == []  # nothing left to give (no report): it tells
    assert told() == ["The draw is closed", "You won the draw"] and inventory.draw_figures()[2]["told"]
    inventory.run_due_draws()
    inventory.run_draw(2)  # (run again by hand: nobody told twice)
    assert len(told()) == 2


def test_a_proof_of_work_makes_one_entry_whichever_account_brings_it(draw_shop):
    inventory, _letters, (big, small, *_others) = draw_shop
    (_a, first), (_b, second), (_c, third) = shoppers(inventory, 3)
    proof = "c" * 64  # (its challenge: serve/proof_of_work.py checked the solution)
    made = inventory.enter_draw(first, 2, big, proof)
    assert inventory.enter_draw(first, 2, small, proof) == made  # the same account: its entry, as before
    with pytest.raises(DrawProofUsed, match="used already"):
        inventory.enter_draw(second, 2, big, proof)  # another account (a bot's next): refused
    assert inventory.draw_entry(second, 2) is None
    assert inventory.enter_draw(second, 2, big, "d" * 64).outcome is Outcome.ENTERED
    assert inventory.enter_draw(third, 2, small).item_id == small  # (the proof of work off: no proof to keep)
    assert inventory.draw_entries_per_size(2) == {big: 2, small: 1}


def test_letters_lost_with_the_process_are_posted_again_and_a_small_postbox_takes_them_round_by_round(settings):
    lost = Letters(sends=False)  # (posted, never sent: the process dies with them in its postbox)
    inventory = Inventory(settings.model_copy(update={"public_url": "https://shop.example"}), mail=lost)
    inventory.seed(random_seed=1)
    inventory.set_drop_mode(2, DropMode.DRAW)
    item = next(p for p in inventory.complete_products() if p.id == 2).items[0].id
    shop.set_available(inventory, item, 1)
    entrants = shoppers(inventory, 3)
    for _id, shopper in entrants:
        inventory.enter_draw(shopper, 2, item)
    inventory.release(2)
    drawn = lambda letters: sorted(letter.to for letter in letters.posted if "draw" in letter.subject)  # noqa: E731
    [report] = inventory.run_due_draws()
    assert (report.bought, report.lost) == (1, 2) and len(drawn(lost)) == 3
    inventory.run_due_draws()  # (a round of letters: none posted twice while in the postbox)
    assert not inventory.draw_figures()[2]["told"] and len(drawn(lost)) == 3
    inventory.close()

    # The release clock starts again, with a postbox that takes one letter at a time.
    small = Letters(room_for=1)
    again = Inventory(settings.model_copy(update={"public_url": "https://shop.example"}), mail=small)
    try:
        rounds = 0
        while not again.draw_figures()[2]["told"]:
            assert again.run_due_draws() == []  # (rounds of letters: nothing new to report)
            rounds += 1
            assert rounds <= 4, drawn(small)
        assert rounds == 3 and drawn(small) == drawn(lost)  # every entrant, once each
        assert again.draw_figures()[2]["stage"] == "finished"
    finally:
        again.close()


def test_a_letter_the_postbox_gives_up_on_is_posted_again_then_given_up_and_the_draw_is_told(draw_shop):
    inventory, _letters, (_big, small, *_others) = draw_shop
    entrants = shoppers(inventory, 2)
    for _id, shopper in entrants:
        inventory.enter_draw(shopper, 2, small)
    first_address = next(letter.to for letter in _letters.posted if "Confirm" in letter.subject)
    refusing = Letters(refused=(first_address,))  # (a mailbox that does not exist: the first entrant's)
    inventory.draws.mail = refusing
    inventory.release(2)
    rounds = 0
    while not inventory.draw_figures()[2]["told"]:
        inventory.run_due_draws()
        rounds += 1
        assert rounds <= 5
    to_refused = [letter for letter in refusing.posted if letter.to in refusing.refused]
    assert len(to_refused) == 3 and rounds == 3  # posted 3 times in all, then given up: the draw is told
    inventory.run_due_draws()
    assert len(refusing.posted) == 4  # (the other entrant's, once; nothing more after)


def test_while_the_mail_server_is_away_letters_are_posted_again_until_it_is_back(draw_shop):
    inventory, _letters, (_big, small, *_others) = draw_shop
    for _id, shopper in shoppers(inventory, 2):
        inventory.enter_draw(shopper, 2, small)
    away = Letters(unreached=True)
    inventory.draws.mail = away
    inventory.release(2)
    for _round in range(5):
        inventory.run_due_draws()
    assert len(away.posted) == 10 and not inventory.draw_figures()[2]["told"]  # each round, both again
    assert inventory.draw_figures()[2]["text"].endswith("2 entrants still to be told")
    back = Letters()
    inventory.draws.mail = back
    inventory.run_due_draws()
    assert len(back.posted) == 2 and inventory.draw_figures()[2]["told"]


def test_a_draw_nobody_entered_finishes_and_is_told_at_once(draw_shop):
    inventory, letters, _sizes = draw_shop
    inventory.release(2)
    [report] = inventory.run_due_draws()
    assert report.entries == 0 and inventory.draw_figures()[2]["told"]
    assert DrawFinished(2, 0) in inventory.replication.published
    assert [letter for letter in letters.posted if "draw" in letter.subject] == []
    assert inventory.run_due_draws() == []
