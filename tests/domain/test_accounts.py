"""The accounts' rules of values (sneakers23/domain/accounts.py), in milliseconds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sneakers23.domain.accounts import (MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, LinkPurpose, email_key,
                                        link_usable, password_refusal, session_alive)

NOW = datetime(2026, 12, 3, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize("password, says", [
    ("x" * (MIN_PASSWORD_LENGTH - 1), f"at least {MIN_PASSWORD_LENGTH} characters"),
    ("x" * (MAX_PASSWORD_LENGTH + 1), f"at most {MAX_PASSWORD_LENGTH} characters"),
    (" " * MIN_PASSWORD_LENGTH, "only spaces"),
    ("Ada.Lovelace@example.com", "your email address"),
    ("ADA.lovelace", "your email address"),  # (its part before the @, in any case)
    ("ADA.LOVELACE.X", None),
    ("correct horse battery staple", None),
])
def test_a_new_password_is_long_enough_bounded_and_not_the_address(password, says):
    refusal = password_refusal(password, "ada.lovelace@example.com")
    if says is None:
        assert refusal is None
    else:
        assert refusal is not None and says in refusal


def test_the_local_part_alone_is_refused_when_long_enough():
    assert "your email address" in password_refusal("Margaret.Hamilton", "margaret.hamilton@example.com")


def test_two_spellings_of_one_address_are_one_account():
    assert email_key("Ada@Example.COM") == email_key("ada@example.com")
    assert email_key("ada@example.com") != email_key("ada2@example.com")


@pytest.mark.parametrize("purpose, age, used, says", [
    (LinkPurpose.VERIFY, timedelta(days=6, hours=23), False, None),
    (LinkPurpose.VERIFY, timedelta(days=7, seconds=1), False, "expired"),
    (LinkPurpose.RESET, timedelta(hours=23), False, None),
    (LinkPurpose.RESET, timedelta(days=1, seconds=1), False, "expired"),
    (LinkPurpose.RESET, timedelta(minutes=1), True, "used already"),
])
def test_a_link_works_once_within_its_lifetime(purpose, age, used, says):
    refusal = link_usable(purpose, NOW - age, NOW - age / 2 if used else None, NOW)
    assert (refusal is None) if says is None else (says in refusal)


def test_a_session_lives_sixty_days():
    assert session_alive(NOW - timedelta(days=59), NOW)
    assert not session_alive(NOW - timedelta(days=60, seconds=1), NOW)


def test_an_account_shops_under_its_own_id_once_verified_and_while_unlocked():
    from sneakers23.domain.accounts import Account, account_shopper_id, shops_as_account

    made = datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert account_shopper_id(42) == "account-42" and len(account_shopper_id(10**15)) <= 64
    assert shops_as_account(Account(42, "a@example.com", True, False, made))
    assert not shops_as_account(Account(42, "a@example.com", False, False, made))  # not verified yet
    assert not shops_as_account(Account(42, "a@example.com", True, True, made))  # locked
    assert not shops_as_account(None)


def test_the_letters_carry_their_link_and_say_how_long_it_works():
    from sneakers23.domain.accounts import reset_letter, verify_letter

    verify = verify_letter("a@example.com", "https://shop.example/account/verify?token=t")
    assert verify.to == "a@example.com" and "https://shop.example/account/verify?token=t" in verify.text
    assert "7 days" in verify.text
    assert "24 hours" in reset_letter("a@example.com", "https://x/account/reset?token=t").text
