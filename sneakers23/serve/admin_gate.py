"""Who may open the admin dashboard: the admin password, a signed expiring session, a CSRF token for
every action, and the signed token the dashboard's socket presents (as the original's admin socket).

Nothing here is shared with the shoppers' cookies and tokens: each is signed with its own salt, so
a shopper's cookie or cart token never opens an admin page. The session's salt also carries a
fingerprint of the password, so changing the password ends every session.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from sneakers23.domain.admin import admin_name
from sneakers23.serve.shoppers import same_secret

SESSION_COOKIE = "sneakers23_admin"
LOGIN_COOKIE = "sneakers23_admin_login"  # the login form's own nonce (against login CSRF)
SOCKET_TOKEN_MAX_AGE_S = 60 * 60 * 24  # as the original's admin token
LOGIN_FORM_MAX_AGE_S = 60 * 60


@dataclass(frozen=True, slots=True)
class AdminSession:
    who: str
    csrf: str
    sid: str  # the session's own id: a logout revokes it
    until: float  # when it expires (Unix time)


class AdminGate:
    def __init__(self, password: str | None, secret_key: str, session_hours: float):
        self._password = password
        fingerprint = hashlib.sha256(f"{secret_key}\0{password}".encode()).hexdigest()[:16]
        self._sessions = URLSafeTimedSerializer(secret_key, salt=f"sneakers23-admin-session-{fingerprint}")
        self._session_s = int(session_hours * 3600)
        self._sockets = URLSafeTimedSerializer(secret_key, salt=f"sneakers23-admin-socket-{fingerprint}")
        self._login_forms = TimestampSigner(secret_key, salt="sneakers23-admin-login")

    @property
    def on(self) -> bool:
        return bool(self._password)

    @property
    def session_s(self) -> int:
        return self._session_s

    def password_matches(self, attempt: object) -> bool:
        return self.on and same_secret(attempt, self._password)

    # --- the session (a cookie) ---

    def open_session(self, who: object) -> str:
        return self._sessions.dumps({"who": admin_name(who), "csrf": secrets.token_urlsafe(24),
                                     "sid": secrets.token_urlsafe(12)})

    def session(self, cookie: str | None) -> AdminSession | None:
        if not self.on or not cookie or len(cookie) > 1024:
            return None
        try:
            data, signed_at = self._sessions.loads(cookie, max_age=self._session_s, return_timestamp=True)
        except (BadSignature, UnicodeError):  # (SignatureExpired is a BadSignature)
            return None
        if not isinstance(data, dict) or not all(isinstance(data.get(key), str) for key in ("csrf", "sid")):
            return None
        return AdminSession(admin_name(data.get("who")), data["csrf"], data["sid"],
                            signed_at.timestamp() + self._session_s)

    @staticmethod
    def csrf_ok(session: AdminSession, sent: object) -> bool:
        return same_secret(sent, session.csrf)

    # --- the login form's nonce: a cookie, and the same value signed in the form ---

    def login_nonce(self) -> tuple[str, str]:
        """(the cookie's value, the form's field)."""
        nonce = secrets.token_urlsafe(16)
        return nonce, self._login_forms.sign(nonce).decode()

    def login_form_ok(self, cookie: str | None, field: object) -> bool:
        if not cookie or not isinstance(field, str) or len(field) > 256:
            return False
        try:
            nonce = self._login_forms.unsign(field, max_age=LOGIN_FORM_MAX_AGE_S).decode()
        except (BadSignature, UnicodeError):
            return False
        return same_secret(cookie, nonce)

    # --- the dashboard socket's token ---

    def socket_token(self, session: AdminSession) -> str:
        """Bound to the session: it lasts no longer than the session does (and at most a day, as
        the original's), and a logout of the session revokes it too."""
        return self._sockets.dumps({"who": session.who, "sid": session.sid, "until": session.until})

    def socket_holder(self, token: object) -> tuple[AdminSession | None, str]:
        """(the session, "") for a good token; (None, "invalid_token" or "expired_token") otherwise.
        (The caller checks that the session was not revoked.)"""
        if not self.on or not isinstance(token, str) or not token or len(token) > 512:
            return None, "invalid_token"
        try:
            data = self._sockets.loads(token, max_age=SOCKET_TOKEN_MAX_AGE_S)
        except SignatureExpired:
            return None, "expired_token"
        except (BadSignature, UnicodeError):
            return None, "invalid_token"
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str) or \
                not isinstance(data.get("until"), (int, float)):
            return None, "invalid_token"
        if data["until"] <= time.time():
            return None, "expired_token"
        return AdminSession(admin_name(data.get("who")), "", data["sid"], data["until"]), ""
