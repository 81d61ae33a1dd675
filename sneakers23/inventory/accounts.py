"""The accounts service: sign up, verify the address, sign in and out, reset a forgotten password,
lock. The rules of values are in domain/accounts.py; here are the parts that need a library or the
database:
- an address's syntax, by email-validator (the RFCs' rules, and internationalised addresses);
- how guessable a password is, by zxcvbn (common passwords, names, keyboard walks, the address);
- the password's hash, Argon2id by argon2-cffi, with OWASP's parameters (below), and rehashed at
  sign-in when they change.

Every token (a session, an emailed link) is 32 random bytes, given to the shopper once and kept only
as its SHA-256. A sign-in with an unknown address hashes as a known one does, so that the time it
takes says nothing of whether the address has an account.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import email_validator
from argon2 import PasswordHasher, exceptions

from sneakers23.db import accounts as rows
from sneakers23.db import carts, waiting_rooms
from sneakers23.db.unit_of_work import Database
from sneakers23.domain.changes import AccountChanged
from sneakers23.domain.accounts import (MAX_EMAIL_LENGTH, MAX_PASSWORD_LENGTH, Account, LinkPurpose,
                                        account_shopper_id, email_key, link_usable, password_refusal, reset_letter, session_alive, verify_letter)
from sneakers23.errors import DatabaseUnavailable, Sneakers23Error
from sneakers23.group_commit import GroupCommit
from sneakers23.inventory.ports import Mail

# OWASP's first choice for Argon2id (Password Storage Cheat Sheet): 19 MiB, 2 passes, 1 lane.
# About 27 ms a verification on this project's 2-core machines, so one core signs in about 37
# shoppers a second at a drop's start; RFC 9106's memory-constrained option (64 MiB, 3 passes, 4
# lanes) took 147 ms here, too dear for that burst. Dear enough still for a guesser with a stolen
# table: every guess costs 19 MiB and 27 ms.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# zxcvbn's score runs 0-4; 3 is "safely unguessable: moderate protection from offline slow-hash
# scenario" (the library's words), which Argon2id's cost makes the case here.
MIN_PASSWORD_SCORE = 3
# zxcvbn scores at most 72 characters (and slows sharply past them): a longer passphrase is scored
# by its first 72, which are guessable or not whatever follows.
SCORED_LENGTH = 72
_scoring = threading.Lock()  # (zxcvbn keeps the inputs of its call in a module-level dictionary)
# Hashes at once: one fewer than the cores (at least one), so that a burst of sign-ins queues here and
# leaves the replica's event loop a core. bench/accounts.py, 200 sign-ins at once on 2 cores: the
# loop's worst lag was 534 ms with the database's 32 threads all hashing, 111 ms with two at once,
# 75 ms with one (41 sign-ins a second; 58 with two).
HASHES_AT_ONCE = max(1, len(os.sched_getaffinity(0)) - 1)  # (the cores this process may use)
_hashing = threading.BoundedSemaphore(HASHES_AT_ONCE)
# A replica asks the database about the sessions it has not seen for a while: those asked at once go
# in one query (a drop's signed-in crowd is thousands of sessions).
SESSIONS_PER_QUERY = 500


class AccountRefused(Sneakers23Error):
    """A sign-up, sign-in or link the shopper must be told about, in a sentence for them."""


@dataclass(frozen=True, slots=True)
class SignedUp:
    account: Account
    verify_token: str = field(repr=False)  # for the link emailed to the address
    session_token: str = field(repr=False)  # signed in at once (as phx.gen.auth's registration does)


@dataclass(frozen=True, slots=True)
class SignedIn:
    account: Account
    session_token: str = field(repr=False)  # for the session cookie


def _ended(unit, account_id: int | None) -> None:
    """A session ended in this unit of work: every replica forgets what it remembered of its
    account's sessions once it commits (none: there was no such session)."""
    if account_id is not None:
        unit.publish([AccountChanged(account_id)])


REHEARSAL_DOMAIN = "rehearsal.invalid"  # a rehearsal's accounts' (a domain that never takes mail: RFC 2606)


def _rehearsal_label(label: str) -> None:
    if not re.fullmatch(r"[a-z0-9-]{1,40}", label):  # (an address key is case-folded: a label is too)
        raise Sneakers23Error("a rehearsal's label is 1 to 40 small letters, digits and dashes")


def _hash_of(token: str) -> str:
    # (a lone surrogate, which no token of ours holds, hashes to something no token has)
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _new_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, _hash_of(token)


@dataclass(frozen=True, slots=True)
class SessionSeen:
    """A signed-in browser, as the account's page lists it."""

    began: datetime
    client: str
    user_agent: str
    current: bool  # the browser asking


# Where an emailed link leads, under the store's public address.
VERIFY_PATH = "/account/verify"
RESET_PATH = "/account/reset"


class Accounts:
    def __init__(self, database: Database, mail: Mail | None = None, public_url: str | None = None):
        self.database = database
        self.mail = mail  # None: no letter is sent (the caller has the link's token)
        self.public_url = (public_url or "http://127.0.0.1:8000").rstrip("/")
        self._unknown_hash: str | None = None  # hashed against when an address has no account
        self._session_reads: GroupCommit[str, Account | None] | None = None
        self._turns: asyncio.Semaphore | None = None

    def _link(self, path: str, token: str) -> str:
        return f"{self.public_url}{path}?token={token}"

    def sign_up(self, email: str, password: str, client: str = "", user_agent: str = "",
                instead_of: str | None = None) -> SignedUp:
        """A new, unverified account, signed in at once, and the token of its verification link
        (posted to the address). Raises AccountRefused with what to fix: an address that is not
        one, one with an account, a weak password. `instead_of`: the browser's session before, if
        any, which ends in the same transaction."""
        address = normal_address(email)
        refusal = password_refusal(password, address) or _unwritable(password) or _guessable(password, address)
        if refusal is not None:
            raise AccountRefused(refusal)
        password_hash = _hashed(password)
        token, token_hash = _new_token()
        session_token, session_hash = _new_token()
        with self.database.transaction() as unit:
            account = rows.add_account(unit.connection, address, email_key(address), password_hash)
            if account is None:
                raise AccountRefused("an account with this email address exists: sign in, or reset its password")
            rows.add_link(unit.connection, token_hash, account.id, LinkPurpose.VERIFY)
            rows.add_session(unit.connection, session_hash, account.id, client, user_agent)
            if instead_of:
                _ended(unit, rows.end_session(unit.connection, _hash_of(instead_of)))
        self._post(verify_letter(account.email, self._link(VERIFY_PATH, token)))
        return SignedUp(account, token, session_token)

    def send_verification(self, account_id: int) -> str | None:
        """Another verification link for an account whose address is not verified yet (the first
        letter went astray); its token, or None when the address is verified already."""
        account = self._account(account_id)
        if account.verified:
            return None
        token, token_hash = _new_token()
        with self.database.transaction() as unit:
            rows.add_link(unit.connection, token_hash, account.id, LinkPurpose.VERIFY)
        self._post(verify_letter(account.email, self._link(VERIFY_PATH, token)))
        return token

    def verify_email(self, token: str) -> Account:
        """The verification link followed: the account's address is its owner's."""
        with self.database.transaction() as unit:
            account_id = _use_link(unit.connection, token, LinkPurpose.VERIFY)
            rows.mark_verified(unit.connection, account_id)
            unit.publish([AccountChanged(account_id)])  # (a replica's memory of its sessions: unverified)
            return rows.account(unit.connection, account_id)

    def sign_in(self, email: str, password: str, client: str = "", user_agent: str = "",
                instead_of: str | None = None) -> SignedIn:
        """A new session (a new token: a session id is never carried over from before the sign-in;
        `instead_of`, the browser's session before, ends in the same transaction). Raises
        AccountRefused with the same words whether the address or the password was wrong."""
        wrong = AccountRefused("the email address or the password is wrong")
        unknown_hash = self._unknown()  # (made before the lookup: the first sign-in pays it either way)
        found = self._credentials(email) if len(password) <= MAX_PASSWORD_LENGTH else None
        if found is None:
            _verified(unknown_hash, password)  # the same work as for a known address
            raise wrong
        if not _verified(found.password_hash, password):
            raise wrong
        rehashed = _hashed(password) if HASHER.check_needs_rehash(found.password_hash) else None
        token, token_hash = _new_token()
        with self.database.transaction() as unit:
            # What was verified must still hold when the session is written: a password reset or a
            # lock committed meanwhile ends every session, this one included.
            now = rows.credentials(unit.connection, email_key(found.account.email), lock=True)
            if now is None or now.password_hash != found.password_hash:
                raise wrong
            if now.account.locked:
                raise AccountRefused("this account is locked: write to the shop's staff")
            if rehashed is not None:  # the parameters changed since it was hashed
                rows.set_password_hash(unit.connection, found.account.id, rehashed)
            rows.add_session(unit.connection, token_hash, found.account.id, client, user_agent)
            if instead_of:
                _ended(unit, rows.end_session(unit.connection, _hash_of(instead_of)))
        return SignedIn(now.account, token)

    def session_account(self, session_token: str) -> Account | None:
        """The account signed in with this session, or None (no such session, ended, expired, or
        its account locked)."""
        return self.session_accounts([session_token])[0]

    def session_accounts(self, session_tokens: list[str]) -> list[Account | None]:
        """`session_account` of each, in one query."""
        hashes = [_hash_of(token) for token in session_tokens]
        with self.database.reading() as connection:
            found = rows.sessions(connection, hashes)
        now = datetime.now(timezone.utc)
        answers = []
        for token_hash in hashes:
            account, began = found.get(token_hash, (None, None))
            alive = account is not None and not account.locked and session_alive(began, now)
            answers.append(account if alive else None)
        return answers

    def sessions(self, account_id: int, session_token: str = "") -> list[SessionSeen]:
        """The account's signed-in browsers, newest first (the one holding `session_token` marked)."""
        current = _hash_of(session_token) if session_token else ""
        now = datetime.now(timezone.utc)
        with self.database.reading() as connection:
            found = rows.sessions_of(connection, account_id)
        return [SessionSeen(row.created_at, row.client, row.user_agent, row.token_hash == current)
                for row in found if session_alive(row.created_at, now)]

    def figures(self) -> dict:
        """What the staff's dashboard shows of the accounts: how many, the share not verified yet,
        the sign-ups of the last minute."""
        with self.database.reading() as connection:
            total, unverified, last_minute = rows.figures(connection, datetime.now(timezone.utc) - timedelta(minutes=1))
        return {"accounts": total, "unverified": unverified, "signed_up_last_minute": last_minute,
                "unverified_share": round(unverified / total, 3) if total else 0.0}

    async def figures_async(self) -> dict:
        return await self.database.in_thread(self.figures)

    # For callers on an event loop: the database, and Argon2id's ~27 ms of hashing, in a thread
    # (argon2-cffi lets go of the GIL while it hashes), so a burst of sign-ins never stalls the loop.

    async def sign_up_async(self, email: str, password: str, client: str = "", user_agent: str = "",
                            instead_of: str | None = None) -> SignedUp:
        async with self._hashing_turns():
            return await self.database.in_thread(self.sign_up, email, password, client, user_agent, instead_of)

    async def sign_in_async(self, email: str, password: str, client: str = "", user_agent: str = "",
                            instead_of: str | None = None) -> SignedIn:
        async with self._hashing_turns():
            return await self.database.in_thread(self.sign_in, email, password, client, user_agent, instead_of)

    def _hashing_turns(self) -> asyncio.Semaphore:
        """Sign-ups and sign-ins wait their turn on the loop, not in the database's threads: a burst
        of them must not hold every thread of the pool that carts, checkouts and sessions share."""
        if self._turns is None:
            self._turns = asyncio.Semaphore(HASHES_AT_ONCE)
        return self._turns

    async def session_account_async(self, session_token: str) -> Account | None:
        """`session_account`, for callers on an event loop: the lookups asked while one is under way
        go together in the next query (the one group commit, sneakers23/group_commit.py)."""
        if self._session_reads is None:
            self._session_reads = GroupCommit(
                lambda tokens: self.database.in_thread(self.session_accounts, tokens), max_batch=SESSIONS_PER_QUERY,
                cut_short=lambda: DatabaseUnavailable("the session lookup was cut short: try again"))
        return await self._session_reads.ask(session_token)

    def rehearsal_sessions(self, count: int, label: str, chunk: int = 500) -> list[str]:
        """`count` accounts for a drop rehearsal's shoppers (jobs/rehearsal.py), left as a sign-up,
        its verification link and a sign-in leave a person's: verified, each with a session. Their
        session tokens, in order. Their addresses are LABEL-N@rehearsal.invalid (a domain that
        never takes mail); their password is one nobody knows, so that none can be signed in to."""
        _rehearsal_label(label)
        password_hash = _hashed(secrets.token_urlsafe(32))  # (one hash for all: no one has its password)
        tokens: list[str] = []
        for start in range(0, count, chunk):
            with self.database.transaction() as unit:
                for n in range(start, min(count, start + chunk)):
                    address = f"{label}-{n}@{REHEARSAL_DOMAIN}"
                    account = rows.add_account(unit.connection, address, email_key(address), password_hash)
                    if account is None:
                        raise Sneakers23Error(f"the rehearsal's accounts {label}-… exist already: name another label")
                    rows.mark_verified(unit.connection, account.id)
                    token, token_hash = _new_token()
                    rows.add_session(unit.connection, token_hash, account.id, "rehearsal", "sneakers23 drop rehearse")
                    tokens.append(token)
        return tokens

    def end_rehearsal_sessions(self, label: str) -> int:
        """Every session of a rehearsal's accounts, ended once it is over (its cookies went through
        Ray's object store, and may be on a disk: they must open nothing after). How many accounts."""
        _rehearsal_label(label)
        with self.database.transaction() as unit:
            ids = rows.end_sessions_of_addresses(unit.connection, f"{label}-%@{REHEARSAL_DOMAIN}",
                                                 re.compile(rf"{re.escape(label)}-\d+@{re.escape(REHEARSAL_DOMAIN)}"))
            unit.publish([AccountChanged(account_id) for account_id in ids])  # (every replica forgets them at once)
        return len(ids)

    def sign_out(self, session_token: str) -> None:
        with self.database.transaction() as unit:
            _ended(unit, rows.end_session(unit.connection, _hash_of(session_token)))

    def sign_out_everywhere(self, account_id: int) -> int:
        """Ends every session of the account; how many there were."""
        with self.database.transaction() as unit:
            unit.publish([AccountChanged(account_id)])
            return rows.end_sessions(unit.connection, account_id)

    def ask_password_reset(self, email: str) -> tuple[Account, str] | None:
        """The account and the token of its reset link; None when the address has no account (the
        page says the same either way: a link was sent if the address has an account)."""
        found = self._credentials(email)
        if found is None:
            return None
        token, token_hash = _new_token()
        with self.database.transaction() as unit:
            rows.add_link(unit.connection, token_hash, found.account.id, LinkPurpose.RESET)
        self._post(reset_letter(found.account.email, self._link(RESET_PATH, token)))
        return found.account, token

    def reset_password(self, token: str, password: str) -> Account:
        """A new password by the reset link: it ends every session of the account (whoever knew the
        old password is signed out) and every other link sent to it, and verifies the address (the
        link reached it)."""
        with self.database.reading() as connection:
            link = rows.link(connection, _hash_of(token))
        if link is None or link.purpose is not LinkPurpose.RESET:
            raise AccountRefused("this link is not one of ours: ask for a new one")
        refusal = link_usable(link.purpose, link.made_at, link.used_at, datetime.now(timezone.utc))
        if refusal is not None:  # (told before any costly work)
            raise AccountRefused(refusal)
        current = self._account(link.account_id)
        refusal = password_refusal(password, current.email) or _unwritable(password) or \
            _guessable(password, current.email)
        if refusal is not None:
            raise AccountRefused(refusal)
        password_hash = _hashed(password)
        with self.database.transaction() as unit:
            account_id = _use_link(unit.connection, token, LinkPurpose.RESET)  # (once, under races too)
            rows.set_password_hash(unit.connection, account_id, password_hash)
            rows.end_sessions(unit.connection, account_id)
            rows.use_links_of(unit.connection, account_id)
            rows.mark_verified(unit.connection, account_id)
            unit.publish([AccountChanged(account_id)])
            return rows.account(unit.connection, account_id)

    def lock_account(self, account_id: int, locked: bool = True) -> Account:
        """Lock an account (every session ends, its cart is emptied on every node, and its places in
        waiting rooms are taken out: the keeper tells the line) or unlock it (what went stays gone).
        Its draw entries are taken out at the draw's close (inventory/draws.py)."""
        with self.database.transaction() as unit:
            # The account's row first: a join in flight holds it shared (db/accounts.locked_held),
            # so the places are read below only after its place is in, and taken out with the rest.
            if not rows.set_locked(unit.connection, account_id, locked):
                raise AccountRefused(f"there is no account {account_id}")
            unit.publish([AccountChanged(account_id)])
            if locked:
                rows.end_sessions(unit.connection, account_id)
                unit.publish(carts.empty(unit.connection, account_shopper_id(account_id)))
                waiting_rooms.take_out(unit.connection, account_shopper_id(account_id))
            return rows.account(unit.connection, account_id)

    def find_account(self, who: str) -> Account:
        """An account by its id or its address (any spelling the sign-up's normalisation maps to it)."""
        if who.isascii() and who.isdigit() and len(who) <= 15:
            return self._account(int(who))
        found = self._credentials(who)
        if found is None:
            raise AccountRefused(f"there is no account of {who[:MAX_EMAIL_LENGTH]!r}")
        return found.account

    # --- inside ---

    def _post(self, letter) -> None:
        if self.mail is not None:
            self.mail.post(letter)

    def _credentials(self, email: str) -> rows.Credentials | None:
        """The account of an address as a shopper types it (any case, any spelling the sign-up's
        normalisation maps to it); None for an address that is not one or has no account."""
        try:
            address = normal_address(email)
        except AccountRefused:
            return None
        with self.database.reading() as connection:
            return rows.credentials(connection, email_key(address))

    def _account(self, account_id: int) -> Account:
        with self.database.reading() as connection:
            account = rows.account(connection, account_id)
        if account is None:
            raise AccountRefused(f"there is no account {account_id}")
        return account

    def _unknown(self) -> str:
        if self._unknown_hash is None:
            self._unknown_hash = _hashed(secrets.token_urlsafe(16))
        return self._unknown_hash


def normal_address(email: str) -> str:
    """The address as it will be kept (its domain in lower case, internationalised domains in their
    Unicode form), or AccountRefused saying what is wrong with it. No DNS lookup: the verification
    link proves the address, and a lookup would let a sign-up wait on a stranger's DNS."""
    if len(email) > MAX_EMAIL_LENGTH:
        raise AccountRefused(f"an email address has at most {MAX_EMAIL_LENGTH} characters")
    try:
        address = email_validator.validate_email(email.strip(), check_deliverability=False).normalized
    except email_validator.EmailNotValidError as error:
        raise AccountRefused(f"that is not an email address: {error}") from None
    if len(email_key(address)) > MAX_EMAIL_LENGTH:  # (case-folding can lengthen it)
        raise AccountRefused(f"an email address has at most {MAX_EMAIL_LENGTH} characters")
    return address


def _use_link(connection, token: str, purpose: LinkPurpose) -> int:
    """The link's account, once: a link used, expired or of another purpose is refused (and the
    transaction it runs in rolls back)."""
    token_hash = _hash_of(token)
    link = rows.link(connection, token_hash)
    if link is None or link.purpose is not purpose:
        raise AccountRefused("this link is not one of ours: ask for a new one")
    refusal = link_usable(purpose, link.made_at, link.used_at, datetime.now(timezone.utc))
    if refusal is None and not rows.use_link(connection, token_hash):
        refusal = "this link was used already: ask for a new one"  # (by a request racing this one)
    if refusal is not None:
        raise AccountRefused(refusal)
    return link.account_id


def _unwritable(password: str) -> str | None:
    try:
        password.encode()
    except UnicodeEncodeError:
        return "a password holds only characters that can be typed"
    return None


def _guessable(password: str, address: str) -> str | None:
    import zxcvbn  # (here: its word lists take a moment to build, which only a sign-up needs)

    with _scoring:
        verdict = zxcvbn.zxcvbn(password[:SCORED_LENGTH],
                                user_inputs=[address, address.partition("@")[0], "sneakers23", "sneakers"])
    if verdict["score"] >= MIN_PASSWORD_SCORE:
        return None
    warning = verdict["feedback"].get("warning") or "it is too easy to guess"
    return f"choose a password that is harder to guess ({warning.rstrip('.').lower()})"


def _hashed(password: str) -> str:
    with _hashing:
        return HASHER.hash(password)


def _verified(password_hash: str, password: str) -> bool:
    try:
        with _hashing:
            return HASHER.verify(password_hash, password)
    except (exceptions.VerificationError, exceptions.InvalidHashError, UnicodeEncodeError):
        return False
