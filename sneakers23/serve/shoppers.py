"""Shoppers are told apart by a random id in a signed, expiring cookie, set on their first visit
(and signed again on a visit a day or more later, so that a shopper who comes back keeps their
cart); a page carries a signed, expiring cart token that lets its socket join that shopper's cart
channel, and the shopper's form token, which every request that buys must carry besides the cookie
(a page on another site can make the browser send the cookie, but cannot read the token)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

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
    is a token in the join's parameters)."""

    def __init__(self, secret_key: str, max_age_s: int = CART_TOKEN_MAX_AGE_S):
        self._signer = TimestampSigner(secret_key, salt="sneakers23-cart")
        self._max_age_s = max_age_s

    def issue(self, shopper_id: str) -> str:
        return self._signer.sign(shopper_id).decode()

    def read(self, token: object) -> tuple[str | None, str]:
        """(the shopper id, "") for a good token; (None, why) otherwise: "expired_token" or
        "invalid_token"."""
        if not isinstance(token, str) or not token or len(token) > 256:
            return None, "invalid_token"
        try:
            shopper_id = self._signer.unsign(token, max_age=self._max_age_s).decode()
        except SignatureExpired:
            return None, "expired_token"
        except (BadSignature, UnicodeError):
            return None, "invalid_token"
        return shopper_id, ""


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
