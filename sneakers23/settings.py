"""Settings from SNEAKERS23_* environment variables (see the README). Secrets come from the
environment (on a cluster, cluster.yaml loads them from sneakers23.env), never from the repository."""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError


MIN_SECRET_KEY_BYTES = 32
PLACEHOLDER = "CHANGE-ME"  # what sneakers23.env.example holds where a secret goes


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SNEAKERS23_")

    # SQLite in the working directory needs nothing installed; clusters use postgresql+psycopg://…
    database_url: str = "sqlite:///sneakers23.db"
    max_pairs_per_product: int = Field(default=2, ge=1)
    # How often each node cache checks its versions against the database, healing lost changes.
    resync_seconds: float = Field(default=2.0, gt=0, le=60)
    # Past this many nodes, the replication actor hands each change to one relay per group of so
    # many nodes, which carries it to their caches (actors/relay.py; docs/capacity.md).
    replication_group_size: int = Field(default=16, ge=1, le=1024)
    # The Ray cluster that release and sell publish to: "auto" joins one running on this machine
    # (or at RAY_ADDRESS) if there is one, "none" only writes the database, anything else is an address.
    cluster: str = "auto"
    # Signs the shopper cookies, cart tokens, form tokens and the staff's sessions. Every web replica of a store
    # needs the same one, of at least 32 bytes; `sneakers23 serve` makes one up when it is not set.
    secret_key: str | None = Field(default=None, repr=False)
    # Replicas of the page deployment on every node (sockets have their own, one per node).
    page_replicas_per_node: int = Field(default=1, ge=1, le=16)
    # Purchases of one product admitted in memory and waiting for the database; past it, a purchase
    # is answered 503 busy at once rather than queued without end.
    sales_queue_limit: int = Field(default=5_000, ge=1)
    # A cart left untouched this long is emptied (the original's cart lasted 7 days in the browser).
    cart_idle_days: float = Field(default=7.0, gt=0, le=365)
    # Track every open shopper tab for the admin dashboard (presence); off, the dashboard shows
    # nobody online, and the channel replicas save what tracking costs (docs/presence.md).
    track_presence: bool = True
    # Opens the admin dashboard (/admin) to whoever gives it. Unset, the admin pages are off.
    admin_password: str | None = Field(default=None, min_length=12, repr=False)
    # How long an admin stays logged in.
    admin_session_hours: float = Field(default=8.0, gt=0, le=7 * 24)
    # Failed admin logins allowed per minute, from everywhere together, before logins are refused.
    admin_failed_logins_per_minute: int = Field(default=10, ge=1)

    # Mail to shoppers (verification and password-reset links): smtp://host:port (STARTTLS when the
    # server offers it), smtps://host:port (TLS from the start), with user:password@ when the server
    # asks for a login. Unset, each letter is written to the store's log instead (a console
    # backend), so that a shopper on a developer's `./dev store` can still follow the link.
    smtp_url: str | None = Field(default=None, repr=False)
    mail_from: str = "Sneakers23 <shop@sneakers23.localhost>"
    # Where the letters go with no SMTP (`sneakers23 serve` makes it absolute, for its replicas).
    mail_file: str = "sneakers23-mail.log"
    # The store's address as shoppers reach it, for the links in letters (https://shop.example).
    # Unset: the address `sneakers23 serve` listens on. Never the request's Host header, which
    # whoever asks for a reset link could choose.
    public_url: str | None = None

    # Sign-ups and sign-ins: a proof of work the shopper's browser solves (ALTCHA's scheme: it tries
    # about half this many SHA-256 hashes, about a second in a browser; 0 turns it off), and the
    # attempts one client address may make a minute, on each page replica (0: no limit).
    proof_of_work_max_number: int = Field(default=200_000, ge=0, le=100_000_000)
    account_attempts_per_minute: int = Field(default=10, ge=0)
    # A draw's entry, or a new place in a queue, costs a proof of work of its own (a bot pays per
    # entry), and one client address may make so many of each an hour on each replica.
    entry_proof_of_work_max_number: int = Field(default=200_000, ge=0, le=100_000_000)
    entries_per_address_per_hour: int = Field(default=20, ge=0)
    # A queued drop's waiting room: the most shoppers it lets in a minute when the staff set no pace
    # (about what one node's drop engine and pages take with room to spare), and how long a shopper
    # let in has to buy.
    queue_admissions_per_minute: int = Field(default=600, ge=1)
    queue_turn_minutes: float = Field(default=5.0, gt=0, le=60)

    # The edge (Serve's HAProxy, rules in serve/edge.py): what one client address may hold and ask.
    # 0 turns a cap off (a benchmark that loads the store from one address).
    connections_per_address: int = Field(default=256, ge=0)
    requests_per_address_per_second: int = Field(default=100, ge=0)
    # Where the X-Forwarded-For header is believed: the HAProxy of this node or of another one
    # (comma-separated networks). A request from anywhere else is its own peer's address.
    trusted_proxies: str = "127.0.0.0/8,::1"

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, url: str | None) -> str | None:
        from sneakers23.mail import smtp_address

        if url:
            try:
                smtp_address(url)
            except ValueError as error:  # (the URL itself is not said: it may hold a password)
                raise ValueError(f"SNEAKERS23_SMTP_URL: {error}") from None
        return url or None

    @field_validator("secret_key", mode="before")
    @classmethod
    def _strong_secret_key(cls, key: object) -> object:
        key = _secret(key, "SNEAKERS23_SECRET_KEY", "make one with python3 -c 'import secrets; "
                                                    "print(secrets.token_urlsafe(32))'")
        if isinstance(key, str) and len(key.encode()) < MIN_SECRET_KEY_BYTES:
            raise ValueError(f"SNEAKERS23_SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes")
        return key

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # a ValueError names the bad one
        return value

    @field_validator("admin_password", mode="before")
    @classmethod
    def _no_placeholder_password(cls, password: object) -> object:
        """An empty password turns the admin pages off; the example file's placeholder never opens them."""
        return _secret(password, "SNEAKERS23_ADMIN_PASSWORD", "choose a real one")

    @field_validator("database_url")
    @classmethod
    def _absolute_sqlite_path(cls, url: str) -> str:
        """Pin a relative SQLite path to this directory: Ray's workers run in other directories."""
        try:
            parsed = make_url(url)
        except ArgumentError:
            return url  # reported, with the URL, when the database is first used
        path = parsed.database
        if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:" or os.path.isabs(path):
            return url
        return parsed.set(database=os.path.abspath(path)).render_as_string(hide_password=False)


def check_ray_token() -> None:
    """The example file's RAY_AUTH_TOKEN placeholder opens nothing: refused before Ray sees it."""
    _secret(os.environ.get("RAY_AUTH_TOKEN"), "RAY_AUTH_TOKEN",
            "make one with `ray get-auth-token --generate` and put it in sneakers23.env")


def _secret(value: object, variable: str, how: str) -> object:
    """An empty secret is an unset one; the example file's placeholder is refused, saying how to make one."""
    if isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, str) and PLACEHOLDER in value.upper():
        raise ValueError(f"{variable} is still the example's placeholder: {how}")
    return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
