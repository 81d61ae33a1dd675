"""A draw's rules (sneakers23/domain/draws.py) and the purchase rule's part in it, in milliseconds."""

from __future__ import annotations

from sneakers23.domain.draws import (EntryRefusal, staff_figures, Outcome, draw_key, drawn_by_size, entry_of_key, entry_refused,
                                     entry_refusal_message, mode_change_refused, next_winners, result_letter)
from sneakers23.domain.drops import DropMode
from sneakers23.domain.purchases import PurchaseFacts, Refusal, SizeOnSale, answer_purchase


def test_an_entry_needs_a_size_of_the_product_an_open_draw_and_a_signed_in_shopper():
    assert entry_refused(2, DropMode.DRAW, False, 2, True) is None
    assert entry_refused(2, DropMode.DRAW, False, 1, True) is EntryRefusal.NO_SUCH_SIZE
    assert entry_refused(2, DropMode.DRAW, False, None, True) is EntryRefusal.NO_SUCH_SIZE
    assert entry_refused(2, DropMode.QUEUE, False, 2, True) is EntryRefusal.NOT_A_DRAW
    assert entry_refused(2, DropMode.DRAW, True, 2, True) is EntryRefusal.CLOSED
    assert entry_refused(2, DropMode.DRAW, False, 2, False) is EntryRefusal.SIGN_IN_REQUIRED
    assert entry_refused(2, DropMode.DRAW, False, 2, True, proof_used=True) is EntryRefusal.PROOF_USED
    assert "used already" in entry_refusal_message(EntryRefusal.PROOF_USED, 2)
    assert entry_refusal_message(EntryRefusal.CLOSED, 2) == "the draw for product 2 has closed"
    assert "sign in" in entry_refusal_message(EntryRefusal.SIGN_IN_REQUIRED, 2)


def test_a_winners_pair_is_bought_under_its_entrys_key_alone():
    assert entry_of_key(draw_key("0123abcd")) == "0123abcd"
    assert entry_of_key("draw-") is None and entry_of_key("a-key-of-my-own") is None and entry_of_key(None) is None
    # A shopper's own key may not look like one: the database takes such a purchase as a draw's.
    import pytest

    from sneakers23.domain.purchases import validate_purchase

    with pytest.raises(ValueError, match="may not begin with 'draw-'"):
        validate_purchase("a" * 64, [1], "draw-0123abcd")
    validate_purchase("a" * 64, [1], "my-draw-key")


def test_each_sizes_pairs_go_in_the_drawn_order_and_a_failed_winner_passes_the_pair_on():
    order = ["e5", "e1", "e4", "e2", "e3"]
    size_of = {"e1": 10, "e2": 11, "e3": 10, "e4": 10, "e5": 11}
    by_size = drawn_by_size(order, size_of)
    assert by_size == {10: ["e1", "e4", "e3"], 11: ["e5", "e2"]}
    outcomes = {entry: Outcome.ENTERED for entry in size_of}
    assert next_winners(by_size, {10: 2, 11: 1}, outcomes) == ["e1", "e4", "e5"]
    # e1 bought (the stock says 1 left), e4 failed, e5 still being bought: the pair of e4 goes to e3.
    outcomes.update(e1=Outcome.BOUGHT, e4=Outcome.FAILED, e5=Outcome.WON)
    assert next_winners(by_size, {10: 1, 11: 1}, outcomes) == ["e3"]
    outcomes.update(e3=Outcome.BOUGHT, e5=Outcome.BOUGHT)
    assert next_winners(by_size, {10: 0, 11: 0}, outcomes) == []  # done: e2 lost
    assert next_winners({}, {10: 5}, {}) == []


def test_a_draw_that_shoppers_entered_stays_a_draw_and_a_queue_they_are_in_a_queue():
    assert mode_change_refused(2, DropMode.DRAW, DropMode.QUEUE, 0) is None
    assert "1 entry" in mode_change_refused(2, DropMode.DRAW, DropMode.FIRST_COME, 1)
    assert "3 entries" in mode_change_refused(2, DropMode.DRAW, DropMode.QUEUE, 3)
    assert mode_change_refused(2, DropMode.QUEUE, DropMode.FIRST_COME, 0) is None
    assert mode_change_refused(2, DropMode.QUEUE, DropMode.FIRST_COME, 3) == \
        "product 2's queue has 3 shoppers in it: it stays a queue"
    assert mode_change_refused(2, DropMode.QUEUE, DropMode.QUEUE, 3) is None


def test_memory_refuses_every_purchase_of_a_draws_pairs_and_the_database_sells_the_winners_size_alone():
    sizes = {4: SizeOnSale(2, True, 5, True, drawn=True), 5: SizeOnSale(2, True, 5, True, drawn=True)}
    memory = PurchaseFacts(sizes, signed_in=True)  # (won: None, memory knows no winner)
    assert answer_purchase([4], memory, 2).refusal is Refusal.SOLD_BY_DRAW
    database = PurchaseFacts(sizes, signed_in=True, won={4})
    assert answer_purchase([4], database, 2) is None
    refused = answer_purchase([5], database, 2)
    assert refused.refusal is Refusal.SOLD_BY_DRAW and "sold by draw" in refused.message
    # A guest is told to sign in first; a size of a first-come product is not touched by it.
    assert answer_purchase([4], PurchaseFacts(sizes, won={4}), 2).refusal is Refusal.SIGN_IN_REQUIRED
    assert answer_purchase([1], PurchaseFacts({1: SizeOnSale(1, True, 5)}, won=set()), 2) is None


def test_every_entrant_is_told_how_it_went_and_where_the_record_is():
    where = ("https://shop/", "https://shop/api/products/2/draw")
    won = result_letter("a@example.com", "Nike Air", "9", Outcome.BOUGHT, "", *where)
    assert won.to == "a@example.com" and "You won" in won.subject and "in your orders" in won.text
    lost = result_letter("b@example.com", "Nike Air", "9", Outcome.LOST, "", *where)
    assert "not drawn" in lost.text and "https://shop/api/products/2/draw" in lost.text
    failed = result_letter("c@example.com", "Nike Air", "9", Outcome.FAILED, "account locked", *where)
    assert "account locked" in failed.text and "next entry" in failed.text
    assert result_letter("d@example.com", "Nike Air", "9", Outcome.ENTERED, "", *where) is None


def test_the_cart_rule_keeps_a_draws_size_out_of_every_cart():
    from sneakers23.domain.carts import CartRefusal, SizeFacts, refuse_add, refuse_from_memory, refusal_message
    from sneakers23.domain.catalog import Item, Product

    item = Item(id=14, sku="N-01", size="6", product_id=2, available_count=5, version=1)
    drawn = Product(id=2, sku="N", order=1, brand="Nike", name="Air", color="red", price_usd=100, main_image_url="",
                    released=True, version=1, items=(item,), drop_mode=DropMode.DRAW)
    assert refuse_from_memory(item, drawn) is CartRefusal.SOLD_BY_DRAW
    assert refuse_add(SizeFacts(2, True, 5, drawn=True), 14, [], 0, False, 2) is CartRefusal.SOLD_BY_DRAW
    assert refuse_add(SizeFacts(2, True, 5), 14, [], 0, False, 2) is None
    assert "enter the draw" in refusal_message(CartRefusal.SOLD_BY_DRAW, 2)


def test_the_staff_see_each_draws_entries_per_size_and_where_its_close_is():
    counts = [(2, 7, "entered", 3), (2, 8, "entered", 1), (3, 9, "bought", 1), (3, 9, "lost", 2), (3, 10, "removed", 1),
              (4, 11, "won", 1), (4, 11, "bought", 2), (6, 12, "entered", 2), (9, 1, "entered", 5)]  # (9: no draw now)
    stages = {2: (False, False, False, False), 3: (True, True, True, False), 4: (True, True, False, False),
              5: (False, False, False, False), 6: (True, False, False, False)}
    figures = staff_figures(stages, counts, {3: 2})
    assert set(figures) == {2, 3, 4, 5, 6}
    assert (figures[2]["entries"], figures[2]["per_size"]) == (4, {7: 3, 8: 1})
    assert figures[2]["text"] == "draw open: 4 entries so far (it closes at the release)"
    assert figures[3]["per_size"] == {9: 3, 10: 1} and figures[3]["stage"] == "finished"
    assert figures[3]["text"] == ("draw finished: 4 entries; 1 pair bought for winners, 0 failed, 2 lost, 1 removed; "
                                  "2 entrants still to be told")
    assert figures[4]["text"] == "draw closed, giving its pairs: 3 entries; 2 pairs bought so far, 1 being bought"
    assert figures[6]["stage"] == "closing" and "no more taken" in figures[6]["text"]  # released, not shuffled yet
    assert figures[5] == {"entries": 0, "per_size": {}, "outcomes": {str(o): 0 for o in Outcome}, "stage": "open",
                          "text": "draw open: 0 entries so far (it closes at the release)", "told": False}
    told = staff_figures({3: (True, True, True, True)}, counts, {})[3]
    assert told["text"].endswith("1 removed; every entrant told") and told["told"]


def test_the_pages_of_a_big_draw_spread_their_reads_of_its_outcome_and_wait_no_more_than_a_cap():
    from sneakers23.domain.draws import MAX_READS_SPREAD_S, OUTCOME_READS_PER_S, outcome_reads_spread_s

    assert outcome_reads_spread_s(0) == 0.0
    assert outcome_reads_spread_s(OUTCOME_READS_PER_S) == 1.0  # (as many reads a second as the database is asked)
    assert outcome_reads_spread_s(100 * OUTCOME_READS_PER_S) == MAX_READS_SPREAD_S
