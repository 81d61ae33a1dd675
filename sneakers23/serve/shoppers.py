"""Shoppers are told apart by a random id in a signed, expiring cookie, set on their first visit
(and signed again on a visit a day or more later, so that a shopper who comes back keeps their
cart); a page carries a signed, expiring cart token that lets its socket join that shopper's cart
channel, and the shopper's form token, which every request that buys must carry besides the cookie
(a page on another site can make the browser send the cookie, but cannot read the token).

A shopper who signs in also holds a session cookie: once their address is verified, they shop
under their account (`Visitor.shopper_id`), on every device, with one cart and one set of orders."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from itsdangerous import BadSignature, SignatureExpired, Signer, TimestampSigner

from sneakers23.domain.accounts import Account, account_shopper_id, shops_as_account
from sneakers23.errors import DatabaseUnavailable, SchemaMissing

COOKIE = "sneakers23_shopper"
MAX_AGE_S = 60 * 60 * 24 * 30  # the cookie's, checked here too: a copied cookie does not last for ever
RENEW_AFTER_S = 60 * 60 * 24
CART_TOKEN_MAX_AGE_S = 60 * 60 * 24 * 7  # as the original's cart token


FORM_TOKEN_FIELD = "csrf_token"  # a form's field (as the admin's)
FORM_TOKEN_HEADER = "X-CSRF-Token"  # a script's header (as the admin's)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def same_secret(given: object, expected: str) -> bool:
    """Constant time, whatever the lengths (both are hashed first)."""
    return isinstance(given, str) and hmac.compare_digest(_digest(given), _digest(expected))


class ShopperCookies:
    def __init__(self, secret_key: str, max_age_s: int = MAX_AGE_S):
        # An HMAC of the id and its time: first visits come in stampedes, so signing must be cheap.
        self._signer = TimestampSigner(secret_key, salt="sneakers23-shopper")
        self._max_age_s = max_age_s

    def new(self) -> tuple[str, str]:
        """A new shopper id (64 hex characters, as the original's cart id) and its cookie value."""
        shopper_id = secrets.token_hex(32)
        return shopper_id, self.sign(shopper_id)

    def sign(self, shopper_id: str) -> str:
        return self._signer.sign(shopper_id).decode()

    def read(self, cookie: str | None) -> str | None:
        """The shopper id from a cookie value, or None when it is missing, forged or expired."""
        return self.read_with_age(cookie)[0]

    def read_with_age(self, cookie: str | None) -> tuple[str | None, float]:
        """(the shopper id, the cookie's age in seconds); (None, 0) when it is no good."""
        if not cookie or len(cookie) > 256:
            return None, 0.0
        try:
            shopper_id, signed_at = self._signer.unsign(cookie, max_age=self._max_age_s, return_timestamp=True)
            shopper_id = shopper_id.decode()
        except (BadSignature, UnicodeError):  # (SignatureExpired is a BadSignature)
            return None, 0.0
        if len(shopper_id) != 64:
            return None, 0.0
        return shopper_id, time.time() - signed_at.timestamp()


class CartTokens:
    """The token a page gives its socket to join `cart:{shopper id}`: the shopper id, signed and
    stamped with its time (a socket carries no cookie the server can rely on, and the Phoenix way
    is a token in the join's parameters). An account's token is bound to the session of the page
    that carries it (`session_mark`): a socket joins the account's cart only with that session's
    cookie, so a signed-out browser, or a copied page alone, joins nothing."""

    def __init__(self, secret_key: str, max_age_s: int = CART_TOKEN_MAX_AGE_S):
        self._signer = TimestampSigner(secret_key, salt="sneakers23-cart")
        self._max_age_s = max_age_s

    def issue(self, shopper_id: str, bound_to: str = "") -> str:
        return self._signer.sign(f"{shopper_id}|{bound_to}" if bound_to else shopper_id).decode()

    def read(self, token: object) -> tuple[str | None, str]:
        """(the shopper id, "") for a good token; (None, why) otherwise: "expired_token" or
        "invalid_token"."""
        holder, why, _bound = self.read_bound(token)
        return holder, why

    def read_bound(self, token: object) -> tuple[str | None, str, str]:
        """`read`, with the session mark the token is bound to ("" for none)."""
        if not isinstance(token, str) or not token or len(token) > 256:
            return None, "invalid_token", ""
        try:
            held = self._signer.unsign(token, max_age=self._max_age_s).decode()
        except SignatureExpired:
            return None, "expired_token", ""
        except (BadSignature, UnicodeError):
            return None, "invalid_token", ""
        shopper_id, _bar, bound = held.partition("|")
        return shopper_id, "", bound


def session_mark(session_token: str) -> str:
    """What a cart token bound to a session holds of it (not the token: a page is no place for it)."""
    return hashlib.sha256(session_token.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class FormTokens:
    """A shopper's form token: an HMAC of the shopper id under its own key, so every replica knows
    it without storing anything, and it lasts as long as the cookie it goes with."""

    def __init__(self, secret_key: str):
        self._key = hmac.new(secret_key.encode(), b"sneakers23-form-token", hashlib.sha256).digest()

    def issue(self, shopper_id: str) -> str:
        return hmac.new(self._key, shopper_id.encode(), hashlib.sha256).hexdigest()[:32]

    def check(self, shopper_id: str, sent: object) -> bool:
        return same_secret(sent, self.issue(shopper_id))


def form_token_in(page: str) -> str | None:
    """The form token a catalog or checkout page carries (for clients that are not browsers: the
    stampede's buyers, the benchmarks)."""
    found = re.search(r'data-form-token="([0-9a-f]{32})"', page)
    return found.group(1) if found else None


# --- signed-in shoppers ---

SESSION_COOKIE = "sneakers23_session"
# A replica asks the database about a session at most once per period, so that a drop's signed-in
# crowd costs the database a read per shopper, not one per request. A session ended elsewhere (a
# sign-out, everywhere, a reset, a lock) or an address verified reaches every replica at once, as
# an AccountChanged (serve/storefront.py): the period is the bound when that message is lost.
SESSION_RECHECK_S = 30.0
OUTAGE_RECHECK_S = 5.0  # what was answered while the database was away is asked again sooner
SESSIONS_KEPT = 20_000  # per replica; the oldest checked are forgotten first (and read again)


@dataclass(frozen=True, slots=True)
class Visitor:
    """Who a request comes from: the anonymous shopper of the cookie, and the account its session
    is signed in to, if any. They shop under the account once its address is verified."""

    cookie_shopper_id: str | None
    account: Account | None = None
    session_token: str | None = field(default=None, repr=False)

    @property
    def shopper_id(self) -> str | None:
        return account_shopper_id(self.account.id) if shops_as_account(self.account) else self.cookie_shopper_id

    @property
    def signed_in(self) -> bool:
        return self.account is not None

    @property
    def cart_binding(self) -> str:
        """What this visitor's cart token is bound to: the session, when it shops as the account."""
        return session_mark(self.session_token) if shops_as_account(self.account) and self.session_token else ""


class SessionCookies:
    """The session cookie: the session's token, signed, so that a forged or mangled cookie is
    turned away without a read."""

    def __init__(self, secret_key: str):
        self._signer = Signer(secret_key, salt="sneakers23-session")

    def cookie(self, session_token: str) -> str:
        return self._signer.sign(session_token).decode()

    def token(self, cookie: str | None) -> str | None:
        if not cookie or len(cookie) > 256:
            return None
        try:
            return self._signer.unsign(cookie).decode()
        except (BadSignature, UnicodeError):
            return None


class SignedInShoppers(SessionCookies):
    """The account a session cookie is signed in to: a good cookie's session is looked up in the
    database (`lookup`) at most once per SESSION_RECHECK_S on this replica, and again at once when
    its account changed (`forget_account`)."""

    def __init__(self, secret_key: str, lookup: Callable[[str], Awaitable[Account | None]],
                 recheck_s: float = SESSION_RECHECK_S):
        super().__init__(secret_key)
        self._lookup = lookup
        self._recheck_s = recheck_s
        self._seen: OrderedDict[str, tuple[Account | None, float]] = OrderedDict()  # token: (account, asked again at)
        self._of_account: dict[int, set[str]] = {}  # the tokens remembered for each account
        self._forgettings = 0  # grows at every forget: a lookup that a forget overtook is not kept

    async def account(self, session_token: str | None) -> Account | None:
        """The session's account; None for no session, or one that ended. While the database is
        away, what was last seen of it (or None: the shopper shops as their cookie meanwhile, and
        whatever they do that needs the database is refused for its own reason)."""
        if session_token is None:
            return None
        now = time.monotonic()
        seen = self._seen.get(session_token)
        if seen is not None and now < seen[1]:
            return seen[0]
        recheck_s, forgettings = self._recheck_s, self._forgettings
        try:
            account = await self._lookup(session_token)
        except (DatabaseUnavailable, SchemaMissing):
            # Asked again only after a while: an outage must not cost every request a wait.
            account, recheck_s = (None if seen is None else seen[0]), min(recheck_s, OUTAGE_RECHECK_S)
        if forgettings == self._forgettings:  # (else its answer may be from before a sign-out: asked again next time)
            self._remember(session_token, account, time.monotonic() + recheck_s)
        return account

    def forget(self, session_token: str | None) -> None:
        """A session this replica ended: it is over here at once."""
        if session_token is not None:
            self._forgettings += 1
            self._drop(session_token)

    def forget_account(self, account_id: int | None) -> None:
        """Every session of the account is asked about again (None: of every account)."""
        self._forgettings += 1
        if account_id is None:
            self._seen.clear()
            self._of_account.clear()
            return
        for token in self._of_account.pop(account_id, set()):
            self._seen.pop(token, None)

    def _remember(self, token: str, account: Account | None, until: float) -> None:
        self._drop(token)
        self._seen[token] = (account, until)
        if account is not None:
            self._of_account.setdefault(account.id, set()).add(token)
        while len(self._seen) > SESSIONS_KEPT:
            self._drop(next(iter(self._seen)))  # (the oldest asked)

    def _drop(self, token: str) -> None:
        account = self._seen.pop(token, (None, 0.0))[0]
        if account is not None:
            tokens = self._of_account.get(account.id)
            if tokens is not None:
                tokens.discard(token)
                if not tokens:
                    del self._of_account[account.id]
