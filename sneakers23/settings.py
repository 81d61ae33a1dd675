"""Settings from SNEAKERS23_* environment variables (see the README). Secrets come from the
environment (on a cluster, cluster.yaml loads them from sneakers23.env), never from the repository."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SNEAKERS23_")

    # SQLite in the working directory needs nothing installed; clusters use postgresql+psycopg://…
    database_url: str = "sqlite:///sneakers23.db"
    max_pairs_per_product: int = Field(default=2, ge=1)
    # How often each node cache checks its versions against the database, healing lost changes.
    resync_seconds: float = Field(default=2.0, gt=0, le=60)
    # The Ray cluster that release and sell publish to: "auto" joins one running on this machine
    # (or at RAY_ADDRESS) if there is one, "none" only writes the database, anything else is an address.
    cluster: str = "auto"
    # Signs the shopper cookie. Every web replica of a store needs the same one; `sneakers23 serve`
    # makes one up when it is not set.
    secret_key: str | None = Field(default=None, min_length=16, repr=False)
    # Replicas of the page deployment on every node (sockets have their own, one per node).
    page_replicas_per_node: int = Field(default=1, ge=1, le=16)
    # Purchases of one product admitted in memory and waiting for the database; past it, a purchase
    # is answered 503 busy at once rather than queued without end.
    sales_queue_limit: int = Field(default=5_000, ge=1)
    # Track every open shopper tab for the admin dashboard (presence); off, the dashboard shows
    # nobody online, and the channel replicas save what tracking costs (docs/presence.md).
    track_presence: bool = True
    # Opens the admin dashboard (/admin) to whoever gives it. Unset, the admin pages are off.
    admin_password: str | None = Field(default=None, min_length=12, repr=False)
    # How long an admin stays logged in.
    admin_session_hours: float = Field(default=8.0, gt=0, le=7 * 24)
    # Failed admin logins allowed per minute, from everywhere together, before logins are refused.
    admin_failed_logins_per_minute: int = Field(default=10, ge=1)

    @field_validator("admin_password", mode="before")
    @classmethod
    def _no_placeholder_password(cls, password: object) -> object:
        """An empty password turns the admin pages off; the example file's placeholder never opens them."""
        if isinstance(password, str) and not password.strip():
            return None
        if isinstance(password, str) and "CHANGE-ME" in password.upper():
            raise ValueError("SNEAKERS23_ADMIN_PASSWORD is still the example's placeholder: choose a real one")
        return password

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


@lru_cache
def get_settings() -> Settings:
    return Settings()
