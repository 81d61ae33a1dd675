"""Shopper accounts: the rules that need nothing but values.

A limit per anonymous cookie limits nothing (cookies are free to mint), so a drop's limits, carts
and orders will follow an account: an email address that is the shopper's own (verified by a link
sent to it), and a password. Where this is silent it does what phx.gen.auth does by default:
passwords of 12 characters or more, links that work once (a verification link for 7 days, a reset
link for a day), sessions that live 60 days in the database and end with a password change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

MIN_PASSWORD_LENGTH = 12
# Hashing is the costly part of a login: a bound on what one request can make the server hash.
MAX_PASSWORD_LENGTH = 256
MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a path, less the angle brackets

VERIFY_LINK_LIFETIME = timedelta(days=7)
RESET_LINK_LIFETIME = timedelta(days=1)
SESSION_LIFETIME = timedelta(days=60)


class LinkPurpose(StrEnum):
    VERIFY = "verify"  # the address is the shopper's own
    RESET = "reset"  # a new password, for a shopper who forgot theirs


LINK_LIFETIMES = {LinkPurpose.VERIFY: VERIFY_LINK_LIFETIME, LinkPurpose.RESET: RESET_LINK_LIFETIME}


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    email: str  # as the shopper typed it (its domain in lower case); `email_key` makes it unique
    verified: bool
    locked: bool
    created_at: datetime


def email_key(email: str) -> str:
    """What makes two addresses the same account: the whole address, case-insensitively (the
    domain is, by DNS; most mail hosts treat the local part so too, and a shopper who typed capitals
    once expects them not to matter at login)."""
    return email.casefold()


def password_refusal(password: str, email: str) -> str | None:
    """Why a new password cannot be used, in a sentence for the shopper; None when it can. (How
    guessable it is, against lists of common passwords, is asked of a library: accounts service.)"""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password has at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"a password has at most {MAX_PASSWORD_LENGTH} characters"
    if not password.strip():
        return "a password cannot be only spaces"
    local = email.partition("@")[0].casefold()
    if password.casefold() in (email.casefold(), local):
        return "a password cannot be your email address"
    return None


def link_usable(purpose: LinkPurpose, made_at: datetime, used_at: datetime | None, now: datetime) -> str | None:
    """Why a link cannot be used, for the shopper; None when it can: a link works once, and only
    within its lifetime."""
    if used_at is not None:
        return "this link was used already: ask for a new one"
    if now - made_at > LINK_LIFETIMES[purpose]:
        return "this link has expired: ask for a new one"
    return None


def session_alive(created_at: datetime, now: datetime) -> bool:
    return now - created_at <= SESSION_LIFETIME


# --- an account as a shopper ---

ACCOUNT_SHOPPER_PREFIX = "account-"


def account_shopper_id(account_id: int) -> str:
    """The shopper id an account shops under, on every device: its cart (`cart:{shopper id}`), its
    orders, and the pairs the limits count are the account's. An anonymous shopper's id is 64 hex
    digits, so the two never meet."""
    return f"{ACCOUNT_SHOPPER_PREFIX}{account_id}"


def account_of_shopper(shopper_id: str) -> int | None:
    """The account a shopper id shops for; None for an anonymous shopper."""
    number = shopper_id.removeprefix(ACCOUNT_SHOPPER_PREFIX)
    return int(number) if number != shopper_id and number.isascii() and number.isdigit() else None


def shops_as_account(account: Account | None) -> bool:
    """Whether a signed-in shopper shops under their account: only once the address is verified
    (until then a sign-up costs nothing, so it may not buy where sign-in is required) and while the
    account is not locked."""
    return account is not None and account.verified and not account.locked


# --- letters to shoppers ---

@dataclass(frozen=True, slots=True)
class Letter:
    to: str
    subject: str
    text: str


class Delivery(StrEnum):
    """What became of a posted letter (the postbox's receipt says)."""

    SENT = "sent"
    REFUSED = "refused"  # for good: the server said no (no such mailbox), and would again
    UNREACHED = "unreached"  # the mail server away or busy past the postbox's tries: worth posting again later


def verify_letter(address: str, link: str) -> Letter:
    return Letter(address, "Confirm your email address for Sneakers23", (
        "Welcome to Sneakers23.\n\n"
        "Confirm that this address is yours, and you can shop under your account on every device "
        "and buy in drops that need a sign-in:\n\n"
        f"{link}\n\n"
        f"The link works once, for {VERIFY_LINK_LIFETIME.days} days. If you did not sign up, "
        "ignore this letter: nothing happens without the link.\n"))


def reset_letter(address: str, link: str) -> Letter:
    return Letter(address, "Reset your Sneakers23 password", (
        "Someone asked to reset the password of the Sneakers23 account of this address.\n\n"
        "Choose a new password here:\n\n"
        f"{link}\n\n"
        f"The link works once, for {RESET_LINK_LIFETIME.days * 24} hours, and signs out every "
        "device that is signed in. If you did not ask, ignore this letter: your password stays "
        "as it is.\n"))
