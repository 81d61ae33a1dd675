"""Shoppers are told apart by a random id in a signed cookie, set on their first visit."""

from __future__ import annotations

import secrets

from itsdangerous import BadSignature, Signer

COOKIE = "sneakers23_shopper"
MAX_AGE_S = 60 * 60 * 24 * 30


class ShopperCookies:
    def __init__(self, secret_key: str):
        # A bare HMAC of the id: first visits come in stampedes, so signing must be cheap.
        self._signer = Signer(secret_key, salt="sneakers23-shopper")

    def new(self) -> tuple[str, str]:
        """A new shopper id (64 hex characters, as the original's cart id) and its cookie value."""
        shopper_id = secrets.token_hex(32)
        return shopper_id, self._signer.sign(shopper_id).decode()

    def read(self, cookie: str | None) -> str | None:
        """The shopper id from a cookie value, or None when it is missing or forged."""
        if not cookie:
            return None
        try:
            shopper_id = self._signer.unsign(cookie).decode()
        except (BadSignature, UnicodeError):
            return None
        return shopper_id if len(shopper_id) == 64 else None
